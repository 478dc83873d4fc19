"""Caps of the swarm view's answers and the JSON shapes of their rows."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from audit.models import Event
from swarmsite.models import Project
from tasks.models import TaskStatus

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


def project_row(project: Project) -> dict[str, Any]:
    """The project a snapshot belongs to."""
    return {"slug": project.slug, "name": project.name}


def task_row(row: dict[str, Any]) -> dict[str, Any]:
    """A task of the board or the graph, from its `values()` row."""
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


def node_row(row: dict[str, Any]) -> dict[str, Any]:
    """A task of the graph: empty optional fields are left out."""
    return {
        key: value
        for key, value in task_row(row).items()
        if key not in NODE_OPTIONAL or value
    }


def agent_row(row: dict[str, Any]) -> dict[str, Any]:
    """An agent, from its `values(*AGENT_FIELDS)` row."""
    out = {name: row[name] for name in AGENT_FIELDS}
    out["parent"] = out.pop("parent_id")
    return out


def event_row(row: Event) -> dict[str, Any]:
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


def capped(rows: list, cap: int) -> tuple[list, bool]:
    """The first `cap` rows, and whether there were more (read `cap + 1`)."""
    return rows[:cap], len(rows) > cap
