"""API shapes of batch ingest: the envelope, each item's data, the results.

Each item's `data` is checked with the input serializer of the single
endpoint of its type (plus the parent id where the path carried it), so an
item is accepted exactly when the single endpoint would accept it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import cache
from typing import Any

from rest_framework import serializers

from audit.serializers import EventCreateInputSerializer
from conversations.models import MessageRole
from conversations.serializers import (
    MemoryInputSerializer,
    ParticipantJoinInputSerializer,
)
from ingest.services import Item, ItemResult
from swarmsite.errors import ValidationError
from swarmsite.exceptions import flatten_detail
from swarmsite.serializers import (
    JSONValueField,
    StrictBooleanField,
    StrictCharField,
    StrictFloatField,
    StrictInputSerializer,
    StrictIntegerField,
    StrictUUIDField,
)
from swarmsite.validation import to_utc
from tasks.serializers import (
    INT32_MAX,
    AgentCreateInputSerializer,
    AgentHeartbeatInputSerializer,
    AgentUpdateInputSerializer,
    RunCreateInputSerializer,
    RunUpdateInputSerializer,
    TaskCreateInputSerializer,
    TaskDependenciesInputSerializer,
    TaskProgressInputSerializer,
    TaskTransitionInputSerializer,
    TaskUpdateInputSerializer,
    WorkflowCreateInputSerializer,
    _cost,
    _id,
    _ids,
)

ITEM_TYPES = (
    "agent",
    "agent_update",
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
    "message_sender_fill",
    "run",
    "run_update",
    "run_metadata_fill",
    "event",
    "audit",
    "memory",
)


class AgentUpdateItemSerializer(AgentUpdateInputSerializer):
    agent = StrictUUIDField()


class HeartbeatItemSerializer(AgentHeartbeatInputSerializer):
    agent = StrictUUIDField()


class TaskUpdateItemSerializer(TaskUpdateInputSerializer):
    task = StrictUUIDField()


class TransitionItemSerializer(TaskTransitionInputSerializer):
    task = StrictUUIDField()


class ProgressItemSerializer(TaskProgressInputSerializer):
    task = StrictUUIDField()


class DependencyItemSerializer(TaskDependenciesInputSerializer):
    task = StrictUUIDField()


class RunUpdateItemSerializer(RunUpdateInputSerializer):
    run = StrictUUIDField()


class ConversationItemSerializer(StrictInputSerializer):
    read_only_names = ("status", "message_count", "created_at", "updated_at")

    id = StrictUUIDField(required=False)
    task = _id()
    title = StrictCharField(max_length=500, required=False, allow_blank=True)
    participants = _ids(required=False)
    metadata = JSONValueField(kind=dict, required=False)


def _small_count() -> StrictIntegerField:
    return StrictIntegerField(required=False, min_value=0, max_value=INT32_MAX)


class MessageItemSerializer(StrictInputSerializer):
    read_only_names = ("seq", "project", "created_at")

    conversation = StrictUUIDField()
    id = StrictUUIDField(required=False)
    role = serializers.ChoiceField(choices=MessageRole.choices)
    content = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)
    sender = _id()
    recipients = _ids(required=False)
    tool_calls = JSONValueField(kind=list, required=False, allow_null=True)
    tool_call_id = StrictCharField(max_length=200, required=False, allow_blank=True)
    model = StrictCharField(max_length=200, required=False, allow_blank=True)
    prompt_tokens = _small_count()
    completion_tokens = _small_count()
    cached_tokens = _small_count()
    cost = _cost()
    latency_ms = StrictFloatField(required=False, allow_null=True, min_value=0)
    reply_to = _id()
    metadata = JSONValueField(kind=dict, required=False)


class MessageSenderFillItemSerializer(StrictInputSerializer):
    """The sender of a message stored without one (never replaced)."""

    message = StrictUUIDField()
    sender = StrictUUIDField()


class RunMetadataFillItemSerializer(StrictInputSerializer):
    """Keys a run's metadata lacks (a stored value is never replaced)."""

    run = StrictUUIDField()
    metadata = JSONValueField(kind=dict)


class ParticipantItemSerializer(ParticipantJoinInputSerializer):
    conversation = StrictUUIDField()


class AuditItemSerializer(StrictInputSerializer):
    read_only_names = ("seq", "hash", "prev_hash", "actor", "recorded_at")

    id = StrictUUIDField(required=False)
    action = StrictCharField(max_length=100)
    target = StrictCharField(max_length=500, required=False, allow_blank=True)
    success = StrictBooleanField(required=False, default=True)
    duration_ms = StrictFloatField(required=False, allow_null=True, min_value=0)
    error = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)
    details = JSONValueField(kind=dict, required=False)


# Item type -> (serializer of its data, renames from API names to service
# argument names).
ITEM_SERIALIZERS: dict[str, tuple[type[serializers.Serializer], dict[str, str]]] = {
    "agent": (AgentCreateInputSerializer, {"id": "agent_id"}),
    "agent_update": (AgentUpdateItemSerializer, {}),
    "heartbeat": (HeartbeatItemSerializer, {"id": "operation_id"}),
    "workflow": (WorkflowCreateInputSerializer, {"id": "workflow_id"}),
    "task": (TaskCreateInputSerializer, {"id": "task_id"}),
    "task_update": (TaskUpdateItemSerializer, {"id": "operation_id"}),
    "transition": (TransitionItemSerializer, {"id": "operation_id"}),
    "progress": (ProgressItemSerializer, {"id": "operation_id"}),
    "dependency": (DependencyItemSerializer, {}),
    "conversation": (ConversationItemSerializer, {"id": "conversation_id"}),
    "participant": (ParticipantItemSerializer, {}),
    "message": (MessageItemSerializer, {}),
    "message_sender_fill": (MessageSenderFillItemSerializer, {}),
    "run": (RunCreateInputSerializer, {"id": "run_id"}),
    "run_update": (RunUpdateItemSerializer, {"id": "operation_id"}),
    "run_metadata_fill": (RunMetadataFillItemSerializer, {}),
    "event": (
        EventCreateInputSerializer,
        {"id": "event_id", "task": "task_id", "conversation": "conversation_id"},
    ),
    "audit": (AuditItemSerializer, {"id": "entry_id"}),
    "memory": (MemoryInputSerializer, {"id": "memory_id"}),
}


def _supplied_id(data: Any) -> str | None:
    if isinstance(data, Mapping) and isinstance(data.get("id"), str):
        return data["id"][:64]
    return None


def _item(index: int, item_type: str, values: dict[str, Any], data: Any) -> Item:
    """An item of the batch: its typed values under the service's names."""
    renames = ITEM_SERIALIZERS[item_type][1]
    return Item(
        index=index,
        type=item_type,
        data={renames.get(k, k): v for k, v in values.items()},
        supplied_id=_supplied_id(data),
    )


def validate_items(raw: list[Any]) -> tuple[list[Item], list[ItemResult]]:
    """Check every item of `raw`: the valid ones, and an error result per other.

    One serializer instance per type validates all items of that type, so
    its fields are built once per batch, not once per item.
    """
    checkers = {name: cls() for name, (cls, _) in ITEM_SERIALIZERS.items()}
    valid: list[Item] = []
    rejected: list[ItemResult] = []
    for index, entry in enumerate(raw):
        data = entry.get("data") if isinstance(entry, Mapping) else None
        try:
            item_type, data = _envelope(entry)
            try:
                values = checkers[item_type].run_validation(data)
            except serializers.ValidationError as exc:
                raise ValidationError(flatten_detail(exc.detail, "data")) from exc
        except ValidationError as exc:
            rejected.append(ItemResult(index, _supplied_id(data), "error", exc))
            continue
        valid.append(_item(index, item_type, values, data))
    return valid, rejected


def _utc(value: Any) -> Any:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return to_utc(value, field="value")


@cache
def _typers(item_type: str) -> tuple[dict[str, Callable[[Any], Any]], dict[str, Any]]:
    """What the serializer of `item_type` turns well-formed values into.

    Per field: UUID strings into UUIDs, ISO strings into UTC datetimes,
    amounts into Decimals, trimmed text; and the defaults it fills in.
    """
    typers: dict[str, Callable[[Any], Any]] = {}
    defaults: dict[str, Any] = {}
    for name, f in ITEM_SERIALIZERS[item_type][0]().fields.items():
        if f.read_only:
            continue
        if isinstance(f, serializers.UUIDField):
            typers[name] = lambda v: v if isinstance(v, uuid.UUID) else uuid.UUID(v)
        elif isinstance(f, serializers.DateTimeField):
            typers[name] = _utc
        elif isinstance(f, serializers.DecimalField):
            typers[name] = f.to_internal_value
        elif isinstance(f, serializers.CharField) and f.trim_whitespace:
            typers[name] = str.strip
        if f.default is not serializers.empty:
            defaults[name] = f.get_default()
    return typers, defaults


def _typed(item_type: str, data: dict[str, Any]) -> dict[str, Any]:
    typers, defaults = _typers(item_type)
    values = dict(defaults)
    for k, v in data.items():
        try:
            values[k] = typers[k](v) if k in typers and v is not None else v
        except serializers.ValidationError as exc:
            raise ValidationError(flatten_detail({k: exc.detail}, "data")) from exc
        except ValueError as exc:
            raise ValidationError({f"data.{k}": f"Not a valid value: {exc}"}) from exc
    return values


def typed_items(raw: list[dict[str, Any]]) -> tuple[list[Item], list[ItemResult]]:
    """Items the OTLP mapping built, typed as `validate_items` would type them.

    The mapping builds well-formed items by construction (known types and
    fields, ids it derived, times it formatted, text it shortened), so their
    API parsing is skipped: ids, times and amounts are converted and the
    names renamed. Every value is still checked by the service that writes
    it, like any other caller's. A value that cannot be typed (a mapping
    bug) is that item's error, as in `validate_items`, not the batch's.
    tests/ingest/otlp checks that this gives what `validate_items` gives
    for what the mapping builds.
    """
    items: list[Item] = []
    rejected: list[ItemResult] = []
    for index, entry in enumerate(raw):
        item_type, data = entry["type"], entry["data"]
        try:
            values = _typed(item_type, data)
        except ValidationError as exc:
            rejected.append(ItemResult(index, _supplied_id(data), "error", exc))
            continue
        items.append(_item(index, item_type, values, data))
    return items, rejected


def _envelope(entry: Any) -> tuple[str, Any]:
    if not isinstance(entry, Mapping):
        raise ValidationError(
            {"non_field_errors": 'Each item must be {"type": ..., "data": {...}}.'}
        )
    extra = sorted(set(entry) - {"type", "data"})
    if extra:
        raise ValidationError(dict.fromkeys(extra, "This field is not accepted here."))
    item_type = entry.get("type")
    if not isinstance(item_type, str) or item_type not in ITEM_SERIALIZERS:
        raise ValidationError({"type": f"Choose from {', '.join(ITEM_TYPES)}."})
    data = entry.get("data")
    if not isinstance(data, Mapping):
        raise ValidationError({"data": "Must be a JSON object."})
    return item_type, data


# Schema of the endpoint ----------------------------------------------------


class IngestItemSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=ITEM_TYPES)
    data = serializers.DictField(
        help_text="The fields of the single endpoint of this type, with the "
        "parent id inside (`conversation` for a message; `task` for a "
        "transition, progress or task_update; `run` for a run_update or "
        "run_metadata_fill; `agent` for a heartbeat or agent_update; "
        "`message` and `sender` for a message_sender_fill). Updates take `id` "
        "as their operation id."
    )


class IngestInputSerializer(serializers.Serializer):
    items = IngestItemSerializer(many=True, allow_empty=False, max_length=5000)


class ItemErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False
    )


class IngestResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    id = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=["created", "duplicate", "error"])
    error = ItemErrorSerializer(required=False)


class IngestOutputSerializer(serializers.Serializer):
    results = IngestResultSerializer(many=True)
