"""Writes to the event log and the audit log.

Services of every app open `journaled()` instead of `transaction.atomic()`.
Events and audit rows recorded inside it are buffered and written in bulk as
the last statements of the outermost block, under the project's
`JournalHead` row lock. That lock is held until commit, so event positions
and audit sequence numbers follow commit order with no gap, and the lock is
held for as short a time as possible.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.utils import timezone

from audit.models import (
    RESERVED_EVENT_PREFIXES,
    AuditLog,
    DeletionGrant,
    Event,
    JournalHead,
)
from swarmsite.actors import SYSTEM, Actor
from swarmsite.errors import ValidationError
from swarmsite.realtime import project_group, publish_on_commit
from swarmsite.validation import check_same

GENESIS_HASH = "0" * 64


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
    now = timezone.now()
    # Sorted lock order keeps multi-project transactions free of deadlocks.
    for project_id in project_ids:
        head, _ = JournalHead.objects.select_for_update().get_or_create(
            project_id=project_id
        )
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
            Event.objects.bulk_create(events)
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
            AuditLog.objects.bulk_create(audits)
    journal.events.clear()
    journal.audits.clear()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    return value


def _as_jsonb_returns(value: Any) -> Any:
    # PostgreSQL's jsonb keeps numbers as numeric: 1e+20 comes back as an
    # integer and -0.0 as 0.0. Storing them that way keeps hashes verifiable.
    if isinstance(value, float):
        text = repr(value)
        return int(Decimal(text)) if "e+" in text else value + 0.0
    if isinstance(value, dict):
        return {k: _as_jsonb_returns(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_jsonb_returns(v) for v in value]
    return value


def _clean_payload(value: Any, *, field_name: str) -> Any:
    """Round-trip through JSON so what is hashed is what the database keeps."""
    try:
        text = json.dumps(value, default=_jsonable, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError({field_name: f"Not JSON-serialisable: {exc}."}) from exc
    return _as_jsonb_returns(json.loads(text))


AUDIT_HASHED_FIELDS = (
    "uuid",
    "project_id",
    "seq",
    "prev_hash",
    "actor_type",
    "actor_id",
    "actor_label",
    "action",
    "target",
    "content_type_id",
    "object_id",
    "object_repr",
    "request_id",
    "method",
    "path",
    "status_code",
    "success",
    "duration_ms",
    "ip",
    "user_agent",
    "error",
    "details",
    "changes",
    "occurred_at",
)


def audit_log_digest(entry: AuditLog) -> str:
    """SHA-256 over the previous hash and every recorded field of `entry`."""
    body = {name: _jsonable(getattr(entry, name)) for name in AUDIT_HASHED_FIELDS}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def audit_event_record(
    *,
    project_id: int,
    kind: str,
    actor: Actor = SYSTEM,
    task_id: uuid.UUID | None = None,
    conversation_id: uuid.UUID | None = None,
    payload: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> Event:
    """Append one event; it gets its position when the transaction ends."""
    return audit_events_record(
        project_id=project_id,
        events=[
            {
                "kind": kind,
                "task_id": task_id,
                "conversation_id": conversation_id,
                "payload": payload,
                "occurred_at": occurred_at,
                "uuid": event_id,
            }
        ],
        actor=actor,
    )[0]


def audit_events_record(
    *, project_id: int, events: list[dict[str, Any]], actor: Actor = SYSTEM
) -> list[Event]:
    """Append many events in one bulk insert at the end of the transaction."""
    now = timezone.now()
    built = [
        Event(
            uuid=spec.get("uuid") or uuid.uuid4(),
            project_id=project_id,
            kind=spec["kind"],
            task_id=spec.get("task_id"),
            conversation_id=spec.get("conversation_id"),
            actor_type=actor.type,
            actor_id=actor.id,
            actor_label=actor.label[:200],
            correlation_id=actor.correlation_id,
            payload=_clean_payload(spec.get("payload") or {}, field_name="payload"),
            occurred_at=spec.get("occurred_at") or now,
        )
        for spec in events
    ]
    with journaled():
        _current().events.extend(built)
    return built


def audit_custom_event_create(
    *,
    project_id: int,
    kind: str,
    actor: Actor = SYSTEM,
    task_id: uuid.UUID | None = None,
    conversation_id: uuid.UUID | None = None,
    payload: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> Event:
    """Append a client-defined event; system kinds are reserved.

    A repeated `event_id` with the same body returns the stored event.
    """
    errors: dict[str, str] = {}
    kind = (kind or "").strip()
    if not kind:
        errors["kind"] = "This field is required."
    elif len(kind) > 100:
        errors["kind"] = "At most 100 characters."
    elif kind.startswith(RESERVED_EVENT_PREFIXES):
        errors["kind"] = (
            f"Kinds starting with {', '.join(RESERVED_EVENT_PREFIXES)} are reserved."
        )
    if payload is not None and not isinstance(payload, dict):
        errors["payload"] = "Must be a JSON object."
    if errors:
        raise ValidationError(errors)
    if event_id is not None:
        stored = Event.objects.filter(uuid=event_id).first()
        if stored is not None:
            supplied = {
                "project_id": project_id,
                "kind": kind,
                "task_id": task_id,
                "conversation_id": conversation_id,
                "payload": _clean_payload(payload or {}, field_name="payload"),
            }
            check_same(
                {k: getattr(stored, k) for k in supplied}, supplied, what="event"
            )
            return stored
    return audit_event_record(
        project_id=project_id,
        kind=kind,
        actor=actor,
        task_id=task_id,
        conversation_id=conversation_id,
        payload=payload,
        occurred_at=occurred_at,
        event_id=event_id,
    )


def audit_log_record(
    *,
    project_id: int,
    action: str,
    actor: Actor = SYSTEM,
    target: str = "",
    obj: models.Model | None = None,
    success: bool = True,
    duration_ms: float | None = None,
    error: str = "",
    details: dict[str, Any] | None = None,
    changes: dict[str, Any] | None = None,
    request_id: str = "",
    method: str = "",
    path: str = "",
    status_code: int | None = None,
    ip: str | None = None,
    user_agent: str = "",
    occurred_at: datetime | None = None,
    entry_id: uuid.UUID | None = None,
) -> AuditLog:
    """Append one audit record; it is chained when the transaction ends."""
    errors: dict[str, str] = {}
    if not action or len(action) > 100:
        errors["action"] = "Required, at most 100 characters."
    if duration_ms is not None and duration_ms < 0:
        errors["duration_ms"] = "Must be zero or more."
    if details is not None and not isinstance(details, dict):
        errors["details"] = "Must be a JSON object."
    if ip:
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError:
            errors["ip"] = "Not an IPv4 or IPv6 address."
    if errors:
        raise ValidationError(errors)
    entry = AuditLog(
        uuid=entry_id or uuid.uuid4(),
        project_id=project_id,
        actor_type=actor.type,
        actor_id=actor.id,
        actor_label=actor.label[:200],
        action=action,
        target=target[:500],
        content_type=ContentType.objects.get_for_model(obj)
        if obj is not None
        else None,
        object_id=str(obj.pk) if obj is not None else "",
        object_repr=str(obj)[:200] if obj is not None else "",
        request_id=request_id or actor.correlation_id,
        method=method,
        path=path[:500],
        status_code=status_code,
        success=success,
        duration_ms=duration_ms,
        ip=ip,
        user_agent=user_agent[:500],
        error=error,
        details=_clean_payload(details or {}, field_name="details"),
        changes=_clean_payload(changes or {}, field_name="changes"),
        occurred_at=occurred_at or timezone.now(),
    )
    with journaled():
        _current().audits.append(entry)
    return entry


@dataclass
class ChainReport:
    """Outcome of an audit chain check for one project."""

    project_id: int
    checked: int = 0
    broken_at: int | None = None
    reason: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def audit_chain_verify(*, project_id: int) -> ChainReport:
    """Recompute the project's audit chain and report the first broken link."""
    report = ChainReport(project_id=project_id)
    head = JournalHead.objects.filter(project_id=project_id).first()
    expected_seq = (head.audit_anchor_seq if head else 0) + 1
    prev_hash = (head.audit_anchor_hash if head else "") or GENESIS_HASH
    rows = AuditLog.objects.filter(project_id=project_id).order_by("seq")
    for entry in rows.iterator(chunk_size=2000):
        if entry.seq != expected_seq:
            report.broken_at = expected_seq
            report.reason = (
                f"seq {expected_seq} is missing (next stored row is seq {entry.seq})"
            )
            return report
        if entry.prev_hash != prev_hash:
            report.broken_at = entry.seq
            report.reason = f"seq {entry.seq} does not link to the row before it"
            return report
        if audit_log_digest(entry) != entry.hash:
            report.broken_at = entry.seq
            report.reason = f"seq {entry.seq} was altered (its hash does not match)"
            return report
        prev_hash = entry.hash
        expected_seq += 1
        report.checked += 1
    last_seq = head.audit_seq if head else 0
    if expected_seq - 1 != last_seq:
        report.broken_at = expected_seq
        report.reason = (
            f"the chain ends at seq {expected_seq - 1} but the head records {last_seq}"
        )
    elif head and last_seq and prev_hash != head.audit_hash:
        report.broken_at = last_seq
        report.reason = f"seq {last_seq} does not match the head's hash"
    return report


@contextmanager
def audit_deletion_granted(*, reason: str) -> Iterator[None]:
    """Let deletes through the append-only triggers inside this transaction."""
    with transaction.atomic():
        grant = DeletionGrant.objects.create(reason=reason)
        yield
        DeletionGrant.objects.filter(pk=grant.pk).delete()
