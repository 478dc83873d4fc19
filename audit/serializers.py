"""API shapes of the event log."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from audit.models import AuditLog, Event
from swarmsite.filters import refuse_empty
from swarmsite.serializers import (
    JSONValueField,
    StrictBooleanField,
    StrictCharField,
    StrictFloatField,
    StrictInputSerializer,
    StrictModelSerializer,
    StrictUUIDField,
    UTCDateTimeField,
)

MAX_FILTER_VALUES = 100


def actor_of(row: Event | AuditLog) -> dict[str, str]:
    """The `actor` object of an event or audit record."""
    return {"type": row.actor_type, "id": row.actor_id, "label": row.actor_label}


class ActorSerializer(serializers.Serializer):
    """Who did it: a snapshot, since agents and keys may be deleted later."""

    type = serializers.CharField()
    id = serializers.CharField()
    label = serializers.CharField()


class EventSerializer(StrictModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    task = serializers.UUIDField(source="task_id", read_only=True, allow_null=True)
    conversation = serializers.UUIDField(
        source="conversation_id", read_only=True, allow_null=True
    )
    actor = serializers.SerializerMethodField()

    class Meta:
        model = Event
        fields = [
            "id",
            "position",
            "kind",
            "task",
            "conversation",
            "actor",
            "correlation_id",
            "payload",
            "occurred_at",
            "recorded_at",
        ]
        read_only_fields = fields

    @extend_schema_field(ActorSerializer)
    def get_actor(self, event: Event) -> dict[str, str]:
        return actor_of(event)


class EventFilterSerializer(serializers.Serializer):
    """`task`, `conversation` and `kind` are repeatable (or comma-separated)."""

    task = serializers.ListField(
        child=StrictUUIDField(), required=False, max_length=MAX_FILTER_VALUES
    )
    conversation = serializers.ListField(
        child=StrictUUIDField(), required=False, max_length=MAX_FILTER_VALUES
    )
    kind = serializers.ListField(
        child=StrictCharField(max_length=100),
        required=False,
        max_length=MAX_FILTER_VALUES,
    )

    @classmethod
    def from_query(cls, query_params) -> dict:
        names = ("task", "conversation", "kind")
        refuse_empty(query_params, names)
        data = {
            name: [v for raw in query_params.getlist(name) for v in raw.split(",") if v]
            for name in names
            if name in query_params
        }
        serializer = cls(data=data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


class EventCreateInputSerializer(StrictInputSerializer):
    read_only_names = ("position", "actor", "recorded_at", "correlation_id")

    id = StrictUUIDField(required=False)
    kind = StrictCharField(max_length=100)
    task = StrictUUIDField(required=False, allow_null=True)
    conversation = StrictUUIDField(required=False, allow_null=True)
    payload = JSONValueField(kind=dict, required=False)
    occurred_at = UTCDateTimeField(required=False)


class EventPageSerializer(serializers.Serializer):
    """One page of a position-ordered event list."""

    results = EventSerializer(many=True)
    next_after = serializers.IntegerField(
        help_text="Pass back as `after` to read on; `after` when nothing came."
    )
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)


class AuditLogSerializer(StrictModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    actor = serializers.SerializerMethodField()

    class Meta:
        model = AuditLog
        fields = [
            "id",
            "seq",
            "action",
            "target",
            "actor",
            "success",
            "duration_ms",
            "error",
            "details",
            "request_id",
            "method",
            "path",
            "status_code",
            "ip",
            "user_agent",
            "object_id",
            "object_repr",
            "changes",
            "occurred_at",
            "recorded_at",
            "hash",
        ]
        read_only_fields = fields

    @extend_schema_field(ActorSerializer)
    def get_actor(self, entry: AuditLog) -> dict[str, str]:
        return actor_of(entry)


class AuditLogCreateInputSerializer(StrictInputSerializer):
    read_only_names = (
        "seq",
        "actor",
        "request_id",
        "method",
        "path",
        "status_code",
        "ip",
        "user_agent",
        "object_id",
        "object_repr",
        "changes",
        "recorded_at",
        "hash",
    )

    id = StrictUUIDField(required=False)
    action = StrictCharField(max_length=100)
    target = StrictCharField(max_length=500, required=False, allow_blank=True)
    success = StrictBooleanField(required=False, default=True)
    duration_ms = StrictFloatField(
        required=False, allow_null=True, min_value=0, max_value=1e12
    )
    error = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)
    details = JSONValueField(kind=dict, required=False)
    occurred_at = UTCDateTimeField(required=False)
