"""API shapes of the event log."""

from __future__ import annotations

from rest_framework import serializers

from audit.models import Event
from swarmsite.api import JSONValueField, StrictInputSerializer

MAX_FILTER_VALUES = 100


class EventSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    task = serializers.UUIDField(source="task_id", read_only=True)
    conversation = serializers.UUIDField(source="conversation_id", read_only=True)
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

    def get_actor(self, event: Event) -> dict[str, str]:
        return {
            "type": event.actor_type,
            "id": event.actor_id,
            "label": event.actor_label,
        }


class EventFilterSerializer(serializers.Serializer):
    """`task`, `conversation` and `kind` are repeatable (or comma-separated)."""

    task = serializers.ListField(
        child=serializers.UUIDField(), required=False, max_length=MAX_FILTER_VALUES
    )
    conversation = serializers.ListField(
        child=serializers.UUIDField(), required=False, max_length=MAX_FILTER_VALUES
    )
    kind = serializers.ListField(
        child=serializers.CharField(max_length=100),
        required=False,
        max_length=MAX_FILTER_VALUES,
    )

    @classmethod
    def from_query(cls, query_params) -> dict:
        data = {
            name: [v for raw in query_params.getlist(name) for v in raw.split(",") if v]
            for name in ("task", "conversation", "kind")
            if name in query_params
        }
        serializer = cls(data=data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


class EventCreateInputSerializer(StrictInputSerializer):
    read_only_names = ("position", "actor", "recorded_at", "correlation_id")

    id = serializers.UUIDField(required=False)
    kind = serializers.CharField(max_length=100)
    task = serializers.UUIDField(required=False, allow_null=True)
    conversation = serializers.UUIDField(required=False, allow_null=True)
    payload = JSONValueField(kind=dict, required=False)
    occurred_at = serializers.DateTimeField(required=False)
