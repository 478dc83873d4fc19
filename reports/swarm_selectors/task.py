"""Reads of the task page: the task's head row and its whole snapshot."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Q
from django.db.models.functions import Left
from django.utils import timezone

from audit.models import Event
from audit.selectors import event_latest_position
from reports.swarm_selectors.shapes import (
    AGENT_FIELDS,
    MAX_AGENTS,
    MAX_EVENTS,
    MAX_NODES,
    MAX_RUNS,
    NODE_FIELDS,
    TEXT_CHARS,
    agent_row,
    capped,
    event_row,
    node_row,
    project_row,
)
from reports.swarm_selectors.subtree import (
    subtree_conversations,
    subtree_ids,
    subtree_usage_by_agent,
    usage_empty,
)
from swarmsite.errors import NotFound
from tasks.models import (
    TERMINAL_STATUSES,
    Agent,
    AgentRun,
    Task,
    TaskDependency,
    TaskStatus,
)


def swarm_task_head(*, task_id: uuid.UUID) -> Task:
    """The task a page shows, with its project and parent: any project."""
    task = (
        Task.objects.select_related("project", "parent")
        .only(
            "id",
            "title",
            "status",
            "created_at",
            "project",
            "parent__id",
            "parent__title",
        )
        .filter(pk=task_id)
        .first()
    )
    if task is None:
        raise NotFound(f"No task {task_id}.")
    return task


def _excerpts(summary: str) -> dict[str, Left]:
    """The first TEXT_CHARS of `error` and of the field `summary` names."""
    return {
        "error_text": Left("error", TEXT_CHARS),
        "summary": Left(summary, TEXT_CHARS),
    }


def swarm_task_snapshot(*, task_id: uuid.UUID) -> dict[str, Any]:
    """Everything the task page draws, in one answer with bounded queries.

    The task and its descendants (capped at MAX_NODES) with their dependency
    edges (and the tasks outside the subtree they wait for), the agents
    involved and who delegated to whom, tokens and cost per agent, runs,
    conversations with their latest messages, the latest events, and the
    event position the page follows the stream after.
    """
    root = swarm_task_head(task_id=task_id)
    project = root.project
    position = event_latest_position(project_id=project.pk)
    ids = subtree_ids(root)

    rows = list(
        Task.objects.filter(pk__in=ids)
        .annotate(**_excerpts("result_summary"))
        .order_by("created_at", "id")
        .values(*NODE_FIELDS, "error_text", "summary")
    )
    # The walk stops one past the cap: that row only says there were more.
    truncated = len(rows) > MAX_NODES
    rows = [r for r in rows if r["id"] == root.pk] + [
        r for r in rows if r["id"] != root.pk
    ][: MAX_NODES - 1]
    nodes = {r["id"]: node_row(r) for r in rows}

    edges = [
        (task, dep)
        for task, dep in TaskDependency.objects.filter(task_id__in=ids).values_list(
            "task_id", "depends_on_id"
        )
        if task in nodes
    ]
    outside = {dep for _, dep in edges if dep not in nodes}
    external = {
        r["id"]: {**node_row(r), "external": True}
        for r in Task.objects.filter(pk__in=outside).values(*NODE_FIELDS)
    }
    status = {key: n["status"] for key, n in (nodes | external).items()}
    unmet: dict[Any, int] = {}
    dependencies = []
    for task, dep in edges:
        blocked = (
            status.get(dep) != TaskStatus.COMPLETED
            and status[task] not in TERMINAL_STATUSES
        )
        if blocked:
            unmet[task] = unmet.get(task, 0) + 1
        dependencies.append({"task": task, "depends_on": dep, "blocked": blocked})
    for key, node in nodes.items():
        node["blocked"] = unmet.get(key, 0) > 0

    runs_rows = list(
        AgentRun.objects.filter(task_id__in=ids)
        .annotate(**_excerpts("output_summary"))
        .order_by("-started_at", "-id")
        .values(
            "id",
            "task_id",
            "agent_id",
            "status",
            "model",
            "started_at",
            "ended_at",
            "prompt_tokens",
            "completion_tokens",
            "cost",
            "error_text",
            "summary",
        )[: MAX_RUNS + 1]
    )
    runs_rows, runs_more = capped(runs_rows, MAX_RUNS)
    runs = [
        {
            "id": r["id"],
            "task": r["task_id"],
            "agent": r["agent_id"],
            "status": r["status"],
            "model": r["model"],
            "started_at": r["started_at"],
            "ended_at": r["ended_at"],
            "prompt_tokens": r["prompt_tokens"],
            "completion_tokens": r["completion_tokens"],
            "cost": r["cost"],
            "error": r["error_text"],
            "output_summary": r["summary"],
        }
        for r in reversed(runs_rows)
    ]
    conversations = subtree_conversations(ids)
    usage = subtree_usage_by_agent(ids)

    involved = set(usage) | {n.get("assigned_agent") for n in nodes.values()}
    involved |= {r["agent"] for r in runs}
    involved |= {a for c in conversations["items"] for a in c["participants"]}
    involved |= set(
        Task.agents.through.objects.filter(task_id__in=ids).values_list(
            "agent_id", flat=True
        )
    )
    involved.discard(None)
    agents = {
        a["id"]: agent_row(a)
        for a in Agent.objects.filter(Q(pk__in=involved) | Q(children__in=involved))
        .distinct()
        .order_by("name")
        .values(*AGENT_FIELDS)[:MAX_AGENTS]
    }
    assigned: dict[Any, int] = {}
    for node in nodes.values():
        key = node.get("assigned_agent")
        if key is not None:
            assigned[key] = assigned.get(key, 0) + 1
    for key, agent in agents.items():
        agent["involved"] = key in involved
        agent["tasks_assigned"] = assigned.get(key, 0)
        agent.update(usage.get(key) or usage_empty())
    # Who delegated to whom: the agent of a task to the agent of its subtask.
    delegated: dict[tuple[Any, Any], int] = {}
    for node in nodes.values():
        parent = nodes.get(node["parent"])
        if parent is None:
            continue
        pair = (parent.get("assigned_agent"), node.get("assigned_agent"))
        if None not in pair and pair[0] != pair[1]:
            delegated[pair] = delegated.get(pair, 0) + 1
    delegations = [{"from": a, "to": b, "tasks": n} for (a, b), n in delegated.items()]

    events = [
        event_row(e)
        for e in Event.objects.filter(project_id=project.pk, task_id__in=ids).order_by(
            "-position"
        )[:MAX_EVENTS]
    ]
    events.reverse()
    root_node = nodes[root.pk]
    root_node["created_at"] = root.created_at
    return {
        "project": project_row(project),
        "position": position,
        "now": timezone.now(),
        "task": root_node,
        "parent": (
            {"id": root.parent.pk, "title": root.parent.title}
            if root.parent is not None
            else None
        ),
        "nodes": list(nodes.values()) + list(external.values()),
        "dependencies": dependencies,
        "truncated": truncated,
        "agents": list(agents.values()),
        "delegations": delegations,
        "usage_unattributed": usage.get(None),
        "runs": runs,
        "runs_more": runs_more,
        "conversations": conversations["items"],
        "conversations_more": conversations["more"],
        "events": events,
    }
