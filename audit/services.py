"""Writers of the event log and the audit log.

They build rows and buffer them in the journal (`audit.journal`), which
writes them last, in commit order, when the outermost block ends.
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils import timezone

from audit.journal import journal_append, journal_buffered, race_safe
from audit.models import (
    RESERVED_AUDIT_PREFIXES,
    RESERVED_EVENT_PREFIXES,
    AuditAction,
    AuditLog,
    Event,
)
from swarmsite.actors import SYSTEM, Actor
from swarmsite.errors import IdempotencyConflict, ValidationError
from swarmsite.models import DEFAULT_PROJECT_SLUG, Project
from swarmsite.validation import check_same, json_clean, parse_uuid, to_utc


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
            payload=json_clean(spec.get("payload") or {}, field="payload"),
            occurred_at=spec.get("occurred_at") or now,
        )
        for spec in events
    ]
    journal_append(events=built)
    return built


def _when(value: datetime | None, default: datetime, field: str) -> datetime:
    return default if value is None else to_utc(value, field=field)


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


CUSTOM_EVENT_KEYS = frozenset(
    {"kind", "task_id", "conversation_id", "payload", "occurred_at", "event_id"}
)


@race_safe
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
                "payload": json_clean(spec.get("payload") or {}, field="payload"),
                "occurred_at": _when(spec.get("occurred_at"), now, "occurred_at"),
                "uuid": parse_uuid(spec.get("event_id")),
            }
        )
    ids = {spec["uuid"] for spec in checked if spec["uuid"]}
    known: dict[uuid.UUID, Event] = journal_buffered(Event, ids)
    if ids:
        known |= {e.uuid: e for e in Event.objects.filter(uuid__in=ids).order_by()}
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
    journal_append(events=built)
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
        details=json_clean(details or {}, field="details"),
        changes=json_clean(changes or {}, field="changes"),
        occurred_at=_when(occurred_at, timezone.now(), "occurred_at"),
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
    journal_append(audits=built)
    return built


# What a client may send for an audit record; the rest is request context.
AUDIT_CLIENT_FIELDS = ("action", "target", "success", "duration_ms", "error", "details")
AUDIT_CREATE_KEYS = frozenset({*AUDIT_CLIENT_FIELDS, "occurred_at", "entry_id"})


def _check_client_action(action: Any) -> str:
    action = action.strip() if isinstance(action, str) else ""
    if action.startswith(RESERVED_AUDIT_PREFIXES):
        raise ValidationError(
            {
                "action": "Actions starting with "
                f"{', '.join(RESERVED_AUDIT_PREFIXES)} are reserved."
            }
        )
    return action


@race_safe
def audit_logs_create(
    *, project_id: int, entries: list[dict[str, Any]], actor: Actor = SYSTEM
) -> list[tuple[AuditLog, bool]]:
    """Append client-sent audit records; a repeated `entry_id` returns the stored.

    Actions the services and the request middleware record are reserved.
    Same id with another body raises IdempotencyConflict. Raises on the first
    bad entry, having buffered nothing.
    """
    unknown = {k for spec in entries for k in spec} - AUDIT_CREATE_KEYS
    if unknown:
        raise ValidationError(dict.fromkeys(sorted(unknown), "Unknown field."))
    entries = [
        {k: v for k, v in spec.items() if v is not None or k == "duration_ms"}
        | {"action": _check_client_action(spec.get("action"))}
        for spec in entries
    ]
    ids = {parse_uuid(e.get("entry_id")) for e in entries} - {None}
    known: dict[uuid.UUID, AuditLog] = journal_buffered(AuditLog, ids)
    if ids:
        known |= {a.uuid: a for a in AuditLog.objects.filter(uuid__in=ids).order_by()}
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
    journal_append(audits=new)
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
    """Record a client-reported action; True when created. See audit_logs_create."""
    spec = {
        "action": action,
        "target": target,
        "success": success,
        "duration_ms": duration_ms,
        "error": error,
        "details": details,
        "occurred_at": occurred_at,
        "entry_id": entry_id,
    }
    return audit_logs_create(project_id=project_id, entries=[spec], actor=actor)[0]


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
                details=json_clean(record.details, field="details"),
                occurred_at=record.occurred_at,
            )
        )
    if entries:
        journal_append(audits=entries)
    return len(entries)


def audit_operation_applied(
    *,
    project_id: int,
    operation_id: uuid.UUID | None,
    kinds: tuple[str, ...],
    subject: tuple[str, str],
) -> bool:
    """Whether the update with this operation id was applied already.

    An update that carries an operation id records its event under that
    uuid, so a replay finds it with one indexed lookup, whatever happened
    since. Callers lock the row they update first, so a concurrent replay
    waits for the first to commit and then sees its event. The same id on
    another kind of write or another object is an IdempotencyConflict.
    """
    return audit_operations_applied(
        project_id=project_id, operations=[(operation_id, kinds, subject)]
    )[0]


def audit_operations_applied(
    *,
    project_id: int,
    operations: list[tuple[uuid.UUID | None, tuple[str, ...], tuple[str, str]]],
) -> list[bool]:
    """audit_operation_applied for (operation id, kinds, subject) each, one query."""
    ids = {operation_id for operation_id, _, _ in operations if operation_id}
    if not ids:
        return [False] * len(operations)
    found = journal_buffered(Event, ids)
    if ids - set(found):
        found |= {
            event.uuid: event
            for event in Event.objects.filter(uuid__in=ids - set(found)).only(
                "uuid", "project_id", "kind", "payload"
            )
        }
    applied = []
    for operation_id, kinds, (key, value) in operations:
        event = found.get(operation_id) if operation_id else None
        if event is not None and (
            event.project_id != project_id
            or event.kind not in kinds
            or str(event.payload.get(key)) != value
        ):
            raise IdempotencyConflict(
                f"The operation id {operation_id} was used for another write."
            )
        applied.append(event is not None)
    return applied
