"""API shapes of `GET /api/v1/stats/`: the query and the report."""

from __future__ import annotations

import re

from rest_framework import serializers

from swarmsite.filters import refuse_empty
from swarmsite.serializers import StrictInputSerializer, UTCDateTimeField

# An unencoded "+" in a query string arrives as a space: "...T10:00:00 02:00".
_SPACED_OFFSET = re.compile(r" (\d{2}(:?\d{2})?)$")


class QueryDateTimeField(UTCDateTimeField):
    """An ISO 8601 datetime; a naive one is taken as UTC."""

    def to_internal_value(self, value):
        if isinstance(value, str):
            value = _SPACED_OFFSET.sub(r"+\1", value.strip())
        return super().to_internal_value(value)


class StatsQuerySerializer(StrictInputSerializer):
    """`since` / `until`: the window; default the 24 hours up to now."""

    since = QueryDateTimeField(
        required=False,
        help_text="Start of the window, inclusive (ISO 8601). "
        "Default: 24 hours before `until`.",
    )
    until = QueryDateTimeField(
        required=False,
        help_text="End of the window, exclusive (ISO 8601). Default: now.",
    )

    @classmethod
    def from_query(cls, query_params) -> dict:
        """Validate a query string; unknown names are refused, not ignored.

        An empty value is refused too; DRF's `?format=` is left to DRF.
        """
        names = [name for name in query_params if name != "format"]
        refuse_empty(query_params, names)
        data = {name: query_params.get(name) for name in names}
        serializer = cls(data=data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


class WindowSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()


class TaskStatusCountsSerializer(serializers.Serializer):
    """One count per task status (all present, zeros included)."""

    pending = serializers.IntegerField()
    queued = serializers.IntegerField()
    running = serializers.IntegerField()
    waiting = serializers.IntegerField()
    completed = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()


class DurationStatsSerializer(serializers.Serializer):
    count = serializers.IntegerField(
        help_text="Completed tasks with a start and an end time."
    )
    avg = serializers.FloatField(allow_null=True)
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)


class TaskStatsSerializer(serializers.Serializer):
    total = serializers.IntegerField(help_text="Tasks created in the window.")
    by_status = TaskStatusCountsSerializer(help_text="Their current status.")
    finished = serializers.IntegerField(
        help_text="Of them: completed, failed or cancelled."
    )
    completion_rate = serializers.FloatField(
        allow_null=True,
        help_text="completed / finished; null when none has finished.",
    )
    duration_seconds = DurationStatsSerializer(
        help_text="started_at to completed_at of the completed ones: "
        "mean and continuous percentiles."
    )


def _cost(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=20, decimal_places=6, **kwargs)


def _usage_fields() -> dict[str, serializers.Field]:
    return {
        "messages": serializers.IntegerField(help_text="Messages in the window."),
        "runs": serializers.IntegerField(help_text="Agent runs created in the window."),
        "prompt_tokens": serializers.IntegerField(),
        "completion_tokens": serializers.IntegerField(),
        "cached_tokens": serializers.IntegerField(),
        "total_tokens": serializers.IntegerField(help_text="prompt + completion."),
        "cost": _cost(),
    }


class UsageSerializer(serializers.Serializer):
    def get_fields(self):
        return _usage_fields()


class AgentUsageSerializer(serializers.Serializer):
    agent = serializers.UUIDField(
        allow_null=True, help_text="null: messages without a sender agent."
    )
    name = serializers.CharField(allow_blank=True)

    def get_fields(self):
        fields = super().get_fields() | _usage_fields()
        fields["tasks"] = serializers.IntegerField(
            help_text="Tasks created in the window and assigned to the agent."
        )
        fields["tasks_completed"] = serializers.IntegerField()
        fields["tasks_failed"] = serializers.IntegerField()
        return fields


class ModelUsageSerializer(serializers.Serializer):
    model = serializers.CharField(
        allow_blank=True, help_text="Empty: usage reported without a model."
    )

    def get_fields(self):
        return super().get_fields() | _usage_fields()


class EndpointStatsSerializer(serializers.Serializer):
    method = serializers.CharField()
    endpoint = serializers.CharField()
    requests = serializers.IntegerField()
    errors = serializers.IntegerField(help_text="Answers with status 400 or above.")
    server_errors = serializers.IntegerField(help_text="Answers with status 5xx.")
    error_rate = serializers.FloatField(allow_null=True)
    avg_duration_ms = serializers.FloatField(allow_null=True)


class ApiStatsSerializer(serializers.Serializer):
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()
    server_errors = serializers.IntegerField()
    error_rate = serializers.FloatField(allow_null=True)
    by_endpoint = EndpointStatsSerializer(many=True)


class StatsSerializer(serializers.Serializer):
    """The report of one project over one window."""

    window = WindowSerializer()
    tasks = TaskStatsSerializer()
    usage = UsageSerializer(
        help_text="Messages and agent runs together, as the task roll-ups count."
    )
    by_agent = AgentUsageSerializer(
        many=True, help_text="Biggest cost first; at most STATS_MAX_GROUPS."
    )
    by_model = ModelUsageSerializer(
        many=True, help_text="Biggest cost first; at most STATS_MAX_GROUPS."
    )
    api = ApiStatsSerializer(
        help_text="API requests recorded in the audit log (`api.request`)."
    )
