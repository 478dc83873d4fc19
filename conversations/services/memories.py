"""Writes to memories: put (create or upsert by key), update, delete."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db.models import F
from django.utils import timezone

from audit.journal import journaled, race_safe
from audit.models import AuditAction, EventKind
from audit.services import (
    SYSTEM,
    Actor,
    audit_event_record,
    audit_log_record,
    audit_operation_applied,
)
from conversations.models import (
    DEFAULT_NAMESPACE,
    MEMORY_MAX_CONTENT_BYTES,
    Conversation,
    Memory,
)
from swarmsite.errors import IdempotencyConflict, NotFound, ValidationError
from swarmsite.models import Project
from swarmsite.validation import (
    Resolver,
    body_digest,
    check_replay,
    json_check,
    json_default,
    json_object,
    parse_uuid,
    resolve,
)
from tasks.models import Agent, Task

MAX_TAGS = 100
TAG_MAX_LENGTH = 100
NAMESPACE_MAX_LENGTH = 200
KEY_MAX_LENGTH = 500
MEMORY_PUT_KEYS = frozenset(
    {
        "memory_id",
        "content",
        "agent",
        "namespace",
        "key",
        "tags",
        "metadata",
        "task",
        "conversation",
        "expires_at",
    }
)
# What PATCH may change; agent, namespace and key name the entry.
MEMORY_UPDATABLE_FIELDS = (
    "content",
    "tags",
    "metadata",
    "task",
    "conversation",
    "expires_at",
)
_WRITE_KINDS = (EventKind.MEMORY_CREATED, EventKind.MEMORY_UPDATED)


def _content(value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError({"content": "Must be a string."})
    if len(value.encode("utf-8", "surrogatepass")) > MEMORY_MAX_CONTENT_BYTES:
        raise ValidationError(
            {"content": f"At most {MEMORY_MAX_CONTENT_BYTES} bytes (UTF-8)."}
        )
    json_check(value, field="content")
    return value


def _text(value: Any, *, field: str, max_length: int, empty: bool) -> str:
    if not isinstance(value, str):
        raise ValidationError({field: "Must be a string."})
    if not empty and not value:
        raise ValidationError({field: "Must not be empty."})
    if len(value) > max_length:
        raise ValidationError({field: f"At most {max_length} characters."})
    json_check(value, field=field)
    return value


def _tags(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError({"tags": "Must be a list of strings."})
    if len(value) > MAX_TAGS:
        raise ValidationError({"tags": f"At most {MAX_TAGS} tags."})
    for tag in value:
        if not isinstance(tag, str) or not tag or len(tag) > TAG_MAX_LENGTH:
            raise ValidationError(
                {"tags": f"Each tag is a string of 1 to {TAG_MAX_LENGTH} characters."}
            )
    json_check(value, field="tags")
    return list(dict.fromkeys(value))


def _expires_at(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or timezone.is_naive(value):
        raise ValidationError(
            {"expires_at": "Must be a date and time with a time zone."}
        )
    return value


def _snapshot(memory: Memory) -> dict[str, Any]:
    return {
        "agent": str(memory.agent_id) if memory.agent_id else None,
        "namespace": memory.namespace,
        "key": memory.key,
        "content": memory.content,
        "tags": memory.tags,
        "metadata": memory.metadata,
        "task": str(memory.task_id) if memory.task_id else None,
        "conversation": str(memory.conversation_id) if memory.conversation_id else None,
        "expires_at": json_default(memory.expires_at) if memory.expires_at else None,
    }


def _event_payload(memory: Memory, **extra: Any) -> dict[str, Any]:
    snapshot = _snapshot(memory)
    return {
        "memory": str(memory.uuid),
        "version": memory.version,
        **{k: v for k, v in snapshot.items() if k != "content"},
        **extra,
    }


def _record(
    memory: Memory,
    kind: str,
    action: str,
    actor: Actor,
    *,
    payload: dict[str, Any],
    event_id: uuid.UUID | None = None,
    changes: dict[str, Any] | None = None,
) -> None:
    audit_event_record(
        project_id=memory.project_id,
        kind=kind,
        actor=actor,
        task_id=memory.task_id,
        conversation_id=memory.conversation_id,
        payload=payload,
        event_id=event_id,
    )
    audit_log_record(
        project_id=memory.project_id,
        action=action,
        actor=actor,
        obj=memory,
        changes=changes or {},
    )


def _changes(before: dict, after: dict) -> dict[str, list]:
    return {
        k: [before[k], after[k]]
        for k in after
        if before[k] != after[k] and k != "content"
    } | ({"content": ["...", "..."]} if before["content"] != after["content"] else {})


class _References:
    """Agents, tasks and conversations a batch of puts names, one query each."""

    def __init__(self, project: Project, specs: list[dict[str, Any]]) -> None:
        self.agents = Resolver(Agent, project=project)
        self.tasks = Resolver(Task, project=project)
        self.conversations = Resolver(Conversation, project=project)
        for spec in specs:
            self.agents.want(spec.get("agent"))
            self.tasks.want(spec.get("task"))
            self.conversations.want(spec.get("conversation"))


def _build(project: Project, spec: dict[str, Any], refs: _References) -> Memory:
    unknown = set(spec) - MEMORY_PUT_KEYS
    if unknown:
        raise ValidationError(dict.fromkeys(sorted(unknown), "Unknown field."))
    if "content" not in spec:
        raise ValidationError({"content": "This field is required."})
    namespace = spec.get("namespace")
    return Memory(
        project=project,
        agent=refs.agents.one(field="agent", value=spec.get("agent")),
        namespace=_text(
            DEFAULT_NAMESPACE if namespace is None else namespace,
            field="namespace",
            max_length=NAMESPACE_MAX_LENGTH,
            empty=False,
        ),
        key=_text(
            spec.get("key") or "", field="key", max_length=KEY_MAX_LENGTH, empty=True
        ),
        content=_content(spec["content"]),
        tags=_tags(spec.get("tags")),
        metadata=json_object(spec.get("metadata"), field="metadata"),
        task=refs.tasks.one(field="task", value=spec.get("task")),
        conversation=refs.conversations.one(
            field="conversation", value=spec.get("conversation")
        ),
        expires_at=_expires_at(spec.get("expires_at")),
    )


def _put(
    project: Project, spec: dict[str, Any], refs: _References, actor: Actor
) -> tuple[Memory, bool]:
    memory_id = parse_uuid(spec.get("memory_id"), field="id")
    memory = _build(project, spec, refs)
    supplied = _snapshot(memory)
    if memory.key:
        existing = (
            Memory.objects.select_for_update(of=("self",))
            .filter(
                project=project,
                agent=memory.agent,
                namespace=memory.namespace,
                key=memory.key,
            )
            .first()
        )
        if existing is not None:
            return _upsert(existing, supplied, memory, memory_id, actor), False
    if memory_id is not None:
        stored = Memory.objects.filter(uuid=memory_id).first()
        if stored is not None:
            if stored.project_id != project.pk or stored.key != memory.key:
                raise IdempotencyConflict(f"The id {memory_id} is taken.")
            check_replay(
                stored_digest=stored.create_digest,
                stored=_snapshot(stored),
                supplied=supplied,
                what="memory",
            )
            stored.replayed = True
            return stored, False
        if audit_operation_applied(
            project_id=project.pk,
            operation_id=memory_id,
            kinds=(*_WRITE_KINDS, EventKind.MEMORY_DELETED),
            subject=("memory", str(memory_id)),
        ):
            raise IdempotencyConflict(
                f"The memory {memory_id} was written and then deleted."
            )
    memory.uuid = memory_id or uuid.uuid4()
    memory.create_digest = body_digest(supplied)
    memory.created_at = memory.updated_at = timezone.now()
    # A concurrent put of the same id or key makes this INSERT fail;
    # race_safe runs the batch again, which then finds the row.
    memory.save(force_insert=True)
    memory.replayed = False
    _record(
        memory,
        EventKind.MEMORY_CREATED,
        AuditAction.MEMORY_CREATED,
        actor,
        payload=_event_payload(memory),
        # Keyed writes with an id: the id names the operation too, so a
        # retry after later writes to the key changes nothing.
        event_id=memory.uuid if memory_id is not None and memory.key else None,
    )
    return memory, True


def _upsert(
    existing: Memory,
    supplied: dict[str, Any],
    memory: Memory,
    operation_id: uuid.UUID | None,
    actor: Actor,
) -> Memory:
    existing.replayed = audit_operation_applied(
        project_id=existing.project_id,
        operation_id=operation_id,
        kinds=_WRITE_KINDS,
        subject=("memory", str(existing.uuid)),
    )
    if existing.replayed:
        return existing
    before = _snapshot(existing)
    changes = _changes(before, supplied)
    if changes:
        _apply(existing, {k: getattr(memory, k) for k in MEMORY_UPDATABLE_FIELDS})
    elif operation_id is None:
        existing.replayed = True
        return existing
    # With an operation id the event is written even for no change, so a
    # replay after later writes still finds it.
    _record(
        existing,
        EventKind.MEMORY_UPDATED,
        AuditAction.MEMORY_UPDATED,
        actor,
        payload=_event_payload(existing, changes=sorted(changes)),
        event_id=operation_id,
        changes=changes,
    )
    return existing


def _apply(memory: Memory, values: dict[str, Any]) -> None:
    now = timezone.now()
    Memory.objects.filter(pk=memory.pk).update(
        **values, version=F("version") + 1, updated_at=now
    )
    for name, value in values.items():
        setattr(memory, name, value)
    memory.version += 1
    memory.updated_at = now


@race_safe
def memory_put_many(
    *, project: Project, memories: list[dict[str, Any]], actor: Actor = SYSTEM
) -> list[tuple[Memory, bool]]:
    """Write memories in order; True for each that was created.

    Each item takes memory_put's arguments. With a `key`, the entry of that
    agent + namespace + key is updated (or left alone when identical, with
    `replayed` set); without one, `memory_id` makes a create idempotent.
    With a key, `memory_id` also names the operation: a retry after later
    writes changes nothing. Raises on the first bad item.
    """
    refs = _References(project, memories)
    return [_put(project, spec, refs, actor) for spec in memories]


def memory_put(
    *, project: Project, content: str, actor: Actor = SYSTEM, **fields: Any
) -> tuple[Memory, bool]:
    """Create a memory, or update the one of its agent + namespace + key.

    `fields` are memory_put_many's item keys (memory_id, agent, key, ...).
    """
    spec = {"content": content, **fields}
    return memory_put_many(project=project, memories=[spec], actor=actor)[0]


def _locked(memory: Memory) -> Memory:
    stored = Memory.objects.select_for_update(of=("self",)).filter(pk=memory.pk).first()
    if stored is None:
        raise NotFound(f"No memory {memory.uuid}.")
    return stored


@journaled()
def memory_update(
    *,
    memory: Memory,
    operation_id: uuid.UUID | str | None = None,
    actor: Actor = SYSTEM,
    **fields: Any,
) -> Memory:
    """Change a memory's content, tags, metadata, links or expiry.

    A repeated `operation_id` changes nothing and sets `memory.replayed`.
    """
    unknown = set(fields) - set(MEMORY_UPDATABLE_FIELDS)
    if unknown:
        raise ValidationError(
            dict.fromkeys(sorted(unknown), "This field cannot be changed here.")
        )
    operation_id = parse_uuid(operation_id, field="id")
    stored = _locked(memory)
    stored.replayed = audit_operation_applied(
        project_id=stored.project_id,
        operation_id=operation_id,
        kinds=_WRITE_KINDS,
        subject=("memory", str(stored.uuid)),
    )
    if stored.replayed:
        return stored
    project = stored.project
    values: dict[str, Any] = {}
    if "content" in fields:
        values["content"] = _content(fields["content"])
    if "tags" in fields:
        values["tags"] = _tags(fields["tags"])
    if "metadata" in fields:
        values["metadata"] = json_object(fields["metadata"], field="metadata")
    if "task" in fields:
        values["task"] = resolve(
            Task, project=project, field="task", value=fields["task"]
        )
    if "conversation" in fields:
        values["conversation"] = resolve(
            Conversation,
            project=project,
            field="conversation",
            value=fields["conversation"],
        )
    if "expires_at" in fields:
        values["expires_at"] = _expires_at(fields["expires_at"])
    before = _snapshot(stored)
    candidate = Memory(
        **{
            f: getattr(stored, f)
            for f in (
                "agent_id",
                "namespace",
                "key",
                "content",
                "tags",
                "metadata",
                "task_id",
                "conversation_id",
                "expires_at",
            )
        }
    )
    for name, value in values.items():
        setattr(candidate, name, value)
    changes = _changes(before, _snapshot(candidate))
    if not changes and operation_id is None:
        return stored
    if changes:
        _apply(stored, {k: v for k, v in values.items() if k in changes})
    _record(
        stored,
        EventKind.MEMORY_UPDATED,
        AuditAction.MEMORY_UPDATED,
        actor,
        payload=_event_payload(stored, changes=sorted(changes)),
        event_id=operation_id,
        changes=changes,
    )
    return stored


@journaled()
def memory_delete(*, memory: Memory, actor: Actor = SYSTEM) -> None:
    """Delete a memory; the event `memory.deleted` names what it was."""
    stored = _locked(memory)
    payload = _event_payload(stored)
    stored.delete()
    stored.pk = memory.pk
    _record(
        stored,
        EventKind.MEMORY_DELETED,
        AuditAction.MEMORY_DELETED,
        actor,
        payload=payload,
    )
