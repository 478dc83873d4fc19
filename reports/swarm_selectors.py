"""Reads behind the swarm view: the board and one task's snapshot.

Each function answers one JSON request of the swarm pages with a fixed
number of queries, whatever the number of tasks, runs or messages: a task's
subtree is one recursive query used as a subquery by every other read, and
lists are capped (`truncated` says when a cap cut one).

The latest event position is read first, so everything read after it is at
least as new: a page that follows the event stream after that position
misses nothing, and an event it gets twice (once in the snapshot, once from
the stream) only sets what is already shown.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import (
    Count,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Sum,
    Window,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Left, RowNumber
from django.utils import timezone

from audit.models import Event
from audit.selectors import event_latest_position, event_stream_page
from conversations.models import (
    Conversation,
    Message,
    MessageRecipient,
    Participant,
)
from swarmsite.errors import NotFound
from swarmsite.models import DEFAULT_PROJECT_SLUG, Project
from tasks.models import (
    TERMINAL_STATUSES,
    Agent,
    AgentRun,
    Task,
    TaskDependency,
    TaskStatus,
)

# Caps: what one page can show and one request should carry.
MAX_NODES = 2000
MAX_RUNS = 500
MAX_CONVERSATIONS = 40
MESSAGES_PER_CONVERSATION = 30
MESSAGE_CONTENT_CHARS = 2000
MAX_EVENTS = 60
MAX_AGENTS = 200
BOARD_COLUMN_SIZE = 50
BOARD_ROOTS = 12
BOARD_FAILED_WINDOW = timedelta(hours=24)
FEED_PAGE = 500
TEXT_CHARS = 300
COST_STEP = Decimal("0.000001")

OPEN_STATUSES = (TaskStatus.PENDING, TaskStatus.QUEUED, TaskStatus.WAITING)

TASK_FIELDS = (
    "id",
    "title",
    "status",
    "progress",
    "priority",
    "parent_id",
    "assigned_agent_id",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "created_at",
    "started_at",
    "completed_at",
    "updated_at",
)
# A graph node's fields: the board's, less the times only the task itself
# shows (added to it from its head row).
NODE_FIELDS = tuple(f for f in TASK_FIELDS if f not in ("created_at", "updated_at"))
# Left out of a graph node when empty: a thousand nodes stay a small answer.
NODE_OPTIONAL = frozenset(
    {
        "priority",
        "assigned_agent",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "started_at",
        "completed_at",
        "updated_at",
        "error",
        "result_summary",
    }
)
AGENT_FIELDS = (
    "id",
    "name",
    "role",
    "model",
    "status",
    "parent_id",
    "last_heartbeat_at",
)
# The stored roll-ups of an agent, shown on the board (never summed on read).
AGENT_ROLLUPS = (
    "tasks_completed",
    "tasks_failed",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "last_active_at",
)


# Projects ----------------------------------------------------------------------


def swarm_project(*, slug: str | None) -> Project:
    """The project a swarm page shows: `slug`, or the default project."""
    project = Project.objects.filter(slug=slug or DEFAULT_PROJECT_SLUG).first()
    if project is None:
        raise NotFound(f"No project {slug or DEFAULT_PROJECT_SLUG!r}.")
    return project


def swarm_projects() -> list[dict[str, Any]]:
    """Projects to switch between, by slug (at most 100)."""
    return list(Project.objects.order_by("slug").values("slug", "name")[:100])


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


# Shapes ------------------------------------------------------------------------


def _task_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {name: row[name] for name in TASK_FIELDS if name in row}
    out["parent"] = out.pop("parent_id", None)
    out["assigned_agent"] = out.pop("assigned_agent_id", None)
    for name in ("unmet", "parent_title", "agent_name"):
        if name in row:
            out[name] = row[name]
    if "error_text" in row:
        out["error"] = row["error_text"]
    if "summary" in row:
        out["result_summary"] = row["summary"]
    return out


def _node_row(row: dict[str, Any]) -> dict[str, Any]:
    """A task of the graph: empty optional fields are left out."""
    return {
        key: value
        for key, value in _task_row(row).items()
        if key not in NODE_OPTIONAL or value
    }


def _agent_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {name: row[name] for name in AGENT_FIELDS}
    out["parent"] = out.pop("parent_id")
    return out


def _event_row(row: Event) -> dict[str, Any]:
    """The fields of a stream event (see docs/streams.md)."""
    return {
        "id": row.uuid,
        "position": row.position,
        "kind": row.kind,
        "task": row.task_id,
        "conversation": row.conversation_id,
        "actor": {
            "type": row.actor_type,
            "id": row.actor_id,
            "label": row.actor_label,
        },
        "correlation_id": row.correlation_id,
        "payload": row.payload,
        "occurred_at": row.occurred_at,
        "recorded_at": row.recorded_at,
    }


def _capped(rows: list, cap: int) -> tuple[list, bool]:
    return rows[:cap], len(rows) > cap


# The board ---------------------------------------------------------------------


def swarm_board(*, project: Project) -> dict[str, Any]:
    """Running, waiting, blocked and recently failed tasks, top-level tasks and
    agents of a project: a fixed number of queries, each capped."""
    position = event_latest_position(project_id=project.pk)
    now = timezone.now()
    tasks = Task.objects.filter(project=project)
    unmet = TaskDependency.objects.filter(task=OuterRef("pk")).exclude(
        depends_on__status=TaskStatus.COMPLETED
    )
    card = (
        *TASK_FIELDS,
        "parent_title",
        "agent_name",
    )

    def cards(queryset: QuerySet, *extra: str) -> tuple[list[dict], bool]:
        rows = list(
            queryset.annotate(
                parent_title=F("parent__title"), agent_name=F("assigned_agent__name")
            ).values(*card, *extra)[: BOARD_COLUMN_SIZE + 1]
        )
        return _capped([_task_row(r) for r in rows], BOARD_COLUMN_SIZE)

    running, running_more = cards(
        tasks.filter(status=TaskStatus.RUNNING).order_by("-created_at")
    )
    blocked, blocked_more = cards(
        tasks.filter(status__in=OPEN_STATUSES)
        .filter(Exists(unmet))
        .annotate(
            unmet=Count(
                "depends_on",
                filter=~Q(depends_on__status=TaskStatus.COMPLETED),
            )
        )
        .order_by("-created_at"),
        "unmet",
    )
    waiting, waiting_more = cards(
        tasks.filter(status__in=OPEN_STATUSES)
        .exclude(Exists(unmet))
        .order_by("-created_at")
    )
    failed, failed_more = cards(
        tasks.filter(
            status=TaskStatus.FAILED, updated_at__gte=now - BOARD_FAILED_WINDOW
        )
        .annotate(error_text=Left("error", TEXT_CHARS))
        .order_by("-updated_at"),
        "error_text",
    )
    roots, _ = cards(tasks.filter(parent__isnull=True).order_by("-created_at"))
    roots = roots[:BOARD_ROOTS]
    by_root: dict[Any, dict[str, int]] = {r["id"]: {} for r in roots}
    for row in (
        Task.objects.filter(parent_id__in=list(by_root))
        .values("parent_id", "status")
        .annotate(n=Count("id"))
        .order_by()
    ):
        by_root[row["parent_id"]][row["status"]] = row["n"]
    for root in roots:
        root["subtasks"] = by_root[root["id"]]
    agents = [
        _agent_row(a) | {name: a[name] for name in AGENT_ROLLUPS}
        for a in Agent.objects.filter(project=project)
        .order_by("name")
        .values(*AGENT_FIELDS, *AGENT_ROLLUPS)[:MAX_AGENTS]
    ]
    return {
        "project": {"slug": project.slug, "name": project.name},
        "position": position,
        "now": now,
        "columns": {
            "running": {"tasks": running, "more": running_more},
            "waiting": {"tasks": waiting, "more": waiting_more},
            "blocked": {"tasks": blocked, "more": blocked_more},
            "failed": {"tasks": failed, "more": failed_more},
        },
        "roots": roots,
        "agents": agents,
    }


# One task ----------------------------------------------------------------------


def _subtree_ids(root: Task) -> RawSQL:
    """The ids of `root` and all its descendants, as one recursive subquery.

    UNION (not UNION ALL) ends a parent cycle, and the LIMIT bounds the walk.
    """
    table = connection.ops.quote_name(Task._meta.db_table)
    root_id = Task._meta.pk.get_db_prep_value(root.pk, connection)
    return RawSQL(
        f"WITH RECURSIVE subtree(id) AS ("
        f" SELECT id FROM {table} WHERE id = %s AND project_id = %s"
        f" UNION SELECT t.id FROM {table} t JOIN subtree s ON t.parent_id = s.id"
        f") SELECT id FROM subtree LIMIT {MAX_NODES + 1}",
        (root_id, root.project_id),
    )


def _recipients(
    message: dict[str, Any],
    participants: list[Any],
    callers: dict[str, Any],
    stored: dict[Any, list[Any]],
) -> list[Any]:
    """Who a message was for: the recipients it names; else the caller of a
    tool, or the other participant of a two-agent conversation; else
    everyone (an empty list)."""
    if stored.get(message["id"]):
        return stored[message["id"]]
    if message["role"] == "tool" and message["tool_call_id"] in callers:
        return [callers[message["tool_call_id"]]]
    sender = message["sender_id"]
    others = [a for a in participants if a != sender]
    if sender is not None and len(participants) == 2 and len(others) == 1:
        return others
    return []


def _tool_call_ids(tool_calls: Any) -> list[str]:
    if not isinstance(tool_calls, list):
        return []
    return [c["id"] for c in tool_calls if isinstance(c, dict) and "id" in c]


def _conversations(ids: RawSQL) -> dict[str, Any]:
    rows = list(
        Conversation.objects.filter(task_id__in=ids)
        .order_by(F("last_message_at").desc(nulls_last=True), "-created_at")
        .values(
            "id",
            "task_id",
            "title",
            "status",
            "message_count",
            "prompt_tokens",
            "completion_tokens",
            "cost",
            "created_at",
            "last_message_at",
        )[: MAX_CONVERSATIONS + 1]
    )
    rows, more = _capped(rows, MAX_CONVERSATIONS)
    conv_ids = [r["id"] for r in rows]
    participants: dict[Any, list[Any]] = {c: [] for c in conv_ids}
    for conv_id, agent_id in Participant.objects.filter(
        conversation_id__in=conv_ids
    ).values_list("conversation_id", "agent_id"):
        participants[conv_id].append(agent_id)
    messages: dict[Any, list[dict]] = {c: [] for c in conv_ids}
    latest = (
        Message.objects.filter(conversation_id__in=conv_ids)
        .annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F("conversation_id")],
                order_by=F("seq").desc(),
            ),
            text=Left("content", MESSAGE_CONTENT_CHARS),
        )
        .filter(rank__lte=MESSAGES_PER_CONVERSATION)
        .order_by("conversation_id", "seq")
        .values(
            "id",
            "conversation_id",
            "seq",
            "role",
            "sender_id",
            "text",
            "tool_calls",
            "tool_call_id",
            "model",
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "cost",
            "latency_ms",
            "reply_to_id",
            "revision",
            "created_at",
        )
    )
    for row in latest:
        messages[row["conversation_id"]].append(row)
    stored: dict[Any, list[Any]] = {}
    for message_id, agent_id in MessageRecipient.objects.filter(
        message_id__in=[m["id"] for shown in messages.values() for m in shown]
    ).values_list("message_id", "agent_id"):
        stored.setdefault(message_id, []).append(agent_id)
    out = []
    for conv in rows:
        conv_id = conv["id"]
        callers = {
            call: m["sender_id"]
            for m in messages[conv_id]
            for call in _tool_call_ids(m["tool_calls"])
        }
        shown = []
        for m in messages[conv_id]:
            shown.append(
                {
                    "id": m["id"],
                    "seq": m["seq"],
                    "role": m["role"],
                    "sender": m["sender_id"],
                    "recipients": _recipients(
                        m, participants[conv_id], callers, stored
                    ),
                    "content": m["text"],
                    "truncated": len(m["text"] or "") >= MESSAGE_CONTENT_CHARS,
                    "tool_calls": m["tool_calls"],
                    "tool_call_id": m["tool_call_id"],
                    "model": m["model"],
                    "prompt_tokens": m["prompt_tokens"],
                    "completion_tokens": m["completion_tokens"],
                    "cached_tokens": m["cached_tokens"],
                    "cost": m["cost"],
                    "latency_ms": m["latency_ms"],
                    "reply_to": m["reply_to_id"],
                    "revision": m["revision"],
                    "created_at": m["created_at"],
                }
            )
        out.append(
            {
                "id": conv_id,
                "task": conv["task_id"],
                "title": conv["title"],
                "status": conv["status"],
                "message_count": conv["message_count"],
                "prompt_tokens": conv["prompt_tokens"],
                "completion_tokens": conv["completion_tokens"],
                "cost": conv["cost"],
                "created_at": conv["created_at"],
                "last_message_at": conv["last_message_at"],
                "participants": participants[conv_id],
                "messages": shown,
            }
        )
    return {"items": out, "more": more}


def _usage_by_agent(ids: RawSQL) -> dict[Any, dict[str, Any]]:
    """Runs, messages, tokens and cost of each agent within the subtree.

    Messages carry their own usage and runs the calls that no message
    records (as in the task roll-ups), so an agent's usage is both summed.
    """
    usage: dict[Any, dict[str, Any]] = {}

    def entry(agent_id: Any) -> dict[str, Any]:
        return usage.setdefault(
            agent_id,
            {
                "runs": 0,
                "runs_failed": 0,
                "messages": 0,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "cost": Decimal(0),
            },
        )

    for row in (
        AgentRun.objects.filter(task_id__in=ids)
        .values("agent_id")
        .annotate(
            n=Count("id"),
            failed=Count("id", filter=Q(status="failed")),
            prompt=Sum("prompt_tokens"),
            completion=Sum("completion_tokens"),
            spent=Sum("cost"),
        )
        .order_by()
    ):
        item = entry(row["agent_id"])
        item["runs"] += row["n"]
        item["runs_failed"] += row["failed"]
        item["prompt_tokens"] += row["prompt"] or 0
        item["completion_tokens"] += row["completion"] or 0
        item["cost"] += row["spent"] or 0
    for row in (
        Message.objects.filter(conversation__task_id__in=ids)
        .values("sender_id")
        .annotate(
            n=Count("id"),
            prompt=Sum("prompt_tokens"),
            completion=Sum("completion_tokens"),
            spent=Sum("cost"),
        )
        .order_by()
    ):
        item = entry(row["sender_id"])
        item["messages"] += row["n"]
        item["prompt_tokens"] += row["prompt"] or 0
        item["completion_tokens"] += row["completion"] or 0
        item["cost"] += row["spent"] or 0
    for item in usage.values():
        item["cost"] = Decimal(item["cost"]).quantize(COST_STEP)
    return usage


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
    ids = _subtree_ids(root)

    rows = list(
        Task.objects.filter(pk__in=ids)
        .annotate(
            error_text=Left("error", TEXT_CHARS),
            summary=Left("result_summary", TEXT_CHARS),
        )
        .order_by("created_at", "id")
        .values(*NODE_FIELDS, "error_text", "summary")
    )
    # The walk stops one past the cap: that row only says there were more.
    truncated = len(rows) > MAX_NODES
    rows = [r for r in rows if r["id"] == root.pk] + [
        r for r in rows if r["id"] != root.pk
    ][: MAX_NODES - 1]
    nodes = {r["id"]: _node_row(r) for r in rows}

    edges = [
        (task, dep)
        for task, dep in TaskDependency.objects.filter(task_id__in=ids).values_list(
            "task_id", "depends_on_id"
        )
        if task in nodes
    ]
    outside = {dep for _, dep in edges if dep not in nodes}
    external = {
        r["id"]: {**_node_row(r), "external": True}
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
        .annotate(
            error_text=Left("error", TEXT_CHARS),
            summary=Left("output_summary", TEXT_CHARS),
        )
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
    runs_rows, runs_more = _capped(runs_rows, MAX_RUNS)
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
    conversations = _conversations(ids)
    usage = _usage_by_agent(ids)

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
        a["id"]: _agent_row(a)
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
        agent.update(
            usage.get(
                key,
                {
                    "runs": 0,
                    "runs_failed": 0,
                    "messages": 0,
                    "prompt_tokens": 0,
                    "completion_tokens": 0,
                    "cost": Decimal(0).quantize(COST_STEP),
                },
            )
        )
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
        _event_row(e)
        for e in Event.objects.filter(project_id=project.pk, task_id__in=ids).order_by(
            "-position"
        )[:MAX_EVENTS]
    ]
    events.reverse()
    root_node = nodes[root.pk]
    root_node["created_at"] = root.created_at
    return {
        "project": {"slug": project.slug, "name": project.name},
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


def swarm_event_feed(*, project: Project, after: int) -> dict[str, Any]:
    """Events after `after`, for pages that cannot use the WebSocket stream."""
    events, reached = event_stream_page(
        project_id=project.pk, after=after, limit=FEED_PAGE
    )
    return {"events": [_event_row(e) for e in events], "position": reached}
