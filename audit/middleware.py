"""Leave an `api.request` audit record for every request under /api/.

The audit log is hash-chained per project under the `JournalHead` row lock,
so one write transaction per request would serialise every request of a
project on that lock. Instead each process keeps the records of answered
requests in a bounded in-memory queue, and a background thread writes them
in bulk: one journaled transaction per flush (every
AUDIT_REQUEST_FLUSH_SECONDS, or sooner once AUDIT_REQUEST_BATCH_SIZE are
waiting), and once more when the process exits.

The trade-off: a process killed with SIGKILL loses the records of its last
flush interval, and a full queue drops new records. Both are counted
(`swarmsite_audit_request_records_total{result="dropped"}`) and logged; a
request never fails or waits because of its audit record.

Requests without a project (missing or rejected credentials) are recorded on
the `default` project as anonymous, with the 8-hex-digit prefix of a
presented key in `details.key_prefix`, never the secret.
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
import time
from collections import deque

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.functional import empty
from prometheus_client import Counter, Gauge

from audit.services import ApiRequestRecord, audit_api_requests_record
from swarmsite.actors import Actor
from swarmsite.authentication import ApiPrincipal, principal_actor, request_id

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
_KEY_PREFIX_RE = re.compile(rb"^bearer\s+ss_([0-9a-f]{8})_", re.IGNORECASE)

RECORDS = Counter(
    "swarmsite_audit_request_records_total",
    "API request audit records, by result (written, dropped).",
    ["result"],
)
QUEUED = Gauge(
    "swarmsite_audit_request_records_queued",
    "API request audit records waiting for the next flush.",
)


class RequestAuditBuffer:
    """A bounded, thread-safe queue of request records and their flusher."""

    def __init__(self) -> None:
        self._records: deque[ApiRequestRecord] = deque()
        self._lock = threading.Lock()
        # Serialises flushes, so records keep their order in the chain.
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._exit_hook = False
        self.written = 0
        self.dropped = 0
        self.failures = 0

    def __len__(self) -> int:
        return len(self._records)

    def add(self, record: ApiRequestRecord) -> None:
        """Queue a record; never blocks on the database, never raises."""
        with self._lock:
            if len(self._records) >= settings.AUDIT_REQUEST_QUEUE_SIZE:
                self.dropped += 1
                RECORDS.labels(result="dropped").inc()
                return
            self._records.append(record)
            size = len(self._records)
        QUEUED.set(size)
        if settings.AUDIT_REQUEST_FLUSH_SECONDS > 0:
            self._ensure_thread()
            if size >= settings.AUDIT_REQUEST_BATCH_SIZE:
                self._wake.set()

    def clear(self) -> None:
        """Forget queued records (tests start each case empty)."""
        with self._lock:
            self._records.clear()
        QUEUED.set(0)

    def flush(self) -> int:
        """Write every queued record now, in batches; return how many."""
        total = 0
        with self._flush_lock:
            while True:
                with self._lock:
                    batch = [
                        self._records.popleft()
                        for _ in range(
                            min(len(self._records), settings.AUDIT_REQUEST_BATCH_SIZE)
                        )
                    ]
                    QUEUED.set(len(self._records))
                if not batch:
                    return total
                total += self._write(batch)

    def _write(self, batch: list[ApiRequestRecord]) -> int:
        try:
            written = audit_api_requests_record(records=batch)
        except Exception:
            self.failures += 1
            self.dropped += len(batch)
            RECORDS.labels(result="dropped").inc(len(batch))
            logger.exception(
                "Could not write %d API request audit records; dropped them.",
                len(batch),
            )
            return 0
        self.written += written
        RECORDS.labels(result="written").inc(written)
        if written < len(batch):
            # Their project was deleted since the request.
            self.dropped += len(batch) - written
            RECORDS.labels(result="dropped").inc(len(batch) - written)
        return written

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name="audit-request-flusher", daemon=True
            )
            self._thread.start()
            if not self._exit_hook:
                atexit.register(self.stop)
                self._exit_hook = True

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(settings.AUDIT_REQUEST_FLUSH_SECONDS)
            self._wake.clear()
            try:
                self.flush()
            finally:
                # Hand the connection back (to the pool on PostgreSQL), so a
                # database restart between flushes costs nothing.
                connection.close()

    def stop(self) -> None:
        """Flush what is left; called at interpreter exit."""
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self.flush()


buffer = RequestAuditBuffer()


def flush_request_audits() -> int:
    """Write the queued request records now; tests and shutdown call it."""
    return buffer.flush()


def _user(request: HttpRequest):
    # Read `request.user` only when something already resolved it: a lazy
    # session lookup here would cost a query (and fail in async code).
    user = request.__dict__.get("user")
    wrapped = getattr(user, "_wrapped", None)
    if user is None or wrapped is empty:
        return None
    return user


def _principal_of(request: HttpRequest) -> tuple[int | None, Actor, dict]:
    user = _user(request)
    rid = request_id(request)
    if isinstance(user, ApiPrincipal):
        return user.project.pk, principal_actor(user, correlation_id=rid), {}
    details = {}
    match = _KEY_PREFIX_RE.match(request.META.get("HTTP_AUTHORIZATION", "").encode())
    if match:
        details["key_prefix"] = match.group(1).decode()
    if user is not None and user.is_authenticated and user.is_staff:
        # A staff session acts on the default project.
        return None, principal_actor(None, user=user, correlation_id=rid), details
    return None, principal_actor(None, correlation_id=rid), details


def _route(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return ""
    return match.view_name or match.route or ""


def record_request(
    request: HttpRequest, response: HttpResponse, started: float
) -> None:
    """Queue the audit record of an answered API request."""
    try:
        project_id, actor, details = _principal_of(request)
        buffer.add(
            ApiRequestRecord(
                project_id=project_id,
                actor=actor,
                method=request.method or "",
                path=request.path,
                route=_route(request),
                status_code=response.status_code,
                duration_ms=(time.perf_counter() - started) * 1000,
                ip=request.META.get("REMOTE_ADDR") or None,
                user_agent=request.META.get("HTTP_USER_AGENT", ""),
                request_id=actor.correlation_id,
                occurred_at=timezone.now(),
                details=details,
            )
        )
    except Exception:
        buffer.dropped += 1
        RECORDS.labels(result="dropped").inc()
        logger.exception("Could not queue an API request audit record.")


class RequestAuditMiddleware:
    """Queues an `api.request` audit record for every request under /api/."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        if not settings.AUDIT_REQUESTS:
            raise MiddlewareNotUsed
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        started = time.perf_counter()
        response = self.get_response(request)
        record_request(request, response, started)
        return response

    async def __acall__(self, request: HttpRequest):
        if not request.path.startswith(API_PREFIX):
            return await self.get_response(request)
        started = time.perf_counter()
        response = await self.get_response(request)
        record_request(request, response, started)
        return response
