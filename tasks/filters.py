"""Query-string filters of the agent and task lists."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from swarmsite.filters import StrictBooleanFilter, StrictFilterSet, UTCDateTimeFilter
from tasks.models import (
    Agent,
    AgentRun,
    AgentStatus,
    RunStatus,
    Task,
    TaskStatus,
    Workflow,
)


class AgentFilterSet(StrictFilterSet):
    role = django_filters.CharFilter()
    status = django_filters.MultipleChoiceFilter(choices=AgentStatus.choices)
    parent = django_filters.UUIDFilter(field_name="parent_id")
    name = django_filters.CharFilter()

    class Meta:
        model = Agent
        fields = ["role", "status", "parent", "name"]


class TaskFilterSet(StrictFilterSet):
    status = django_filters.MultipleChoiceFilter(choices=TaskStatus.choices)
    assigned_agent = django_filters.UUIDFilter(field_name="assigned_agent_id")
    # Any agent involved in the task, assigned or not.
    agent = django_filters.UUIDFilter(field_name="agents__id")
    workflow = django_filters.UUIDFilter(field_name="workflow_id")
    session_id = django_filters.CharFilter()
    parent = django_filters.UUIDFilter(field_name="parent_id")
    created_after = UTCDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCDateTimeFilter(field_name="created_at", lookup_expr="lt")
    search = django_filters.CharFilter(method="filter_search")
    key = django_filters.CharFilter()
    # `blocked` is annotated by tasks.selectors.task_list.
    blocked = StrictBooleanFilter(field_name="blocked")

    class Meta:
        model = Task
        fields = [
            "key",
            "blocked",
            "status",
            "assigned_agent",
            "agent",
            "workflow",
            "session_id",
            "parent",
            "created_after",
            "created_before",
            "search",
        ]

    def filter_search(self, queryset: QuerySet[Task], name: str, value: str):
        return queryset.filter(
            Q(title__icontains=value) | Q(description__icontains=value)
        )


class RunFilterSet(StrictFilterSet):
    task = django_filters.UUIDFilter(field_name="task_id")
    agent = django_filters.UUIDFilter(field_name="agent_id")
    status = django_filters.MultipleChoiceFilter(choices=RunStatus.choices)

    class Meta:
        model = AgentRun
        fields = ["task", "agent", "status"]


class WorkflowFilterSet(StrictFilterSet):
    name = django_filters.CharFilter()

    class Meta:
        model = Workflow
        fields = ["name"]
