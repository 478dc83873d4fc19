"""Aggregate reads behind `GET /api/v1/stats/`.

Everything is computed in the database with grouped aggregates over one time
window, each filter served by a `(project, ..., created_at / occurred_at)`
index; Python only merges a handful of groups. The number of queries is fixed:
it grows neither with rows nor with agents, models or endpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import (
    Aggregate,
    Avg,
    Case,
    Count,
    DecimalField,
    DurationField,
    ExpressionWrapper,
    F,
    FloatField,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from audit.models import AuditAction, AuditLog
from conversations.models import Message
from swarmsite.errors import ValidationError
from swarmsite.models import Project
from tasks.models import TERMINAL_STATUSES, Agent, AgentRun, Task, TaskStatus

DEFAULT_WINDOW = timedelta(hours=24)
PERCENTILES = (("p50", 0.5), ("p95", 0.95))
USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "cached_tokens")
ZERO_COST = Decimal("0.000000")


# Window -------------------------------------------------------------------


@dataclass(frozen=True)
class StatsWindow:
    """The half-open interval `[since, until)` that every figure covers."""

    since: datetime
    until: datetime


def stats_window(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> StatsWindow:
    """The requested window; defaults to the 24 hours before `until` (or now).

    Refuses `until` before (or at) `since` and windows wider than
    `STATS_MAX_WINDOW_DAYS`, naming the field to fix.
    """
    now = now or timezone.now()
    if until is None:
        until = now if since is None or since < now else since + DEFAULT_WINDOW
    if since is None:
        since = until - DEFAULT_WINDOW
    if until <= since:
        raise ValidationError({"until": "Must be later than since."})
    max_days = settings.STATS_MAX_WINDOW_DAYS
    if until - since > timedelta(days=max_days):
        raise ValidationError(
            {"since": f"The window may span at most {max_days} days."}
        )
    return StatsWindow(since=since, until=until)


# Tasks --------------------------------------------------------------------


class PercentileCont(Aggregate):
    """PostgreSQL's `percentile_cont(f) WITHIN GROUP (ORDER BY expr)`."""

    function = "PERCENTILE_CONT"
    name = "PercentileCont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression: Any, *, fraction: float, **extra: Any) -> None:
        # Formatted as a float literal: never user input, always 0 < f < 1.
        super().__init__(expression, fraction=repr(float(fraction)), **extra)


def _duration() -> ExpressionWrapper:
    return ExpressionWrapper(
        F("completed_at") - F("started_at"), output_field=DurationField()
    )


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else round(value.total_seconds(), 6)


def _percentiles_by_offset(
    durations: QuerySet[Task], *, count: int
) -> dict[str, timedelta | None]:
    """percentile_cont on databases without it: two rows at the right offset."""
    result: dict[str, timedelta | None] = {}
    ordered = durations.annotate(duration=_duration()).order_by("duration")
    for name, fraction in PERCENTILES:
        if not count:
            result[name] = None
            continue
        rank = fraction * (count - 1)
        low = math.floor(rank)
        values = list(ordered.values_list("duration", flat=True)[low : low + 2])
        below = values[0]
        above = values[-1]
        result[name] = below + (above - below) * (rank - low)
    return result


def task_stats(*, project: Project, window: StatsWindow) -> dict[str, Any]:
    """Tasks created in the window: counts by status, completion, durations.

    Durations (started_at to completed_at) cover the completed ones.
    """
    tasks = Task.objects.filter(
        project=project, created_at__gte=window.since, created_at__lt=window.until
    )
    done = Q(
        status=TaskStatus.COMPLETED,
        started_at__isnull=False,
        completed_at__isnull=False,
    )
    aggregates: dict[str, Any] = {
        f"status_{status}": Count("pk", filter=Q(status=status))
        for status in TaskStatus.values
    }
    aggregates["timed"] = Count("pk", filter=done)
    aggregates["avg"] = Avg(_duration(), filter=done)
    on_postgres = connection.vendor == "postgresql"
    if on_postgres:
        for name, fraction in PERCENTILES:
            aggregates[name] = PercentileCont(
                _duration(),
                fraction=fraction,
                filter=done,
                output_field=DurationField(),
            )
    row = tasks.aggregate(**aggregates)
    if not on_postgres:
        row.update(_percentiles_by_offset(tasks.filter(done), count=row["timed"]))

    by_status = {status: row[f"status_{status}"] for status in TaskStatus.values}
    finished = sum(by_status[s] for s in TERMINAL_STATUSES)
    completed = by_status[TaskStatus.COMPLETED]
    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "finished": finished,
        "completion_rate": round(completed / finished, 6) if finished else None,
        "duration_seconds": {
            "count": row["timed"],
            "avg": _seconds(row["avg"]),
            **{name: _seconds(row[name]) for name, _ in PERCENTILES},
        },
    }


# Usage --------------------------------------------------------------------


def _usage_sums(counted: Q | None = None) -> dict[str, Any]:
    # Prefixed: an annotation may not take the name of a model field.
    sums: dict[str, Any] = {
        f"sum_{name}": Coalesce(Sum(name, filter=counted), Value(0))
        for name in USAGE_FIELDS
    }
    sums["sum_cost"] = Coalesce(
        Sum("cost", filter=counted),
        Value(Decimal(0)),
        output_field=DecimalField(max_digits=20, decimal_places=6),
    )
    return sums


def _empty_usage() -> dict[str, Any]:
    return {
        "messages": 0,
        "runs": 0,
        **dict.fromkeys(USAGE_FIELDS, 0),
        "total_tokens": 0,
        "cost": ZERO_COST,
    }


def _add_usage(into: dict[str, Any], group: dict[str, Any], *, source: str) -> None:
    into[source] += group["n"]
    for name in USAGE_FIELDS:
        into[name] += group[f"sum_{name}"]
    into["total_tokens"] += group["sum_prompt_tokens"] + group["sum_completion_tokens"]
    into["cost"] += Decimal(group["sum_cost"]).quantize(ZERO_COST)


def _usage_groups(
    *, project: Project, window: StatsWindow
) -> list[tuple[str, dict[str, Any]]]:
    """Usage grouped by (agent, model), from messages and from agent runs.

    A message whose metadata names a `run` is counted as a message but adds
    no usage: its run reports it (the rule of tasks.services.rollups).
    """
    sums = _usage_sums()
    message_sums = _usage_sums(counted=~Q(metadata__has_key="run"))
    messages = (
        Message.objects.filter(
            project=project,
            created_at__gte=window.since,
            created_at__lt=window.until,
        )
        .values(
            agent_id=F("sender_id"), agent_name=F("sender__name"), model_name=F("model")
        )
        .annotate(n=Count("pk"), **message_sums)
        .order_by()
    )
    runs = (
        AgentRun.objects.filter(
            project=project,
            created_at__gte=window.since,
            created_at__lt=window.until,
        )
        .values("agent_id", agent_name=F("agent__name"), model_name=F("model"))
        .annotate(n=Count("pk"), **sums)
        .order_by()
    )
    return [("messages", g) for g in messages] + [("runs", g) for g in runs]


def _ranked(groups: dict[Any, dict[str, Any]]) -> list[dict[str, Any]]:
    """Biggest spenders first, capped at STATS_MAX_GROUPS entries."""
    ordered = sorted(
        groups.values(),
        key=lambda g: (
            -g["cost"],
            -g["total_tokens"],
            g["name"] if "name" in g else g["model"],
        ),
    )
    return ordered[: settings.STATS_MAX_GROUPS]


def usage_stats(*, project: Project, window: StatsWindow) -> dict[str, Any]:
    """Tokens and cost of messages and runs in the window: total, by agent, by model.

    Runs own the usage of messages that name them, as in the task roll-ups.
    When the window holds every usage row of the project, each agent's
    figures are its stored roll-ups instead of sums over the window.
    """
    total = _empty_usage()
    by_agent: dict[Any, dict[str, Any]] = {}
    by_model: dict[str, dict[str, Any]] = {}
    for source, group in _usage_groups(project=project, window=window):
        _add_usage(total, group, source=source)
        agent_id = group["agent_id"]
        agent = by_agent.setdefault(
            agent_id,
            {
                "agent": agent_id,
                "name": group["agent_name"] or "",
                **_empty_usage(),
                "tasks": 0,
                "tasks_completed": 0,
                "tasks_failed": 0,
            },
        )
        _add_usage(agent, group, source=source)
        model = by_model.setdefault(
            group["model_name"], {"model": group["model_name"], **_empty_usage()}
        )
        _add_usage(model, group, source=source)

    assigned = (
        Task.objects.filter(
            project=project,
            created_at__gte=window.since,
            created_at__lt=window.until,
            assigned_agent__isnull=False,
        )
        .values("assigned_agent_id", agent_name=F("assigned_agent__name"))
        .annotate(
            n=Count("pk"),
            completed=Count("pk", filter=Q(status=TaskStatus.COMPLETED)),
            failed=Count("pk", filter=Q(status=TaskStatus.FAILED)),
        )
        .order_by()
    )
    for group in assigned:
        agent_id = group["assigned_agent_id"]
        agent = by_agent.setdefault(
            agent_id,
            {
                "agent": agent_id,
                "name": group["agent_name"],
                **_empty_usage(),
                "tasks": 0,
                "tasks_completed": 0,
                "tasks_failed": 0,
            },
        )
        agent["tasks"] = group["n"]
        agent["tasks_completed"] = group["completed"]
        agent["tasks_failed"] = group["failed"]
    if _window_holds_everything(project=project, window=window):
        _agents_from_rollups(project=project, by_agent=by_agent)
    return {
        "total": total,
        "by_agent": _ranked(by_agent),
        "by_model": _ranked(by_model),
    }


def _window_holds_everything(*, project: Project, window: StatsWindow) -> bool:
    """Whether no task, run or message of the project lies outside the window."""
    if window.until <= timezone.now():
        return False
    return not any(
        model.objects.filter(project=project, created_at__lt=window.since).exists()
        for model in (Task, AgentRun, Message)
    )


def _agents_from_rollups(*, project: Project, by_agent: dict[Any, dict]) -> None:
    """Replace each agent's summed figures by its stored roll-ups."""
    ids = [agent_id for agent_id in by_agent if agent_id is not None]
    for agent in Agent.objects.filter(project=project, pk__in=ids):
        entry = by_agent[agent.pk]
        entry.update(
            messages=agent.messages_count,
            runs=agent.runs_count,
            prompt_tokens=agent.prompt_tokens,
            completion_tokens=agent.completion_tokens,
            cached_tokens=agent.cached_tokens,
            total_tokens=agent.prompt_tokens + agent.completion_tokens,
            cost=Decimal(agent.cost).quantize(ZERO_COST),
            tasks_completed=agent.tasks_completed,
            tasks_failed=agent.tasks_failed,
        )


# API traffic --------------------------------------------------------------


def api_stats(*, project: Project, window: StatsWindow) -> dict[str, Any]:
    """API requests recorded in the audit log: volume and errors by endpoint.

    An endpoint is the route name the request matched, else its path.
    An error is an answer with status 400 or above; 5xx are also counted
    apart as server errors.
    """
    # One group per route and method: few enough to fetch whole, so the
    # totals come from the same scan.
    groups = list(
        AuditLog.objects.filter(
            project=project,
            action=AuditAction.API_REQUEST,
            occurred_at__gte=window.since,
            occurred_at__lt=window.until,
        )
        .values("method", endpoint=_endpoint())
        .annotate(
            requests=Count("pk"),
            errors=Count("pk", filter=Q(status_code__gte=400)),
            server_errors=Count("pk", filter=Q(status_code__gte=500)),
            avg_duration_ms=Avg("duration_ms", output_field=FloatField()),
        )
        .order_by("-requests", "endpoint", "method")
    )
    totals = {
        name: sum(g[name] for g in groups)
        for name in ("requests", "errors", "server_errors")
    }
    for group in groups:
        group["error_rate"] = _rate(group["errors"], group["requests"])
        if group["avg_duration_ms"] is not None:
            group["avg_duration_ms"] = round(group["avg_duration_ms"], 3)
    return {
        **totals,
        "error_rate": _rate(totals["errors"], totals["requests"]),
        "by_endpoint": groups[: settings.STATS_MAX_GROUPS],
    }


def _endpoint() -> Case:
    # audit.middleware records the route name (`tasks:task-list`) as the
    # target, so ids in paths do not split an endpoint into many.
    return Case(When(target="", then=F("path")), default=F("target"))


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


# All together -------------------------------------------------------------


def project_stats(*, project: Project, window: StatsWindow) -> dict[str, Any]:
    """Every figure of `GET /api/v1/stats/` for one project and window."""
    usage = usage_stats(project=project, window=window)
    return {
        "window": {"since": window.since, "until": window.until},
        "tasks": task_stats(project=project, window=window),
        "usage": usage["total"],
        "by_agent": usage["by_agent"],
        "by_model": usage["by_model"],
        "api": api_stats(project=project, window=window),
    }
