"""`Recorder`: persist from agent code without waiting for the network.

    recorder = Recorder(outbox="swarm-outbox.sqlite3")
    task = recorder.task(title="Summarise the paper")
    recorder.transition(task, "running")
    recorder.progress(task, 50)
    recorder.message(conversation, role="assistant", content="...")
    recorder.flush(10)          # True once everything recorded is delivered

Each call appends one ingest item (`{"type": ..., "data": {...}}`, with
its id) to the outbox and returns the id at once. One background thread
sends the outbox in order through `POST /api/v1/ingest/`. Every item
carries an id (a resource id, or an operation id for updates), so the
at-least-once delivery of the outbox plus the server's idempotency is
exactly once. The API of this class is stable: framework integrations
build on it.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import logging
import random
import threading
import time
import traceback
import uuid
import weakref
from collections.abc import Callable
from typing import Any

import httpx

from swarmsite_client import errors
from swarmsite_client._core import (
    USER_AGENT,
    decode,
    dumps,
    plain,
    resolve_key,
    resolve_url,
    retry_after_seconds,
)
from swarmsite_client.outbox import Outbox, Pending

log = logging.getLogger("swarmsite_client.recorder")

# uuid5 namespace of ids derived from names (agents, TasksDict keys).
NAMESPACE = uuid.UUID("6b9f3c2e-52a1-4c0e-9d7a-1f0e8c4b2a55")

# Item types the server's ingest takes (contract 1.1).
ITEM_TYPES = (
    "agent",
    "heartbeat",
    "workflow",
    "task",
    "task_update",
    "transition",
    "progress",
    "dependency",
    "conversation",
    "participant",
    "message",
    "run",
    "run_update",
    "event",
    "audit",
    "memory",
)


class OutboxFull(errors.SwarmsiteError):
    """The outbox holds `max_items` items (raised with `on_full="raise"`)."""

    code = "outbox_full"


def derived_id(kind: str, name: str, namespace: str | None = None) -> str:
    """A stable id for a name: the same name gives the same id every run."""
    scope = f"{namespace}:" if namespace else ""
    return str(uuid.uuid5(NAMESPACE, f"{scope}{kind}:{name}"))


def _data(**fields: Any) -> dict[str, Any]:
    return {k: plain(v) for k, v in fields.items() if v is not None}


class Recorder:
    """A durable, non-blocking writer into Swarmsite.

    - `outbox`: path of the SQLite outbox file (created if missing), shared
      safely by several processes; None keeps items in memory only (lost
      with the process; for tests and throwaway scripts).
    - `max_items`: most pending items; when full, `on_full="drop"` drops the
      new item (counted in `stats()["dropped"]` and logged) and
      `on_full="raise"` raises `OutboxFull`.
    - `batch_items`, `batch_bytes`, `batch_interval`: a batch is sent once it
      holds `batch_items` items or `batch_bytes` bytes, or its oldest item
      has waited `batch_interval` seconds.
    - `max_backoff`: longest wait between attempts while the server is away.
    - `flush_at_exit`: seconds `close()` spends flushing at interpreter exit.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        outbox: Any = None,
        *,
        max_items: int = 1_000_000,
        on_full: str = "drop",
        batch_items: int = 1000,
        batch_bytes: int = 4 * 1024 * 1024,
        batch_interval: float = 0.05,
        max_backoff: float = 30.0,
        lease_seconds: float = 90.0,
        timeout: float = 30.0,
        flush_at_exit: float = 10.0,
        namespace: str | None = None,
        start: bool = True,
    ) -> None:
        if on_full not in ("drop", "raise"):
            raise ValueError('on_full is "drop" or "raise"')
        self.url = resolve_url(url)
        self.api_key = resolve_key(api_key)
        self.max_items = max_items
        self.on_full = on_full
        self.batch_items = self._batch_items_configured = batch_items
        self.batch_bytes = batch_bytes
        self.batch_interval = batch_interval
        self.max_backoff = max_backoff
        self.lease_seconds = lease_seconds
        # A batch's request ends (or is given up) well within the lease, so
        # no other process can take over while it may still be sent.
        self.timeout = min(timeout, lease_seconds / 3)
        self.namespace = namespace
        self._outbox = Outbox(outbox)
        self._state = threading.Lock()
        self._sent = 0
        self._duplicates = 0
        self._dropped = 0
        self._batches = 0
        self._last_error: str | None = None
        self._holding = False
        self._count_estimate = self._outbox.pending_count()
        self._since_count = 0
        self._wake = threading.Event()
        self._flushing = 0
        self._stop = threading.Event()
        self._progress = threading.Condition()
        self._closed = False
        self._final_stats: dict[str, Any] | None = None
        # Update types whose operation `id` the server refused (before 1.1).
        self._no_operation_ids: set[str] = set()
        headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=self.timeout
        )
        self._thread: threading.Thread | None = None
        self._flush_at_exit = flush_at_exit
        self._atexit = _exit_hook(weakref.ref(self))
        atexit.register(self._atexit)
        if start:
            self.start()

    # -- lifecycle --

    def start(self) -> None:
        """Start the background sender (done by the constructor by default)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="swarmsite-recorder", daemon=True
            )
            self._thread.start()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every item recorded before the call is delivered (or
        refused into the dead letters); False if `timeout` passed first."""
        target = self._outbox.last_seq()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._state:
            self._flushing += 1
        self._wake.set()
        try:
            while not self._outbox.delivered_up_to(target):
                if self._thread is None or not self._thread.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                with self._progress:
                    self._progress.wait(
                        0.05 if remaining is None else min(0.05, remaining)
                    )
            return True
        finally:
            with self._state:
                self._flushing -= 1

    def close(self, timeout: float | None = 10.0) -> bool:
        """Flush (up to `timeout`), stop the sender and release the outbox.

        Items not delivered stay in the outbox file for the next Recorder.
        Returns what the flush returned.
        """
        if self._closed:
            return True
        flushed = self.flush(timeout) if self._thread is not None else False
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._thread is None or not self._thread.is_alive():
            # Kept while a request may still be in flight: nobody else may
            # send its items until it lapses (or this process is gone).
            with contextlib.suppress(Exception):
                self._outbox.release_lease()
        self._final_stats = self.stats()
        self._http.close()
        self._outbox.close()
        atexit.unregister(self._atexit)
        return flushed

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        """`pending` and `dead` in the outbox; `sent`, `duplicates` (items
        the server already had), `dropped` (outbox full) and `batches` by
        this Recorder; whether it is the outbox's sender; the last error.
        After `close()`, the figures as they were at closing."""
        if self._closed and self._final_stats is not None:
            return dict(self._final_stats)
        return {
            "pending": self._outbox.pending_count(),
            "sent": self._sent,
            "dead": self._outbox.dead_count(),
            "dropped": self._dropped,
            "duplicates": self._duplicates,
            "batches": self._batches,
            "sending": self._holding,
            "last_error": self._last_error,
        }

    def dead_letters(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Items the server refused: `seq`, `type`, `id`, `item`, `error`."""
        return self._outbox.dead_letters(limit)

    def resend_dead_letters(self, seqs: list[int] | None = None) -> int:
        """Queue dead letters (all, or those `seq`s) again, at the end."""
        moved = self._outbox.resend_dead(seqs)
        self._wake.set()
        return moved

    def drop_dead_letters(self, seqs: list[int] | None = None) -> int:
        return self._outbox.drop_dead(seqs)

    # -- recording --

    def record(self, type_: str, data: dict[str, Any], item_id: str | None) -> None:
        """Append one ingest item as given (the typed methods call this)."""
        if self._closed:
            raise RuntimeError("The Recorder is closed.")
        body = dumps({"type": type_, "data": data})
        if self._full():
            with self._state:
                self._dropped += 1
                dropped = self._dropped
            if self.on_full == "raise":
                raise OutboxFull(
                    f"The outbox holds {self.max_items} items; not recorded."
                )
            if dropped == 1 or dropped % 1000 == 0:
                log.warning(
                    "Outbox full (%d items): dropped a %s item (%d dropped so far).",
                    self.max_items,
                    type_,
                    dropped,
                )
            return
        self._outbox.append(type_, item_id, body)
        self._wake.set()

    def _full(self) -> bool:
        with self._state:
            self._since_count += 1
            self._count_estimate += 1
            exact = self._since_count >= 256 or self._count_estimate >= self.max_items
            if not exact:
                return False
        count = self._outbox.pending_count()
        with self._state:
            self._count_estimate = count + 1
            self._since_count = 0
        return count >= self.max_items

    def _update(self, type_: str, data: dict[str, Any], op: Any) -> str:
        operation = str(op) if op else str(uuid.uuid4())
        self.record(type_, {**data, "id": operation}, operation)
        return operation

    def agent(
        self,
        name: str,
        *,
        id: Any = None,
        role: str | None = None,
        model: str | None = None,
        parent: Any = None,
        capabilities: list | None = None,
        config: dict | None = None,
        metadata: dict | None = None,
    ) -> str:
        """Register an agent. Its id derives from `name` (the same every
        run) unless given; an agent registered earlier under another id
        keeps that id on the server, so pass `id=` for such agents."""
        agent_id = str(id or derived_id("agent", name, self.namespace))
        self.record(
            "agent",
            _data(
                id=agent_id,
                name=name,
                role=role,
                model=model,
                parent=parent,
                capabilities=capabilities,
                config=config,
                metadata=metadata,
            ),
            agent_id,
        )
        return agent_id

    def heartbeat(
        self,
        agent: Any,
        *,
        status: str | None = None,
        details: dict | None = None,
        id: Any = None,
    ) -> str:
        return self._update(
            "heartbeat", _data(agent=agent, status=status, details=details), id
        )

    def task(self, title: str, *, id: Any = None, **fields: Any) -> str:
        """Create a task (`description`, `session_id`, `workflow`, `parent`,
        `priority`, `assigned_agent`, `agents`, `depends_on`, `input`,
        `metadata`, `key`...)."""
        task_id = str(id or uuid.uuid4())
        self.record("task", _data(id=task_id, title=title, **fields), task_id)
        return task_id

    def task_update(self, task: Any, *, id: Any = None, **fields: Any) -> str:
        """Change descriptive fields of a task (`title`, `metadata`...)."""
        return self._update("task_update", _data(task=task, **fields), id)

    def transition(
        self,
        task: Any,
        status: str,
        *,
        expected_version: int | None = None,
        result: Any = None,
        result_summary: str | None = None,
        error: str | None = None,
        id: Any = None,
    ) -> str:
        """Move a task to `status`; returns the operation id."""
        return self._update(
            "transition",
            _data(
                task=task,
                status=status,
                expected_version=expected_version,
                result=result,
                result_summary=result_summary,
                error=error,
            ),
            id,
        )

    def progress(self, task: Any, value: int, *, id: Any = None) -> str:
        return self._update("progress", _data(task=task, progress=value), id)

    def conversation(
        self,
        *,
        id: Any = None,
        task: Any = None,
        title: str | None = None,
        participants: list | None = None,
        metadata: dict | None = None,
    ) -> str:
        conversation_id = str(id or uuid.uuid4())
        self.record(
            "conversation",
            _data(
                id=conversation_id,
                task=task,
                title=title,
                participants=participants,
                metadata=metadata,
            ),
            conversation_id,
        )
        return conversation_id

    def message(
        self,
        conversation: Any,
        *,
        role: str = "assistant",
        content: str | None = None,
        id: Any = None,
        **fields: Any,
    ) -> str:
        """Append a message (`sender`, `model`, `prompt_tokens`,
        `completion_tokens`, `cost`, `latency_ms`, `tool_calls`, ...)."""
        message_id = str(id or uuid.uuid4())
        self.record(
            "message",
            _data(
                conversation=conversation,
                id=message_id,
                role=role,
                content=content,
                **fields,
            ),
            message_id,
        )
        return message_id

    def run(
        self,
        *,
        task: Any = None,
        agent: Any = None,
        status: str = "running",
        id: Any = None,
        **fields: Any,
    ) -> str:
        run_id = str(id or uuid.uuid4())
        self.record(
            "run",
            _data(id=run_id, task=task, agent=agent, status=status, **fields),
            run_id,
        )
        return run_id

    def run_update(self, run: Any, *, id: Any = None, **fields: Any) -> str:
        """Change a run (`status`, `output_summary`, tokens, `cost`, `error`)."""
        return self._update("run_update", _data(run=run, **fields), id)

    def event(
        self,
        kind: str,
        *,
        task: Any = None,
        conversation: Any = None,
        payload: dict | None = None,
        id: Any = None,
    ) -> str:
        event_id = str(id or uuid.uuid4())
        self.record(
            "event",
            _data(
                id=event_id,
                kind=kind,
                task=task,
                conversation=conversation,
                payload=payload,
            ),
            event_id,
        )
        return event_id

    def audit(
        self,
        action: str,
        *,
        target: str | None = None,
        success: bool | None = None,
        duration_ms: float | None = None,
        error: str | None = None,
        details: dict | None = None,
        id: Any = None,
    ) -> str:
        entry_id = str(id or uuid.uuid4())
        self.record(
            "audit",
            _data(
                id=entry_id,
                action=action,
                target=target,
                success=success,
                duration_ms=duration_ms,
                error=error,
                details=details,
            ),
            entry_id,
        )
        return entry_id

    def memory(self, content: str, *, id: Any = None, **fields: Any) -> str:
        """Write a memory (`agent`, `namespace`, `key`, `tags`, `metadata`,
        `task`, `conversation`, `expires_at`)."""
        memory_id = str(id or uuid.uuid4())
        self.record("memory", _data(id=memory_id, content=content, **fields), memory_id)
        return memory_id

    # -- hooks for agent code --

    def track_task(
        self,
        title: str | None = None,
        *,
        task: Any = None,
        **fields: Any,
    ) -> Tracked:
        """Context manager / decorator: a task (created unless `task` names
        one) goes `running` on entry, then `completed`, or `failed` with the
        error when the block raises. The handle has `.id`, `.progress(v)`
        and settable `.result` / `.summary`."""
        return Tracked(self, "task", title=title, task=task, fields=fields)

    def track_run(self, *, task: Any = None, agent: Any = None, **fields: Any):
        """Context manager / decorator: a run `running` on entry, then
        `completed`, or `failed` with the error."""
        return Tracked(self, "run", task=task, fields={"agent": agent, **fields})

    # -- the sender --

    def _run(self) -> None:
        backoff = 0
        lease_until = 0.0
        while not self._stop.is_set():
            try:
                # The lease is renewed once a third of it has passed, and a
                # batch's request times out within a third of it: a batch is
                # always sent under a lease that outlives the request, so no
                # other process can take over and send the same items.
                now = time.monotonic()
                if lease_until - now < self.lease_seconds * 2 / 3:
                    held = self._outbox.acquire_lease(self.lease_seconds)
                    if held != self._holding:
                        log.debug("Outbox sender lease %s", "taken" if held else "lost")
                    self._holding = held
                    lease_until = now + self.lease_seconds if held else 0.0
                if not self._holding:
                    self._notify()
                    self._stop.wait(0.5)
                    continue
                if not self._linger():
                    continue
                if backoff and not self._server_answers():
                    # While the server is away, a cheap probe stands in for
                    # a batch: building one costs the recording threads time
                    # (the GIL) for nothing.
                    backoff += 1
                    self._stop.wait(self._backoff(backoff))
                    continue
                batch = self._outbox.batch(self.batch_items, self.batch_bytes)
                if not batch:
                    continue
                delay = self._send(batch)
                if delay is None:
                    if backoff:
                        log.info("Swarmsite answers again; sending the outbox.")
                    backoff = 0
                    self._outbox.purge()
                    self._outbox.checkpoint()
                    continue
                if delay == 0:
                    continue
                backoff += 1
                self._notify()
                # Not cut short by record calls: the server is away.
                self._stop.wait(delay if delay >= 0 else self._backoff(backoff))
            except Exception as exc:  # never let the sender die
                self._last_error = f"{type(exc).__name__}: {exc}"
                log.exception("Recorder sender error; retrying")
                backoff += 1
                self._stop.wait(self._backoff(backoff))

    def _backoff(self, failures: int) -> float:
        cap = min(self.max_backoff, 0.1 * 2 ** min(failures, 20))
        return random.uniform(cap / 2, cap)

    def _linger(self) -> bool:
        """Wait for items, then until the batch is worth sending; False if
        there is nothing to send yet."""
        oldest = self._outbox.oldest_created()
        if oldest is None:
            self._notify()
            # Wake on a record call of this process; poll for the items
            # other processes append to the same file.
            self._wake.wait(0.2)
            self._wake.clear()
            return False
        if self._flushing or self._stop.is_set():
            return True
        age = time.time() - oldest
        if (
            age < self.batch_interval
            and self._outbox.sender_pending_count() < self.batch_items
        ):
            self._stop.wait(self.batch_interval - age)
        return True

    def _server_answers(self) -> bool:
        """Whether a batch is worth building: something answers, and not
        with 502/503/504 (a proxy that hides `/readyz` still counts)."""
        try:
            status = self._http.get("/readyz").status_code
        except httpx.TransportError:
            return False
        return status not in (502, 503, 504)

    def _notify(self) -> None:
        with self._progress:
            self._progress.notify_all()

    def _send(self, batch: list[Pending]) -> float | None:
        """Send one batch. None when settled (sent, or some dead-lettered);
        else seconds to wait before trying again (-1: use the backoff)."""
        if self._no_operation_ids:
            bodies = [self._body(p) for p in batch]
        else:
            bodies = [p.body for p in batch]
        payload = ('{"items":[' + ",".join(bodies) + "]}").encode()
        try:
            response = self._http.post("/api/v1/ingest/", content=payload)
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.TimeoutException) and len(batch) > 1:
                # A server too slow for this batch: smaller ones get through.
                self.batch_items = max(1, len(batch) // 2)
            self._away(f"{type(exc).__name__}: {exc}", len(batch))
            return -1
        status = response.status_code
        if status in (200, 207):
            body = decode(response.content)
            results = body.get("results") if isinstance(body, dict) else None
            if not isinstance(results, list) or len(results) != len(batch):
                self._away(f"HTTP {status} with an unexpected body", len(batch))
                return -1
            return self._settle(batch, results)
        error = errors.error_from_body(
            decode(response.content),
            status=status,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )
        if status in (401, 403) or status == 408 or status == 429 or status >= 500:
            self._away(str(error), len(batch))
            if error.retry_after is not None:
                return min(error.retry_after, self.max_backoff)
            return -1
        # A refusal of the whole batch (413, 400): send smaller batches until
        # the item refused alone goes to the dead letters.
        if len(batch) > 1:
            self.batch_items = max(1, len(batch) // 2)
            log.warning("Ingest refused a batch (%s); halving it", error)
            return 0
        self._outbox.settle(batch, {0: _error_dict(error)})
        self._dead_lettered(batch, {0: _error_dict(error)})
        return None

    def _settle(self, batch: list[Pending], results: list[dict]) -> float | None:
        refused: dict[int, dict[str, Any]] = {}
        duplicates = 0
        for index, result in enumerate(results):
            status = result.get("status")
            if status == "error":
                refused[index] = result.get("error") or {}
            elif status == "duplicate":
                duplicates += 1
        retry = self._strip_refused_operation_ids(batch, refused)
        if retry:
            return 0
        self._outbox.settle(batch, refused)
        with self._state:
            self._sent += len(batch) - len(refused)
            self._duplicates += duplicates
            self._batches += 1
            self._last_error = None
        if refused:
            self._dead_lettered(batch, refused)
        self.batch_items = min(self._batch_items_configured, self.batch_items * 2)
        self._notify()
        return None

    def _strip_refused_operation_ids(
        self, batch: list[Pending], refused: dict[int, dict[str, Any]]
    ) -> bool:
        """Servers before contract 1.1 refuse an update's operation `id`:
        remember the type and send its items without it (once)."""
        types = {
            batch[i].type
            for i, error in refused.items()
            if set(error.get("fields") or {}) == {"data.id"}
            and batch[i].type in UPDATE_TYPES
            and batch[i].type not in self._no_operation_ids
        }
        if not types:
            return False
        log.warning(
            "The server takes no operation ids on %s; sending without them "
            "(a replayed update is then not recognised).",
            ", ".join(sorted(types)),
        )
        self._no_operation_ids |= types
        return True

    def _body(self, pending: Pending) -> str:
        if pending.type not in self._no_operation_ids:
            return pending.body
        item = json.loads(pending.body)
        item["data"].pop("id", None)
        return dumps(item)

    def _dead_lettered(self, batch: list[Pending], refused: dict[int, dict]) -> None:
        first = next(iter(refused))
        log.warning(
            "Swarmsite refused %d item(s); kept as dead letters. First: %s %s: %s",
            len(refused),
            batch[first].type,
            batch[first].item_id,
            refused[first].get("message"),
        )

    def _away(self, reason: str, pending: int) -> None:
        if self._last_error is None:
            log.warning(
                "Swarmsite unreachable (%s); keeping %d+ items and retrying.",
                reason,
                pending,
            )
        self._last_error = reason


UPDATE_TYPES = {"heartbeat", "task_update", "transition", "progress", "run_update"}


def _error_dict(error: errors.SwarmsiteError) -> dict[str, Any]:
    out: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.fields:
        out["fields"] = error.fields
    if error.status:
        out["status"] = error.status
    return out


def _exit_hook(ref: Callable[[], Recorder | None]) -> Callable[[], None]:
    def at_exit() -> None:
        recorder = ref()
        if recorder is not None and not recorder._closed:
            recorder.close(recorder._flush_at_exit)

    return at_exit


class Tracked(contextlib.ContextDecorator):
    """What `Recorder.track_task` / `track_run` return: a context manager,
    or a decorator recording one task or run per call."""

    def __init__(
        self,
        recorder: Recorder,
        what: str,
        *,
        title: str | None = None,
        task: Any = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        self.recorder = recorder
        self.what = what
        self.title = title
        self.task = task
        self.fields = fields or {}
        self.id: str | None = None
        self.result: Any = None
        self.summary: str | None = None

    def _recreate_cm(self) -> Tracked:
        return Tracked(
            self.recorder, self.what, title=self.title, task=self.task,
            fields=self.fields,
        )  # fmt: skip

    def __call__(self, func: Callable) -> Callable:
        if self.what == "task" and self.title is None:
            self.title = func.__qualname__

        @functools.wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            with self._recreate_cm() as handle:
                handle.result = func(*args, **kwargs)
                return handle.result

        return inner

    def progress(self, value: int) -> None:
        if self.what == "task" and self.id:
            self.recorder.progress(self.id, value)

    def __enter__(self) -> Tracked:
        r = self.recorder
        if self.what == "task":
            if self.task is None and self.title is None:
                raise ValueError("track_task needs a title or an existing task id")
            self.id = str(self.task) if self.task else r.task(self.title, **self.fields)
            r.transition(self.id, "running")
        else:
            self.id = r.run(task=self.task, status="running", **self.fields)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        r = self.recorder
        assert self.id is not None
        if exc is None:
            if self.what == "task":
                r.transition(
                    self.id,
                    "completed",
                    result=_jsonable(self.result),
                    result_summary=self.summary,
                )
            else:
                r.run_update(self.id, status="completed", output_summary=self.summary)
            return False
        message = "".join(traceback.format_exception_only(exc_type, exc)).strip()
        if self.what == "task":
            r.transition(self.id, "failed", error=message)
        else:
            r.run_update(self.id, status="failed", error=message)
        return False


def _jsonable(value: Any) -> Any:
    try:
        dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value
