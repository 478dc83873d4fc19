"""A task's subtree as one recursive subquery, and the talk and usage in it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Count, F, Q, Sum, Window
from django.db.models.expressions import RawSQL
from django.db.models.functions import Left, RowNumber

from conversations.models import (
    Conversation,
    Message,
    MessageRecipient,
    Participant,
)
from reports.swarm_selectors.shapes import (
    COST_STEP,
    MAX_CONVERSATIONS,
    MAX_NODES,
    MESSAGE_CONTENT_CHARS,
    MESSAGES_PER_CONVERSATION,
    capped,
)
from tasks.models import AgentRun, Task


def subtree_ids(root: Task) -> RawSQL:
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


def subtree_conversations(ids: RawSQL) -> dict[str, Any]:
    """The latest conversations of the subtree, each with its latest messages."""
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
    rows, more = capped(rows, MAX_CONVERSATIONS)
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


def usage_empty() -> dict[str, Any]:
    """The usage of an agent with no runs or messages in the subtree."""
    return {
        "runs": 0,
        "runs_failed": 0,
        "messages": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost": Decimal(0).quantize(COST_STEP),
    }


def _usage_sums() -> dict[str, Sum]:
    return {
        "prompt": Sum("prompt_tokens"),
        "completion": Sum("completion_tokens"),
        "spent": Sum("cost"),
    }


def subtree_usage_by_agent(ids: RawSQL) -> dict[Any, dict[str, Any]]:
    """Runs, messages, tokens and cost of each agent within the subtree.

    Messages carry their own usage and runs the calls that no message
    records (as in the task roll-ups), so an agent's usage is both summed.
    """
    usage: dict[Any, dict[str, Any]] = {}

    def add(agent_id: Any, row: dict[str, Any]) -> dict[str, Any]:
        item = usage.setdefault(agent_id, usage_empty())
        item["prompt_tokens"] += row["prompt"] or 0
        item["completion_tokens"] += row["completion"] or 0
        item["cost"] += row["spent"] or 0
        return item

    for row in (
        AgentRun.objects.filter(task_id__in=ids)
        .values("agent_id")
        .annotate(
            n=Count("id"),
            failed=Count("id", filter=Q(status="failed")),
            **_usage_sums(),
        )
        .order_by()
    ):
        item = add(row["agent_id"], row)
        item["runs"] += row["n"]
        item["runs_failed"] += row["failed"]
    for row in (
        Message.objects.filter(conversation__task_id__in=ids)
        .values("sender_id")
        .annotate(n=Count("id"), **_usage_sums())
        .order_by()
    ):
        add(row["sender_id"], row)["messages"] += row["n"]
    for item in usage.values():
        item["cost"] = Decimal(item["cost"]).quantize(COST_STEP)
    return usage
