"""Recount every roll-up from the rows, under the one-owner rule for usage.

Before, a task added the usage of its runs and of the messages of its
conversations, so a model call reported on both its run and its message
counted twice. Now a message whose metadata names a `run` adds no usage to
the task, workflow or agent roll-ups: its run owns it. Workflow and agent
roll-ups are new and start from the stored rows.
"""

from decimal import Decimal

from django.db import migrations
from django.db.models import (
    Count,
    DecimalField,
    Max,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce

TOKENS = ("prompt_tokens", "completion_tokens", "cached_tokens")
MONEY = DecimalField(max_digits=16, decimal_places=6)


def _sum(queryset, group: str, column: str, output=None):
    """The sum of `column` over `queryset` rows whose `group` is the outer row."""
    sums = (
        queryset.filter(**{group: OuterRef("pk")})
        .order_by()
        .values(group)
        .annotate(total=Sum(column))
        .values("total")
    )
    zero = Value(Decimal(0), output_field=MONEY) if output else Value(0)
    if output:
        return Coalesce(Subquery(sums, output_field=output), zero, output_field=output)
    return Coalesce(Subquery(sums), zero)


def _count(queryset, group: str):
    counts = (
        queryset.filter(**{group: OuterRef("pk")})
        .order_by()
        .values(group)
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counts), Value(0))


def recount(apps, schema_editor):
    Task = apps.get_model("tasks", "Task")
    AgentRun = apps.get_model("tasks", "AgentRun")
    Agent = apps.get_model("tasks", "Agent")
    Workflow = apps.get_model("tasks", "Workflow")
    Message = apps.get_model("conversations", "Message")
    runs = AgentRun.objects.all()
    counted = Message.objects.filter(~Q(metadata__has_key="run"))

    values = {
        name: _sum(runs, "task", name) + _sum(counted, "conversation__task", name)
        for name in TOKENS
    }
    values["cost"] = _sum(runs, "task", "cost", MONEY) + _sum(
        counted, "conversation__task", "cost", MONEY
    )
    Task.objects.update(**values)

    tasks = Task.objects.all()
    values = {
        f"tasks_{status}": _count(tasks.filter(status=status), "workflow")
        for status in (
            "pending",
            "queued",
            "running",
            "waiting",
            "completed",
            "failed",
            "cancelled",
        )
    }
    values.update({name: _sum(tasks, "workflow", name) for name in TOKENS})
    values["cost"] = _sum(tasks, "workflow", "cost", MONEY)
    Workflow.objects.update(**values)

    values = {
        "tasks_completed": _count(tasks.filter(status="completed"), "assigned_agent"),
        "tasks_failed": _count(tasks.filter(status="failed"), "assigned_agent"),
        "runs_count": _count(runs, "agent"),
        "messages_count": _count(Message.objects.all(), "sender"),
        "latency_count": _count(
            Message.objects.filter(latency_ms__isnull=False), "sender"
        ),
        "latency_total_ms": _sum(
            Message.objects.filter(latency_ms__isnull=False), "sender", "latency_ms"
        ),
    }
    values.update(
        {
            name: _sum(runs, "agent", name) + _sum(counted, "sender", name)
            for name in TOKENS
        }
    )
    values["cost"] = _sum(runs, "agent", "cost", MONEY) + _sum(
        counted, "sender", "cost", MONEY
    )
    Agent.objects.update(**values)
    # Last activity: the latest heartbeat, message sent or run report.
    for agent in Agent.objects.annotate(
        last_message=Max("messages_sent__created_at"),
    ).only("pk", "last_heartbeat_at"):
        last_run = AgentRun.objects.filter(agent=agent).aggregate(at=Max("updated_at"))[
            "at"
        ]
        moments = [
            m
            for m in (agent.last_heartbeat_at, agent.last_message, last_run)
            if m is not None
        ]
        if moments:
            Agent.objects.filter(pk=agent.pk).update(last_active_at=max(moments))


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0003_work_queue_and_rollups"),
        ("conversations", "0003_create_digest"),
    ]

    operations = [migrations.RunPython(recount, migrations.RunPython.noop)]
