"""API shapes of agents, tasks and runs: explicit input and output fields."""

from __future__ import annotations

from rest_framework import serializers

from swarmsite.serializers import (
    JSONValueField,
    StrictInputSerializer,
    UTCDateTimeField,
)
from tasks.models import Agent, AgentRun, AgentStatus, RunStatus, Task, TaskStatus

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MAX = 2**63 - 1
MAX_IDS = 1000


def _ids(**kwargs) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.UUIDField(), max_length=MAX_IDS, **kwargs
    )


def _id(**kwargs) -> serializers.UUIDField:
    return serializers.UUIDField(required=False, allow_null=True, **kwargs)


# Agents -------------------------------------------------------------------


class AgentSerializer(serializers.ModelSerializer):
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
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


AGENT_READ_ONLY = ("last_heartbeat_at", "created_at", "updated_at", "project")


class AgentCreateInputSerializer(StrictInputSerializer):
    read_only_names = (*AGENT_READ_ONLY, "status")

    id = serializers.UUIDField(required=False)
    name = serializers.CharField(max_length=200)
    role = serializers.CharField(max_length=100, required=False, allow_blank=True)
    model = serializers.CharField(max_length=200, required=False, allow_blank=True)
    parent = _id()
    capabilities = JSONValueField(kind=list, required=False)
    config = JSONValueField(kind=dict, required=False)
    metadata = JSONValueField(kind=dict, required=False)


class AgentUpdateInputSerializer(StrictInputSerializer):
    read_only_names = (*AGENT_READ_ONLY, "id")

    name = serializers.CharField(max_length=200, required=False)
    role = serializers.CharField(max_length=100, required=False, allow_blank=True)
    model = serializers.CharField(max_length=200, required=False, allow_blank=True)
    parent = _id()
    status = serializers.ChoiceField(choices=AgentStatus.choices, required=False)
    capabilities = JSONValueField(kind=list, required=False)
    config = JSONValueField(kind=dict, required=False)
    metadata = JSONValueField(kind=dict, required=False)


def _operation_id() -> serializers.UUIDField:
    return serializers.UUIDField(
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
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
]
# Left out of lists unless ?fields=full: large, and deferred by the selector.
TASK_BIG_FIELDS = ["description", "input", "result", "depends_on"]

TASK_READ_ONLY = (
    "status",
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


class TaskListSerializer(serializers.ModelSerializer):
    agents = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

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

    id = serializers.UUIDField(required=False)
    title = serializers.CharField(max_length=500)
    description = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False
    )
    session_id = serializers.CharField(max_length=200, required=False, allow_blank=True)
    workflow = _id()
    parent = _id()
    priority = serializers.IntegerField(
        required=False, min_value=INT32_MIN, max_value=INT32_MAX
    )
    assigned_agent = _id()
    agents = _ids(required=False)
    depends_on = _ids(required=False)
    input = JSONValueField(required=False, allow_null=True)
    metadata = JSONValueField(kind=dict, required=False)
    files_touched = JSONValueField(kind=list, required=False)


class TaskUpdateInputSerializer(StrictInputSerializer):
    read_only_names = (*TASK_READ_ONLY, "parent", "depends_on")

    id = _operation_id()

    title = serializers.CharField(max_length=500, required=False)
    description = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False
    )
    session_id = serializers.CharField(max_length=200, required=False, allow_blank=True)
    workflow = _id()
    priority = serializers.IntegerField(
        required=False, min_value=INT32_MIN, max_value=INT32_MAX
    )
    assigned_agent = _id()
    agents = _ids(required=False)
    input = JSONValueField(required=False, allow_null=True)
    metadata = JSONValueField(kind=dict, required=False)
    files_touched = JSONValueField(kind=list, required=False)
    expected_version = serializers.IntegerField(
        required=False, min_value=1, max_value=INT32_MAX
    )


class TaskTransitionInputSerializer(StrictInputSerializer):
    id = _operation_id()
    status = serializers.ChoiceField(choices=TaskStatus.choices)
    expected_version = serializers.IntegerField(
        required=False, min_value=1, max_value=INT32_MAX
    )
    result = JSONValueField(required=False, allow_null=True)
    result_summary = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False
    )
    error = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False
    )


class TaskProgressInputSerializer(StrictInputSerializer):
    id = _operation_id()
    progress = serializers.IntegerField(min_value=0, max_value=100)


class TaskRetryInputSerializer(StrictInputSerializer):
    id = _operation_id()
    expected_version = serializers.IntegerField(
        required=False, min_value=1, max_value=INT32_MAX
    )


# Runs ---------------------------------------------------------------------


class RunSerializer(serializers.ModelSerializer):
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


def _count() -> serializers.IntegerField:
    return serializers.IntegerField(required=False, min_value=0, max_value=INT64_MAX)


def _cost() -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=16, decimal_places=6, min_value=0, required=False
    )


class RunCreateInputSerializer(StrictInputSerializer):
    read_only_names = RUN_READ_ONLY

    id = serializers.UUIDField(required=False)
    task = serializers.UUIDField()
    agent = _id()
    status = serializers.ChoiceField(choices=RunStatus.choices, required=False)
    output_summary = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False
    )
    model = serializers.CharField(max_length=200, required=False, allow_blank=True)
    prompt_tokens = _count()
    completion_tokens = _count()
    cached_tokens = _count()
    cost = _cost()
    error = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False
    )
    metadata = JSONValueField(kind=dict, required=False)
    started_at = UTCDateTimeField(required=False)


class RunUpdateInputSerializer(StrictInputSerializer):
    read_only_names = (*RUN_READ_ONLY, "task", "agent", "started_at")

    id = _operation_id()

    status = serializers.ChoiceField(choices=RunStatus.choices, required=False)
    output_summary = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False
    )
    model = serializers.CharField(max_length=200, required=False, allow_blank=True)
    prompt_tokens = _count()
    completion_tokens = _count()
    cached_tokens = _count()
    cost = _cost()
    error = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False
    )
    metadata = JSONValueField(kind=dict, required=False)
