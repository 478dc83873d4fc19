"""The journal: the one transaction wrapper of every write.

Services of every app open `journaled()` instead of `transaction.atomic()`.
Events and audit rows recorded inside it are buffered and written in bulk as
the last statements of the outermost block, under the project's
`JournalHead` row lock. That lock is held until commit, so event positions
and audit sequence numbers follow commit order with no gap, and the lock is
held for as short a time as possible.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from django.db import IntegrityError, models, transaction
from django.utils import timezone

from audit.chain import GENESIS_HASH, audit_log_digest
from audit.models import AuditLog, Event, JournalHead
from audit.selectors import event_written_total
from swarmsite.bulk import bulk_insert
from swarmsite.errors import Conflict
from swarmsite.metrics import EVENTS_WRITTEN
from swarmsite.realtime import project_group, publish_on_commit

P = ParamSpec("P")
T = TypeVar("T")

# /metrics reads the committed total from the journal heads at scrape time:
# exact, never counts a rolled-back event, and adds nothing to the write path.
EVENTS_WRITTEN.read_with(event_written_total)


@dataclass
class _Journal:
    events: list[Event] = field(default_factory=list)
    audits: list[AuditLog] = field(default_factory=list)

    def mark(self) -> tuple[int, int]:
        return len(self.events), len(self.audits)

    def truncate(self, mark: tuple[int, int]) -> None:
        del self.events[mark[0] :]
        del self.audits[mark[1] :]


def _current() -> _Journal | None:
    return getattr(transaction.get_connection(), "swarmsite_journal", None)


@contextmanager
def journaled() -> Iterator[None]:
    """An atomic block that appends its buffered events and audit rows last.

    Nested blocks become savepoints; a nested block that raises drops the
    events it buffered, just as its rows are rolled back.
    """
    connection = transaction.get_connection()
    journal = getattr(connection, "swarmsite_journal", None)
    if journal is not None:
        mark = journal.mark()
        try:
            with transaction.atomic():
                yield
        except BaseException:
            journal.truncate(mark)
            raise
        return
    journal = _Journal()
    connection.swarmsite_journal = journal
    _follow_savepoints(connection, journal)
    try:
        with transaction.atomic():
            yield
            _flush(journal)
    finally:
        connection.swarmsite_journal = None
        for name in ("savepoint", "savepoint_rollback"):
            connection.__dict__.pop(name, None)


def _follow_savepoints(connection: Any, journal: _Journal) -> None:
    # A plain atomic() block (or transaction.savepoint()) inside the journal
    # whose error is caught rolls back its rows; drop the events and audit
    # rows it buffered too, as Django drops its on_commit callbacks.
    # This relies on Django's Atomic.__enter__/__exit__ and the
    # transaction.savepoint*() helpers calling the connection's own
    # savepoint() and savepoint_rollback(sid) methods (looked up on the
    # instance, so instance attributes shadow them), which they do since 1.6.
    marks: dict[str, tuple[int, int]] = {}
    savepoint, savepoint_rollback = connection.savepoint, connection.savepoint_rollback

    def tracked_savepoint() -> str | None:
        sid = savepoint()
        if sid is not None:
            marks[sid] = journal.mark()
        return sid

    def tracked_savepoint_rollback(sid: str) -> None:
        savepoint_rollback(sid)
        if sid in marks:
            journal.truncate(marks[sid])

    connection.savepoint = tracked_savepoint
    connection.savepoint_rollback = tracked_savepoint_rollback


def _flush(journal: _Journal) -> None:
    if not journal.events and not journal.audits:
        return
    project_ids = sorted(
        {e.project_id for e in journal.events} | {a.project_id for a in journal.audits}
    )
    # Sorted lock order keeps multi-project transactions free of deadlocks.
    for project_id in project_ids:
        head, _ = JournalHead.objects.select_for_update().get_or_create(
            project_id=project_id
        )
        # Taken under the lock, so recorded_at never decreases along positions.
        now = timezone.now()
        events = [e for e in journal.events if e.project_id == project_id]
        for event in events:
            head.last_position += 1
            event.position = head.last_position
            event.recorded_at = now
        audits = [a for a in journal.audits if a.project_id == project_id]
        for entry in audits:
            head.audit_seq += 1
            entry.seq = head.audit_seq
            entry.recorded_at = now
            entry.prev_hash = head.audit_hash or GENESIS_HASH
            entry.hash = audit_log_digest(entry)
            head.audit_hash = entry.hash
        head.save(update_fields=["last_position", "audit_seq", "audit_hash"])
        if events:
            # A COPY leaves `id` unset; uuid and position identify them.
            bulk_insert(Event, events)
            publish_on_commit(
                project_group(project_id),
                "events.appended",
                {
                    "project": project_id,
                    "position": head.last_position,
                    "tasks": sorted({str(e.task_id) for e in events if e.task_id}),
                    "conversations": sorted(
                        {str(e.conversation_id) for e in events if e.conversation_id}
                    ),
                },
            )
        if audits:
            bulk_insert(AuditLog, audits)
    journal.events.clear()
    journal.audits.clear()


def journal_append(*, events: list[Event] = (), audits: list[AuditLog] = ()) -> None:
    """Buffer built events and audit rows; they are written at the end."""
    journal = _current()
    if journal is None:
        with journaled():
            journal_append(events=events, audits=audits)
        return
    # Buffering runs no SQL and cannot fail half-way: no savepoint needed.
    journal.events.extend(events)
    journal.audits.extend(audits)


def journal_buffered(
    model: type[models.Model], ids: set[uuid.UUID]
) -> dict[uuid.UUID, Any]:
    """Rows of this transaction's journal (not yet inserted) with these uuids."""
    journal = _current()
    if journal is None or not ids:
        return {}
    rows = journal.events if model is Event else journal.audits
    return {row.uuid: row for row in rows if row.uuid in ids}


def journal_head_lock(*, project_id: int) -> JournalHead:
    """The project's journal head, locked until commit (created if missing)."""
    head, _ = JournalHead.objects.select_for_update().get_or_create(
        project_id=project_id
    )
    return head


def journal_head_advance(
    *,
    project_id: int,
    last_position: int,
    audit_seq: int,
    audit_hash: str,
    audit_anchor: tuple[int, str] | None = None,
) -> bool:
    """Move a head forward after rows were written around the journal (import).

    Positions and sequence numbers only grow; True when the head changed.
    """
    head = journal_head_lock(project_id=project_id)
    before = (
        head.last_position,
        head.audit_seq,
        head.audit_hash,
        head.audit_anchor_seq,
        head.audit_anchor_hash,
    )
    head.last_position = max(head.last_position, last_position)
    if audit_seq > head.audit_seq:
        head.audit_seq, head.audit_hash = audit_seq, audit_hash
    if audit_anchor is not None and audit_anchor[0] > head.audit_anchor_seq:
        head.audit_anchor_seq, head.audit_anchor_hash = audit_anchor
    if head.audit_anchor_seq > head.audit_seq:
        # Every record after the anchor was pruned: the chain resumes there.
        head.audit_seq, head.audit_hash = head.audit_anchor_seq, head.audit_anchor_hash
    after = (
        head.last_position,
        head.audit_seq,
        head.audit_hash,
        head.audit_anchor_seq,
        head.audit_anchor_hash,
    )
    if after == before:
        return False
    head.save()
    return True


# A race lost twice in a row to new rows is a bug, not load.
RACE_ATTEMPTS = 3


def _is_unique_violation(exc: IntegrityError) -> bool:
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate == "23505"
    return "UNIQUE constraint failed" in str(exc)


def race_safe(service: Callable[P, T]) -> Callable[P, T]:
    """A journaled create that a concurrent identical create cannot fail.

    The service runs in its own savepoint (a transaction when outermost).
    When its INSERT loses a unique-key race to a transaction that committed
    first (PostgreSQL; SQLite writers never race), the savepoint is rolled
    back and the service runs again: it then finds the committed rows and
    answers as a repeated create does.
    """

    @functools.wraps(service)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        for attempt in range(1, RACE_ATTEMPTS + 1):
            try:
                with journaled():
                    return service(*args, **kwargs)
            except IntegrityError as exc:
                if not _is_unique_violation(exc):
                    raise
                if attempt == RACE_ATTEMPTS:
                    raise Conflict(
                        "A concurrent write kept taking the same keys; retry."
                    ) from exc
        raise AssertionError("unreachable")

    return wrapper
