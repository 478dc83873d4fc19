"""`Recorder`: the calls agent code makes; each appends one ingest item."""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import httpx

from swarmsite_client import errors
from swarmsite_client._core import (
    USER_AGENT,
    body,
    create_body,
    dumps,
    new_operation_id,
    resolve_key,
    resolve_url,
)
from swarmsite_client.outbox import Outbox
from swarmsite_client.recorder.items import derived_id
from swarmsite_client.recorder.sender import SenderMixin
from swarmsite_client.recorder.tracked import Tracked

log = logging.getLogger("swarmsite_client.recorder")


class OutboxFull(errors.SwarmsiteError):
    """The outbox holds `max_items` items (raised with `on_full="raise"`)."""

    code = "outbox_full"


class Recorder(SenderMixin):
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

    def _create(self, type_: str, data: dict[str, Any]) -> str:
        self.record(type_, data, data["id"])
        return data["id"]

    def _update(self, type_: str, data: dict[str, Any], op: Any) -> str:
        operation = new_operation_id(op)
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
        return self._create(
            "agent",
            create_body(
                id or derived_id("agent", name, self.namespace),
                name=name,
                role=role,
                model=model,
                parent=parent,
                capabilities=capabilities,
                config=config,
                metadata=metadata,
            ),
        )

    def heartbeat(
        self,
        agent: Any,
        *,
        status: str | None = None,
        details: dict | None = None,
        id: Any = None,
    ) -> str:
        return self._update(
            "heartbeat", body(agent=agent, status=status, details=details), id
        )

    def task(self, title: str, *, id: Any = None, **fields: Any) -> str:
        """Create a task (`description`, `session_id`, `workflow`, `parent`,
        `priority`, `assigned_agent`, `agents`, `depends_on`, `input`,
        `metadata`, `key`...)."""
        return self._create("task", create_body(id, title=title, **fields))

    def task_update(self, task: Any, *, id: Any = None, **fields: Any) -> str:
        """Change descriptive fields of a task (`title`, `metadata`...)."""
        return self._update("task_update", body(task=task, **fields), id)

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
            body(
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
        return self._update("progress", body(task=task, progress=value), id)

    def conversation(
        self,
        *,
        id: Any = None,
        task: Any = None,
        title: str | None = None,
        participants: list | None = None,
        metadata: dict | None = None,
    ) -> str:
        return self._create(
            "conversation",
            create_body(
                id,
                task=task,
                title=title,
                participants=participants,
                metadata=metadata,
            ),
        )

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
        return self._create(
            "message",
            create_body(
                id, conversation=conversation, role=role, content=content, **fields
            ),
        )

    def run(
        self,
        *,
        task: Any = None,
        agent: Any = None,
        status: str = "running",
        id: Any = None,
        **fields: Any,
    ) -> str:
        return self._create(
            "run",
            create_body(id, task=task, agent=agent, status=status, **fields),
        )

    def run_update(self, run: Any, *, id: Any = None, **fields: Any) -> str:
        """Change a run (`status`, `output_summary`, tokens, `cost`, `error`)."""
        return self._update("run_update", body(run=run, **fields), id)

    def event(
        self,
        kind: str,
        *,
        task: Any = None,
        conversation: Any = None,
        payload: dict | None = None,
        id: Any = None,
    ) -> str:
        return self._create(
            "event",
            create_body(
                id, kind=kind, task=task, conversation=conversation, payload=payload
            ),
        )

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
        return self._create(
            "audit",
            create_body(
                id,
                action=action,
                target=target,
                success=success,
                duration_ms=duration_ms,
                error=error,
                details=details,
            ),
        )

    def memory(self, content: str, *, id: Any = None, **fields: Any) -> str:
        """Write a memory (`agent`, `namespace`, `key`, `tags`, `metadata`,
        `task`, `conversation`, `expires_at`)."""
        return self._create("memory", create_body(id, content=content, **fields))

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


def _exit_hook(ref: Callable[[], Recorder | None]) -> Callable[[], None]:
    def at_exit() -> None:
        recorder = ref()
        if recorder is not None and not recorder._closed:
            recorder.close(recorder._flush_at_exit)

    return at_exit
