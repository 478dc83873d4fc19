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
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.utils import timezone

from audit.models import (
    RESERVED_AUDIT_PREFIXES,
    RESERVED_EVENT_PREFIXES,
    AuditAction,
    AuditLog,
    DeletionGrant,
    Event,
    JournalHead,
)
from audit.selectors import event_written_total
from swarmsite.actors import SYSTEM, Actor
from swarmsite.errors import ValidationError
from swarmsite.metrics import EVENTS_WRITTEN
from swarmsite.models import DEFAULT_PROJECT_SLUG, Project
from swarmsite.realtime import project_group, publish_on_commit
from swarmsite.validation import check_same, parse_uuid

GENESIS_HASH = "0" * 64

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
            _insert_events(events)
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


# From this many events a flush writes them with PostgreSQL's binary COPY:
# several times cheaper than an INSERT for an ingest batch. The Event objects
# then keep `id` unset; their uuid and position identify them.
COPY_MIN_EVENTS = 200
_EVENT_COPY_TYPES = {
    "uuid": "uuid",
    "project_id": "int8",
    "position": "int8",
    "kind": "varchar",
    "task_id": "uuid",
    "conversation_id": "uuid",
    "actor_type": "varchar",
    "actor_id": "varchar",
    "actor_label": "varchar",
    "correlation_id": "varchar",
    "payload": "jsonb",
    "occurred_at": "timestamptz",
    "recorded_at": "timestamptz",
}


def _as_uuid(value: Any) -> uuid.UUID | None:
    return value if value is None or isinstance(value, uuid.UUID) else uuid.UUID(value)


def _insert_events(events: list[Event]) -> None:
    connection = transaction.get_connection()
    if (
        connection.vendor != "postgresql"
        or len(events) < COPY_MIN_EVENTS
        or any(timezone.is_naive(e.occurred_at) for e in events)
    ):
        Event.objects.bulk_create(events)
        return
    from psycopg.types.json import Jsonb

    columns = ", ".join(_EVENT_COPY_TYPES)
    sql = f"COPY {Event._meta.db_table} ({columns}) FROM STDIN (FORMAT BINARY)"
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.cursor.copy(sql) as copy,
    ):
        copy.set_types(list(_EVENT_COPY_TYPES.values()))
        for e in events:
            copy.write_row(
                (
                    _as_uuid(e.uuid),
                    e.project_id,
                    e.position,
                    e.kind,
                    _as_uuid(e.task_id),
                    _as_uuid(e.conversation_id),
                    e.actor_type,
                    e.actor_id,
                    e.actor_label,
                    e.correlation_id,
                    Jsonb(e.payload),
                    e.occurred_at,
                    e.recorded_at,
                )
            )


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


def _check_custom_kind(kind: Any, payload: Any) -> str:
    errors: dict[str, str] = {}
    kind = kind.strip() if isinstance(kind, str) else ""
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
    return kind


def _buffered(model: type[models.Model], ids: set[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """Rows of this transaction's journal (not yet inserted) with these uuids."""
    journal = _current()
    if journal is None or not ids:
        return {}
    rows = journal.events if model is Event else journal.audits
    return {row.uuid: row for row in rows if row.uuid in ids}


CUSTOM_EVENT_KEYS = frozenset(
    {"kind", "task_id", "conversation_id", "payload", "occurred_at", "event_id"}
)


def audit_custom_events_create(
    *, project_id: int, events: list[dict[str, Any]], actor: Actor = SYSTEM
) -> list[tuple[Event, bool]]:
    """Append client-defined events with one bulk insert; system kinds are reserved.

    Each item takes audit_custom_event_create's arguments. A repeated
    `event_id` with the same body returns the stored (or earlier) event, with
    another body raises IdempotencyConflict. Raises on the first bad item,
    having buffered nothing.
    """
    now = timezone.now()
    checked: list[dict[str, Any]] = []
    for spec in events:
        unknown = set(spec) - CUSTOM_EVENT_KEYS
        if unknown:
            raise ValidationError(dict.fromkeys(sorted(unknown), "Unknown field."))
        checked.append(
            {
                "kind": _check_custom_kind(spec.get("kind"), spec.get("payload")),
                "task_id": parse_uuid(spec.get("task_id"), field="task"),
                "conversation_id": parse_uuid(
                    spec.get("conversation_id"), field="conversation"
                ),
                "payload": _clean_payload(
                    spec.get("payload") or {}, field_name="payload"
                ),
                "occurred_at": spec.get("occurred_at") or now,
                "uuid": parse_uuid(spec.get("event_id")),
            }
        )
    ids = {spec["uuid"] for spec in checked if spec["uuid"]}
    known: dict[uuid.UUID, Event] = _buffered(Event, ids)
    if ids:
        known |= {e.uuid: e for e in Event.objects.filter(uuid__in=ids)}
    results: list[tuple[Event, bool]] = []
    built: list[Event] = []
    for spec in checked:
        stored = known.get(spec["uuid"]) if spec["uuid"] else None
        if stored is not None:
            supplied = {"project_id": project_id} | {
                k: spec[k] for k in ("kind", "task_id", "conversation_id", "payload")
            }
            check_same(
                {k: getattr(stored, k) for k in supplied}, supplied, what="event"
            )
            results.append((stored, False))
            continue
        event = Event(
            uuid=spec["uuid"] or uuid.uuid4(),
            project_id=project_id,
            kind=spec["kind"],
            task_id=spec["task_id"],
            conversation_id=spec["conversation_id"],
            actor_type=actor.type,
            actor_id=actor.id,
            actor_label=actor.label[:200],
            correlation_id=actor.correlation_id,
            payload=spec["payload"],
            occurred_at=spec["occurred_at"],
        )
        known[event.uuid] = event
        built.append(event)
        results.append((event, True))
    with journaled():
        _current().events.extend(built)
    return results


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
    spec = {
        "kind": kind,
        "task_id": task_id,
        "conversation_id": conversation_id,
        "payload": payload,
        "occurred_at": occurred_at,
        "event_id": event_id,
    }
    return audit_custom_events_create(
        project_id=project_id, events=[spec], actor=actor
    )[0][0]


def _build_audit_log(
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
    return AuditLog(
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


def audit_log_record(
    *, project_id: int, action: str, actor: Actor = SYSTEM, **fields: Any
) -> AuditLog:
    """Append one audit record; it is chained when the transaction ends.

    `fields` are `_build_audit_log`'s (target, obj, success, duration_ms...).
    """
    entry = {"action": action, **fields}
    return audit_logs_record(project_id=project_id, entries=[entry], actor=actor)[0]


def audit_logs_record(
    *, project_id: int, entries: list[dict[str, Any]], actor: Actor = SYSTEM
) -> list[AuditLog]:
    """Append many audit records, chained in one bulk insert at commit."""
    built = [
        _build_audit_log(project_id=project_id, actor=actor, **spec) for spec in entries
    ]
    with journaled():
        _current().audits.extend(built)
    return built


# What a client may send for an audit record; the rest is request context.
AUDIT_CLIENT_FIELDS = ("action", "target", "success", "duration_ms", "error", "details")


def audit_logs_create(
    *, project_id: int, entries: list[dict[str, Any]], actor: Actor = SYSTEM
) -> list[tuple[AuditLog, bool]]:
    """Append client-sent audit records; a repeated `entry_id` returns the stored.

    Same id with another body raises IdempotencyConflict. Raises on the first
    bad entry, having buffered nothing.
    """
    ids = {parse_uuid(e.get("entry_id")) for e in entries} - {None}
    known: dict[uuid.UUID, AuditLog] = _buffered(AuditLog, ids)
    if ids:
        known |= {a.uuid: a for a in AuditLog.objects.filter(uuid__in=ids)}
    results: list[tuple[AuditLog, bool]] = []
    new: list[AuditLog] = []
    for spec in entries:
        entry_id = parse_uuid(spec.get("entry_id"))
        entry = _build_audit_log(
            project_id=project_id, actor=actor, **(spec | {"entry_id": entry_id})
        )
        stored = known.get(entry_id) if entry_id else None
        if stored is not None:
            fields = ("project_id", *AUDIT_CLIENT_FIELDS)
            check_same(
                {k: getattr(stored, k) for k in fields},
                {k: getattr(entry, k) for k in fields},
                what="audit record",
            )
            results.append((stored, False))
            continue
        known[entry.uuid] = entry
        new.append(entry)
        results.append((entry, True))
    with journaled():
        _current().audits.extend(new)
    return results


def audit_log_create(
    *,
    project_id: int,
    action: str,
    actor: Actor = SYSTEM,
    target: str = "",
    success: bool = True,
    duration_ms: float | None = None,
    error: str = "",
    details: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
    entry_id: uuid.UUID | None = None,
) -> tuple[AuditLog, bool]:
    """Record a client-reported action; True when created.

    Actions the services and the request middleware record are reserved. A
    repeated `entry_id` with the same body returns the stored record.
    """
    action = (action or "").strip()
    if action.startswith(RESERVED_AUDIT_PREFIXES):
        raise ValidationError(
            {
                "action": "Actions starting with "
                f"{', '.join(RESERVED_AUDIT_PREFIXES)} are reserved."
            }
        )
    if entry_id is not None:
        stored = AuditLog.objects.filter(uuid=entry_id).first()
        if stored is not None:
            supplied = {
                "project_id": project_id,
                "action": action,
                "target": target[:500],
                "success": success,
                "duration_ms": duration_ms,
                "error": error,
                "details": _clean_payload(details or {}, field_name="details"),
            }
            if occurred_at is not None:
                supplied["occurred_at"] = occurred_at
            check_same(
                {k: getattr(stored, k) for k in supplied}, supplied, what="audit record"
            )
            return stored, False
    entry = audit_log_record(
        project_id=project_id,
        action=action,
        actor=actor,
        target=target,
        success=success,
        duration_ms=duration_ms,
        error=error,
        details=details,
        occurred_at=occurred_at,
        entry_id=entry_id,
    )
    return entry, True


@dataclass(frozen=True)
class ApiRequestRecord:
    """What the request middleware keeps of one API request until a flush.

    `project_id` is None when the request had no project (failed or missing
    credentials): such requests are recorded on the `default` project.
    """

    project_id: int | None
    actor: Actor
    method: str
    path: str
    route: str
    status_code: int
    duration_ms: float
    ip: str | None
    user_agent: str
    request_id: str
    occurred_at: datetime
    details: dict[str, Any] = field(default_factory=dict)


def _text(value: str, limit: int) -> str:
    # PostgreSQL text cannot hold NUL, and a request path or header may.
    return value.replace("\x00", "\ufffd")[:limit]


def audit_api_requests_record(*, records: list[ApiRequestRecord]) -> int:
    """Append many request records in one journaled transaction; return count.

    Records of projects deleted since the request are skipped. One chain
    update per project per call, instead of one transaction per request.
    """
    if not records:
        return 0
    wanted = {r.project_id for r in records if r.project_id is not None}
    known = set(Project.objects.filter(pk__in=wanted).values_list("pk", flat=True))
    default_id = None
    if any(r.project_id is None for r in records):
        default_id = (
            Project.objects.filter(slug=DEFAULT_PROJECT_SLUG)
            .values_list("pk", flat=True)
            .first()
        )
    entries = []
    for record in records:
        if record.project_id is None:
            project_id = default_id
        elif record.project_id in known:
            project_id = record.project_id
        else:
            project_id = None
        if project_id is None:
            continue
        ip = record.ip
        if ip:
            try:
                ip = str(ipaddress.ip_address(ip))
            except ValueError:
                ip = None
        entries.append(
            AuditLog(
                uuid=uuid.uuid4(),
                project_id=project_id,
                actor_type=record.actor.type,
                actor_id=record.actor.id,
                actor_label=_text(record.actor.label, 200),
                action=AuditAction.API_REQUEST,
                target=_text(record.route, 500),
                request_id=_text(record.request_id, 64),
                method=_text(record.method, 10),
                path=_text(record.path, 500),
                status_code=record.status_code,
                success=record.status_code < 400,
                duration_ms=round(max(record.duration_ms, 0.0), 3),
                ip=ip,
                user_agent=_text(record.user_agent, 500),
                details=_clean_payload(record.details, field_name="details"),
                occurred_at=record.occurred_at,
            )
        )
    if entries:
        with journaled():
            _current().audits.extend(entries)
    return len(entries)


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


AUDIT_PRUNED_ACTION = "audit.pruned"


@dataclass
class PruneReport:
    """What `audit_log_prune` deleted (or would delete) and why it stopped."""

    project_id: int
    cutoff: datetime
    dry_run: bool
    deleted: int = 0
    batches: int = 0
    first_seq: int | None = None
    anchor_seq: int = 0
    stopped: str = ""
    chain_broken: bool = False


def _prunable_prefix(
    rows: list[AuditLog],
    *,
    cutoff: datetime,
    expected_seq: int,
    prev_hash: str,
    report: PruneReport,
) -> list[AuditLog]:
    """The leading rows recorded before `cutoff` whose links all check out."""
    taken: list[AuditLog] = []
    for row in rows:
        if row.recorded_at >= cutoff:
            report.stopped = (
                f"seq {row.seq} was recorded at {row.recorded_at.isoformat()}, "
                "after the cutoff"
            )
            break
        problem = ""
        if row.seq != expected_seq:
            problem = f"seq {expected_seq} is missing"
        elif row.prev_hash != prev_hash:
            problem = f"seq {row.seq} does not link to the row before it"
        elif audit_log_digest(row) != row.hash:
            problem = f"seq {row.seq} was altered"
        if problem:
            # Deleting past a broken link would erase the evidence.
            report.chain_broken = True
            report.stopped = f"the chain is broken ({problem}); nothing past it pruned"
            break
        taken.append(row)
        expected_seq += 1
        prev_hash = row.hash
    return taken


def audit_log_prune(
    *,
    project_id: int,
    cutoff: datetime,
    dry_run: bool = False,
    batch_size: int = 1000,
    actor: Actor = SYSTEM,
) -> PruneReport:
    """Delete the oldest audit records recorded before `cutoff`, in batches.

    Only a prefix of the chain goes: its last deleted record becomes the
    head's anchor, so `audit_chain_verify` still checks every record left.
    Each batch is one transaction that also records an `audit.pruned` entry.
    """
    if cutoff.tzinfo is None:
        raise ValidationError({"cutoff": "Must be timezone-aware."})
    if batch_size < 1:
        raise ValidationError({"batch_size": "Must be at least 1."})
    report = PruneReport(project_id=project_id, cutoff=cutoff, dry_run=dry_run)
    head = JournalHead.objects.filter(project_id=project_id).first()
    if head is None:
        report.stopped = "the project has no audit records"
        return report
    anchor_seq = head.audit_anchor_seq
    anchor_hash = head.audit_anchor_hash or GENESIS_HASH
    report.anchor_seq = anchor_seq
    # Records appended meanwhile (this prune's own among them) are left alone.
    last_seq = head.audit_seq
    while not report.stopped:
        # A dry run only reads: no transaction, so no SQLite write lock.
        with nullcontext() if dry_run else journaled():
            if not dry_run:
                head = JournalHead.objects.select_for_update().get(
                    project_id=project_id
                )
                anchor_seq = head.audit_anchor_seq
                anchor_hash = head.audit_anchor_hash or GENESIS_HASH
            rows = list(
                AuditLog.objects.filter(
                    project_id=project_id, seq__gt=anchor_seq, seq__lte=last_seq
                ).order_by("seq")[:batch_size]
            )
            if not rows:
                report.stopped = "every older record is pruned"
                break
            taken = _prunable_prefix(
                rows,
                cutoff=cutoff,
                expected_seq=anchor_seq + 1,
                prev_hash=anchor_hash,
                report=report,
            )
            if not taken:
                break
            last = taken[-1]
            if not dry_run:
                with audit_deletion_granted(reason="prune_audit"):
                    AuditLog.objects.filter(
                        project_id=project_id,
                        seq__gt=anchor_seq,
                        seq__lte=last.seq,
                    ).delete()
                head.audit_anchor_seq = last.seq
                head.audit_anchor_hash = last.hash
                head.save(update_fields=["audit_anchor_seq", "audit_anchor_hash"])
                audit_log_record(
                    project_id=project_id,
                    action=AUDIT_PRUNED_ACTION,
                    actor=actor,
                    target=f"seq {taken[0].seq}..{last.seq}",
                    details={
                        "from_seq": taken[0].seq,
                        "to_seq": last.seq,
                        "deleted": len(taken),
                        "cutoff": cutoff.isoformat(),
                        "anchor_hash": last.hash,
                    },
                )
        if report.first_seq is None:
            report.first_seq = taken[0].seq
        report.deleted += len(taken)
        report.batches += 1
        report.anchor_seq = anchor_seq = last.seq
        anchor_hash = last.hash
    return report
