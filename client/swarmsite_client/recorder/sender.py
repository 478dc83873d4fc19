"""The Recorder's sender: one thread draining the outbox into ingest.

The thread holds the outbox's lease while it sends, so of several
processes sharing one outbox file only one sends at a time, in order.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from typing import Any

import httpx

from swarmsite_client import errors
from swarmsite_client._core import decode, dumps, retry_after_seconds
from swarmsite_client.outbox import Outbox, Pending
from swarmsite_client.recorder.items import UPDATE_TYPES

log = logging.getLogger("swarmsite_client.recorder")


class SenderMixin:
    """The sending half of `Recorder`, on the state its constructor sets."""

    batch_items: int
    batch_bytes: int
    batch_interval: float
    lease_seconds: float
    max_backoff: float
    _batch_items_configured: int
    _outbox: Outbox
    _http: httpx.Client
    _state: threading.Lock
    _wake: threading.Event
    _stop: threading.Event
    _progress: threading.Condition
    _flushing: int
    _holding: bool
    _sent: int
    _duplicates: int
    _batches: int
    _last_error: str | None
    _no_operation_ids: set[str]

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


def _error_dict(error: errors.SwarmsiteError) -> dict[str, Any]:
    out: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.fields:
        out["fields"] = error.fields
    if error.status:
        out["status"] = error.status
    return out
