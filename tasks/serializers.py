"""API shapes of agents, tasks and runs: explicit input and output fields."""

from __future__ import annotations

from rest_framework import serializers

from swarmsite.serializers import (
    DecimalAmountField,
    JSONValueField,
    StrictCharField,
    StrictInputSerializer,
    StrictIntegerField,
    StrictModelSerializer,
    StrictUUIDField,
    UTCDateTimeField,
)
from tasks.models import (
    Agent,
    AgentHeartbeat,
    AgentRun,
    AgentStatus,
    RunStatus,
    Task,
    TaskStatus,
    Workflow,
    WorkflowStatus,
)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MAX = 2**63 - 1
MAX_IDS = 1000


def _ids(**kwargs) -> serializers.ListField:
    return serializers.ListField(child=StrictUUIDField(), max_length=MAX_IDS, **kwargs)


def _id(**kwargs) -> StrictUUIDField:
    return StrictUUIDField(required=False, allow_null=True, **kwargs)


# Agents -------------------------------------------------------------------


AGENT_ROLLUPS = (
    "tasks_completed",
    "tasks_failed",
    "runs",
    "messages_sent",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost",
    "avg_latency_ms",
    "last_active_at",
)


class AgentSerializer(StrictModelSerializer):
    """An agent with its stored roll-ups (never summed on read)."""

    runs = serializers.IntegerField(source="runs_count", read_only=True)
    messages_sent = serializers.IntegerField(source="messages_count", read_only=True)
    avg_latency_ms = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = Agent
        fields = [
            "id",
            "name",
            "role",
            "model",
            "parent",
            "status",
            "capabilities",
            "config",
            "metadata",
            "last_heartbeat_at",
            *AGENT_ROLLUPS,
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class AgentHeartbeatSerializer(StrictModelSerializer):
    class Meta:
        model = AgentHeartbeat
        fields = ["id", "agent", "status", "details", "created_at"]
        read_only_fields = fields


AGENT_READ_ONLY = (
    "last_heartbeat_at",
    "created_at",
    "updated_at",
    "project",
    *AGENT_ROLLUPS,
)


class AgentCreateInputSerializer(StrictInputSerializer):
    read_only_names = (*AGENT_READ_ONLY, "status")

    id = StrictUUIDField(required=False)
    name = StrictCharField(max_length=200)
    role = StrictCharField(max_length=100, required=False, allow_blank=True)
    model = StrictCharField(max_length=200, required=False, allow_blank=True)
    parent = _id()
    capabilities = JSONValueField(kind=list, required=False)
    config = JSONValueField(kind=dict, required=False)
    metadata = JSONValueField(kind=dict, required=False)


class AgentUpdateInputSerializer(StrictInputSerializer):
    read_only_names = (*AGENT_READ_ONLY, "id")

    name = StrictCharField(max_length=200, required=False)
    role = StrictCharField(max_length=100, required=False, allow_blank=True)
    model = StrictCharField(max_length=200, required=False, allow_blank=True)
    parent = _id()
    status = serializers.ChoiceField(choices=AgentStatus.choices, required=False)
    capabilities = JSONValueField(kind=list, required=False)
    config = JSONValueField(kind=dict, required=False)
    metadata = JSONValueField(kind=dict, required=False)


def _operation_id() -> StrictUUIDField:
    return StrictUUIDField(
        required=False,
        help_text="Operation id: a repeated id answers 200 and changes nothing.",
    )


class AgentHeartbeatInputSerializer(StrictInputSerializer):
    id = _operation_id()
    status = serializers.ChoiceField(choices=AgentStatus.choices, required=False)
    details = JSONValueField(kind=dict, required=False)


# Tasks --------------------------------------------------------------------

TASK_LIST_FIELDS = [
    "id",
    "key",
    "title",
    "session_id",
    "workflow",
    "parent",
    "status",
    "priority",
    "progress",
    "assigned_agent",
    "agents",
    "result_summary",
    "error",
    "files_touched",
    "metadata",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost",
    "version",
    "attempts",
    "lease_expires_at",
    "blocked",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
]
# Left out of lists unless ?fields=full: large, and deferred by the selector.
TASK_BIG_FIELDS = ["description", "input", "result", "depends_on"]

TASK_READ_ONLY = (
    "status",
    "attempts",
    "lease_expires_at",
    "blocked",
    "version",
    "progress",
    "result",
    "result_summary",
    "error",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "project",
)


class TaskListSerializer(StrictModelSerializer):
    agents = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    blocked = serializers.BooleanField(
        read_only=True,
        help_text="Some task it depends on is not completed.",
    )

    class Meta:
        model = Task
        fields = TASK_LIST_FIELDS
        read_only_fields = fields


class TaskSerializer(TaskListSerializer):
    depends_on = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta(TaskListSerializer.Meta):
        fields = [*TASK_LIST_FIELDS, *TASK_BIG_FIELDS]
        read_only_fields = fields


class TaskCreateInputSerializer(StrictInputSerializer):
    read_only_names = TASK_READ_ONLY

    id = StrictUUIDField(required=False)
    key = StrictCharField(
        max_length=200,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="The client's name for the task, unique in the project: "
        "creating again with a key behaves as with an id.",
    )
    title = StrictCharField(max_length=500)
    description = StrictCharField(
        required=False, allow_blank=True, trim_whitespace=False
    )
    session_id = StrictCharField(max_length=200, required=False, allow_blank=True)
    workflow = _id()
    parent = _id()
    priority = StrictIntegerField(
        required=False, min_value=INT32_MIN, max_value=INT32_MAX
    )
    assigned_agent = _id()
    agents = _ids(required=False)
    depends_on = _ids(required=False)
    input = JSONValueField(required=False, allow_null=True)
    metadata = JSONValueField(kind=dict, required=False)
    files_touched = JSONValueField(kind=list, required=False)


class TaskUpdateInputSerializer(StrictInputSerializer):
    read_only_names = (*TASK_READ_ONLY, "parent", "depends_on", "key")

    id = _operation_id()

    title = StrictCharField(max_length=500, required=False)
    description = StrictCharField(
        required=False, allow_blank=True, trim_whitespace=False
    )
    session_id = StrictCharField(max_length=200, required=False, allow_blank=True)
    workflow = _id()
    priority = StrictIntegerField(
        required=False, min_value=INT32_MIN, max_value=INT32_MAX
    )
    assigned_agent = _id()
    agents = _ids(required=False)
    input = JSONValueField(required=False, allow_null=True)
    metadata = JSONValueField(kind=dict, required=False)
    files_touched = JSONValueField(kind=list, required=False)
    expected_version = StrictIntegerField(
        required=False, min_value=1, max_value=INT32_MAX
    )


class TaskTransitionInputSerializer(StrictInputSerializer):
    id = _operation_id()
    status = serializers.ChoiceField(choices=TaskStatus.choices)
    expected_version = StrictIntegerField(
        required=False, min_value=1, max_value=INT32_MAX
    )
    result = JSONValueField(required=False, allow_null=True)
    result_summary = StrictCharField(
        required=False, allow_blank=True, trim_whitespace=False
    )
    error = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)


class TaskProgressInputSerializer(StrictInputSerializer):
    id = _operation_id()
    progress = StrictIntegerField(min_value=0, max_value=100)


class TaskRetryInputSerializer(StrictInputSerializer):
    id = _operation_id()
    expected_version = StrictIntegerField(
        required=False, min_value=1, max_value=INT32_MAX
    )


LEASE_MAX_SECONDS = 86_400


def _lease_seconds() -> StrictIntegerField:
    return StrictIntegerField(
        required=False,
        min_value=1,
        max_value=LEASE_MAX_SECONDS,
        help_text="Seconds the lease lasts from now (default 300).",
    )


class TaskClaimInputSerializer(StrictInputSerializer):
    id = StrictUUIDField(
        required=False,
        help_text="Operation id: a retried claim with this id answers the task "
        "it claimed and claims nothing more.",
    )
    agent = StrictUUIDField(help_text="The claiming agent.")
    workflow = _id(help_text="Claim only from this workflow.")
    session_id = StrictCharField(max_length=200, required=False)
    lease_seconds = _lease_seconds()


class TaskHeartbeatInputSerializer(StrictInputSerializer):
    id = _operation_id()
    lease_seconds = _lease_seconds()
    agent = _id(help_text="When given, refused unless the task is still its.")


class TaskDependenciesInputSerializer(StrictInputSerializer):
    depends_on = _ids(min_length=1)


# Workflows ----------------------------------------------------------------


class WorkflowSerializer(StrictModelSerializer):
    """A workflow with its stored roll-ups and derived status."""

    status = serializers.ChoiceField(
        choices=WorkflowStatus.choices,
        read_only=True,
        help_text="open while any task is unfinished (or none exists); once all "
        "are finished: failed if any failed, else cancelled if any was "
        "cancelled, else completed.",
    )
    task_counts = serializers.SerializerMethodField()
    tasks_total = serializers.IntegerField(read_only=True)

    class Meta:
        model = Workflow
        fields = [
            "id",
            "name",
            "description",
            "metadata",
            "status",
            "task_counts",
            "tasks_total",
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "cost",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_task_counts(self, obj: Workflow) -> dict[str, int]:
        return obj.status_counts()


WORKFLOW_READ_ONLY = (
    "status",
    "task_counts",
    "tasks_total",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost",
    "created_at",
    "updated_at",
    "project",
)


class WorkflowCreateInputSerializer(StrictInputSerializer):
    read_only_names = WORKFLOW_READ_ONLY

    id = StrictUUIDField(required=False)
    name = StrictCharField(max_length=200)
    description = StrictCharField(
        required=False, allow_blank=True, trim_whitespace=False
    )
    metadata = JSONValueField(kind=dict, required=False)


class WorkflowUpdateInputSerializer(StrictInputSerializer):
    read_only_names = WORKFLOW_READ_ONLY

    id = _operation_id()
    name = StrictCharField(max_length=200, required=False)
    description = StrictCharField(
        required=False, allow_blank=True, trim_whitespace=False
    )
    metadata = JSONValueField(kind=dict, required=False)


class WorkflowCancelInputSerializer(StrictInputSerializer):
    id = _operation_id()


# Runs ---------------------------------------------------------------------


class RunSerializer(StrictModelSerializer):
    class Meta:
        model = AgentRun
        fields = [
            "id",
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
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


RUN_READ_ONLY = ("ended_at", "created_at", "updated_at", "project")


def _count() -> StrictIntegerField:
    return StrictIntegerField(required=False, min_value=0, max_value=INT64_MAX)


def _cost() -> serializers.DecimalField:
    return DecimalAmountField(max_digits=16, decimal_places=6, required=False)


class RunCreateInputSerializer(StrictInputSerializer):
    read_only_names = RUN_READ_ONLY

    id = StrictUUIDField(required=False)
    task = StrictUUIDField()
    agent = _id()
    status = serializers.ChoiceField(choices=RunStatus.choices, required=False)
    output_summary = StrictCharField(
        required=False, allow_blank=True, trim_whitespace=False
    )
    model = StrictCharField(max_length=200, required=False, allow_blank=True)
    prompt_tokens = _count()
    completion_tokens = _count()
    cached_tokens = _count()
    cost = _cost()
    error = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)
    metadata = JSONValueField(kind=dict, required=False)
    started_at = UTCDateTimeField(required=False)


class RunUpdateInputSerializer(StrictInputSerializer):
    read_only_names = (*RUN_READ_ONLY, "task", "agent", "started_at")

    id = _operation_id()

    status = serializers.ChoiceField(choices=RunStatus.choices, required=False)
    output_summary = StrictCharField(
        required=False, allow_blank=True, trim_whitespace=False
    )
    model = StrictCharField(max_length=200, required=False, allow_blank=True)
    prompt_tokens = _count()
    completion_tokens = _count()
    cached_tokens = _count()
    cost = _cost()
    error = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)
    metadata = JSONValueField(kind=dict, required=False)
