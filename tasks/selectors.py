"""Reads of agents, tasks and runs shared by the admin, API and commands."""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef, QuerySet

from swarmsite.errors import NotFound
from swarmsite.models import Project
from tasks.models import (
    Agent,
    AgentHeartbeat,
    AgentRun,
    Task,
    TaskDependency,
    TaskStatus,
    Workflow,
)


def blocked_expression() -> Exists:
    """True for a task with a dependency that is not completed."""
    return Exists(
        TaskDependency.objects.filter(task_id=OuterRef("pk")).exclude(
            depends_on__status=TaskStatus.COMPLETED
        )
    )


def agent_list(*, project: Project) -> QuerySet[Agent]:
    """A project's agents with their parents, by name."""
    return Agent.objects.filter(project=project).select_related("parent")


def agent_get(*, project: Project, agent_id: uuid.UUID | str) -> Agent:
    """One agent of the project; another project's agent is not found."""
    try:
        return agent_list(project=project).get(pk=agent_id)
    except (Agent.DoesNotExist, ValueError, ValidationError) as exc:
        raise NotFound(f"No agent {agent_id}.") from exc


def task_list(*, project: Project) -> QuerySet[Task]:
    """A project's tasks, newest first, without their big JSON columns."""
    return (
        Task.objects.filter(project=project)
        .select_related("assigned_agent", "workflow")
        .prefetch_related("agents")
        .defer("input", "result", "description")
        .annotate(blocked=blocked_expression())
        .order_by("-created_at", "-id")
    )


def task_get(*, project: Project, task_id: uuid.UUID | str) -> Task:
    """One task of the project, with everything; another project's is not found."""
    try:
        return (
            Task.objects.select_related(
                "project", "assigned_agent", "workflow", "parent"
            )
            .prefetch_related("agents", "depends_on")
            .annotate(blocked=blocked_expression())
            .get(project=project, pk=task_id)
        )
    except (Task.DoesNotExist, ValueError, ValidationError) as exc:
        raise NotFound(f"No task {task_id}.") from exc


def run_list(*, project: Project) -> QuerySet[AgentRun]:
    """A project's agent runs, newest first."""
    return (
        AgentRun.objects.filter(project=project)
        .select_related("task", "agent")
        .order_by("-created_at", "-id")
    )


def agent_heartbeat_list(*, agent: Agent) -> QuerySet[AgentHeartbeat]:
    """An agent's heartbeats, newest first."""
    return AgentHeartbeat.objects.filter(agent=agent).order_by("-created_at", "-id")


def workflow_list(*, project: Project) -> QuerySet[Workflow]:
    """A project's workflows, newest first."""
    return Workflow.objects.filter(project=project).order_by("-created_at", "-id")


def workflow_get(*, project: Project, workflow_id: uuid.UUID | str) -> Workflow:
    """One workflow of the project; another project's is not found."""
    try:
        return workflow_list(project=project).get(pk=workflow_id)
    except (Workflow.DoesNotExist, ValueError, ValidationError) as exc:
        raise NotFound(f"No workflow {workflow_id}.") from exc
