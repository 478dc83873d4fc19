"""Export reads: which rows of which models, in which order, as JSON Lines.

An export file is one header line and then one record per row:
`{"model": "<app>.<model>", "fields": {...}}`. Keys are sorted, times are UTC
with six fractional digits, decimals are fixed-point strings, so exporting
what an import wrote gives the same bytes again.

References name rows by their public key: UUIDs for agents, tasks, runs,
conversations and messages, the slug for projects, `[app_label, model]` for
content types. Surrogate integer ids are left out, except the project's:
audit hashes cover `project_id`, so a project keeps its id everywhere.
API keys are not exported: a secret hash is a credential, and a restored
database should issue new keys (`create_api_key`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import IO, Any
from uuid import UUID

from django.contrib.contenttypes.models import ContentType
from django.db import connection, models, transaction
from django.db.models import QuerySet

from audit.models import AuditLog, Event, JournalHead
from conversations.models import (
    Conversation,
    Memory,
    Message,
    MessageRecipient,
    Participant,
)
from swarmsite.models import Project
from tasks.models import Agent, AgentHeartbeat, AgentRun, Task, TaskDependency, Workflow

FORMAT_NAME = "swarmsite-export"
FORMAT_VERSION = 1
HEADER = {"format": FORMAT_NAME, "version": FORMAT_VERSION}
CHUNK_SIZE = 2000

# Upsert: the file wins; append: insert-only, an existing row must be equal;
# insert: insert-only, an existing row with the same key is kept as it is;
# head: journal heads, moved forward so every sequence goes on after import.
UPSERT, APPEND, INSERT, HEAD = "upsert", "append", "insert", "head"


@dataclass(frozen=True)
class ModelSpec:
    """How one model is exported and imported."""

    model: type[models.Model]
    fields: tuple[str, ...]
    order: tuple[str, ...]
    key: tuple[str, ...]
    mode: str = UPSERT
    # Filtered by --since/--until; None: reference data, always whole.
    time_field: str | None = None

    @property
    def name(self) -> str:
        return self.model._meta.label_lower

    def model_fields(self) -> list[models.Field]:
        return [self.model._meta.get_field(name) for name in self.fields]


TaskAgents = Task.agents.through

# Parents before children; the import resolves references across the whole
# file, so self-references (agent parent, task parent, message reply_to)
# need no particular order among rows of one model.
SPECS: tuple[ModelSpec, ...] = (
    ModelSpec(
        Project,
        (
            "id",
            "slug",
            "name",
            "event_retention_days",
            "audit_retention_days",
            "created_at",
            "updated_at",
        ),
        order=("id",),
        key=("slug",),
    ),
    ModelSpec(
        Agent,
        (
            "id",
            "project",
            "name",
            "role",
            "model",
            "parent",
            "status",
            "capabilities",
            "config",
            "metadata",
            "last_heartbeat_at",
            # Roll-ups (tasks.services.rollups) travel with the rows.
            "tasks_completed",
            "tasks_failed",
            "runs_count",
            "messages_count",
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "cost",
            "latency_total_ms",
            "latency_count",
            "last_active_at",
            "created_at",
            "updated_at",
        ),
        order=("project_id", "created_at", "id"),
        key=("id",),
    ),
    ModelSpec(
        Workflow,
        (
            "id",
            "project",
            "name",
            "description",
            "metadata",
            "tasks_pending",
            "tasks_queued",
            "tasks_running",
            "tasks_waiting",
            "tasks_completed",
            "tasks_failed",
            "tasks_cancelled",
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "cost",
            "create_digest",
            "created_at",
            "updated_at",
        ),
        order=("project_id", "created_at", "id"),
        key=("id",),
    ),
    ModelSpec(
        AgentHeartbeat,
        ("project", "agent", "status", "details", "created_at"),
        order=("agent_id", "created_at", "id"),
        key=("agent", "created_at"),
        mode=INSERT,
        time_field="created_at",
    ),
    ModelSpec(
        Task,
        (
            "id",
            "project",
            "title",
            "description",
            "session_id",
            "workflow",
            "parent",
            "status",
            "priority",
            "progress",
            "assigned_agent",
            "input",
            "result",
            "result_summary",
            "error",
            "files_touched",
            "metadata",
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "cost",
            "version",
            "key",
            "attempts",
            "lease_expires_at",
            "create_digest",
            "started_at",
            "completed_at",
            "created_at",
            "updated_at",
        ),
        order=("project_id", "created_at", "id"),
        key=("id",),
        time_field="updated_at",
    ),
    ModelSpec(
        TaskAgents,
        ("task", "agent"),
        order=("task_id", "agent_id"),
        key=("task", "agent"),
        mode=INSERT,
        time_field="task__updated_at",
    ),
    ModelSpec(
        TaskDependency,
        ("task", "depends_on", "created_at"),
        order=("task_id", "depends_on_id"),
        key=("task", "depends_on"),
        time_field="created_at",
    ),
    ModelSpec(
        AgentRun,
        (
            "id",
            "project",
            "task",
            "agent",
            "status",
            "started_at",
            "ended_at",
            "output_summary",
            "model",
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "cost",
            "error",
            "metadata",
            "create_digest",
            "created_at",
            "updated_at",
        ),
        order=("project_id", "created_at", "id"),
        key=("id",),
        time_field="updated_at",
    ),
    ModelSpec(
        Conversation,
        (
            "id",
            "project",
            "task",
            "title",
            "status",
            "metadata",
            "message_count",
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "cost",
            "last_message_at",
            "create_digest",
            "created_at",
            "updated_at",
        ),
        order=("project_id", "created_at", "id"),
        key=("id",),
        time_field="updated_at",
    ),
    ModelSpec(
        Participant,
        (
            "conversation",
            "agent",
            "role",
            "joined_at",
            "left_at",
            "active",
            "message_count",
            "last_read_seq",
        ),
        order=("conversation_id", "agent_id"),
        key=("conversation", "agent"),
        time_field="joined_at",
    ),
    ModelSpec(
        Message,
        (
            "id",
            "project",
            "conversation",
            "seq",
            "role",
            "sender",
            "content",
            "tool_calls",
            "tool_call_id",
            "model",
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "cost",
            "latency_ms",
            "reply_to",
            "thread",
            "metadata",
            "revision",
            "revised_at",
            "create_digest",
            "created_at",
        ),
        order=("conversation_id", "seq"),
        key=("id",),
        time_field="created_at",
    ),
    ModelSpec(
        MessageRecipient,
        ("project", "message", "agent"),
        order=("message_id", "agent_id"),
        key=("message", "agent"),
        mode=INSERT,
        time_field="message__created_at",
    ),
    ModelSpec(
        Memory,
        (
            "uuid",
            "project",
            "agent",
            "namespace",
            "key",
            "content",
            "tags",
            "metadata",
            "task",
            "conversation",
            "expires_at",
            "version",
            "create_digest",
            "created_at",
            "updated_at",
        ),
        order=("project_id", "created_at", "id"),
        key=("uuid",),
        time_field="updated_at",
    ),
    ModelSpec(
        Event,
        (
            "uuid",
            "project",
            "position",
            "kind",
            "task_id",
            "conversation_id",
            "actor_type",
            "actor_id",
            "actor_label",
            "correlation_id",
            "payload",
            "occurred_at",
            "recorded_at",
        ),
        order=("project_id", "position"),
        key=("uuid",),
        mode=APPEND,
        time_field="occurred_at",
    ),
    ModelSpec(
        AuditLog,
        (
            "uuid",
            "project",
            "seq",
            "prev_hash",
            "hash",
            "actor_type",
            "actor_id",
            "actor_label",
            "action",
            "target",
            "content_type",
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
            "recorded_at",
        ),
        order=("project_id", "seq"),
        key=("uuid",),
        mode=APPEND,
        time_field="occurred_at",
    ),
    ModelSpec(
        JournalHead,
        (
            "project",
            "last_position",
            "audit_seq",
            "audit_hash",
            "audit_anchor_seq",
            "audit_anchor_hash",
        ),
        order=("project_id",),
        key=("project",),
        mode=HEAD,
    ),
)

SPECS_BY_NAME = {spec.name: spec for spec in SPECS}


def format_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _encoder(model_field: models.Field, refs: dict[str, dict]) -> Callable[[Any], Any]:
    """A function turning a database value of `model_field` into its JSON form."""
    if model_field.is_relation:
        target = model_field.related_model
        if target is Project:
            slugs = refs["project"]
            return lambda v: slugs[v]
        if target is ContentType:
            types = refs["content_type"]
            return lambda v: None if v is None else types[v]
        return lambda v: None if v is None else str(v)
    if isinstance(model_field, models.DateTimeField):
        return lambda v: None if v is None else format_datetime(v)
    if isinstance(model_field, models.DecimalField):
        exponent = Decimal(1).scaleb(-model_field.decimal_places)
        return lambda v: (
            None if v is None else format(Decimal(v).quantize(exponent), "f")
        )
    if isinstance(model_field, models.UUIDField):
        return lambda v: None if v is None else str(v)
    return lambda v: v


def _columns(spec: ModelSpec) -> list[str]:
    return [f.attname for f in spec.model_fields()]


def _references() -> dict[str, dict]:
    """Small lookup tables for references that are not exported as stored."""
    return {
        "project": dict(Project.objects.values_list("id", "slug")),
        "content_type": {
            ct.pk: [ct.app_label, ct.model] for ct in ContentType.objects.all()
        },
    }


def export_querysets(
    *,
    project: Project | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, QuerySet]:
    """The rows an export holds, per model name, unordered.

    `since`/`until` filter every model that has a time field by it; projects,
    agents, workflows and journal heads are reference data and go whole.
    """
    selected: dict[str, QuerySet] = {}
    for spec in SPECS:
        rows = spec.model._default_manager.all()
        if project is not None:
            if spec.model is Project:
                rows = rows.filter(pk=project.pk)
            elif spec.model in (TaskAgents, TaskDependency):
                rows = rows.filter(task__project=project)
            elif spec.model is Participant:
                rows = rows.filter(conversation__project=project)
            else:
                rows = rows.filter(project=project)
        if spec.time_field is not None:
            if since is not None:
                rows = rows.filter(**{f"{spec.time_field}__gte": since})
            if until is not None:
                rows = rows.filter(**{f"{spec.time_field}__lt": until})
        selected[spec.name] = rows
    return selected


def export_lines(
    querysets: dict[str, QuerySet], *, header: bool = True
) -> Iterator[str]:
    """The export file, line by line, streamed with server-side cursors."""
    if header:
        yield header_line()
    refs = _references()
    for spec in SPECS:
        rows = querysets.get(spec.name)
        if rows is None:
            continue
        encoders = [_encoder(f, refs) for f in spec.model_fields()]
        names = spec.fields
        prefix = '{"model":' + json.dumps(spec.name) + ',"fields":'
        values = rows.order_by(*spec.order).values_list(*_columns(spec))
        for row in values.iterator(chunk_size=CHUNK_SIZE):
            record = {n: enc(v) for n, enc, v in zip(names, encoders, row, strict=True)}
            yield prefix + _dumps(record) + "}\n"


@contextmanager
def export_snapshot() -> Iterator[None]:
    """One consistent view of the database for the whole export.

    PostgreSQL: a REPEATABLE READ, READ ONLY transaction. SQLite: a deferred
    read transaction, which in WAL mode sees one snapshot and blocks no
    writer (Django's own atomic() would take the write lock at BEGIN).
    Inside an outer transaction the export reads what that one sees.
    """
    if connection.in_atomic_block:
        yield
        return
    if connection.vendor == "postgresql":
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
                )
            yield
        return
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            cursor.execute("COMMIT")


def header_line() -> str:
    return _dumps(HEADER) + "\n"


def export_write(
    stream: IO[str], querysets: dict[str, QuerySet], *, header: bool = True
) -> dict[str, int]:
    """Write the export to `stream`; return the number of records per model."""
    counts: dict[str, int] = {}
    if header:
        stream.write(header_line())
    for line in export_lines(querysets, header=False):
        name = line[10 : line.index('"', 10)]
        counts[name] = counts.get(name, 0) + 1
        stream.write(line)
    return counts


def _dumps(value: Any) -> str:
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_json_default,
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
