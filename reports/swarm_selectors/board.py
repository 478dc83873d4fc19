"""Reads of the board page: the project, its board and the event feed."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.db.models.functions import Left
from django.utils import timezone

from audit.selectors import event_latest_position, event_stream_page
from reports.swarm_selectors.shapes import (
    AGENT_FIELDS,
    AGENT_ROLLUPS,
    BOARD_COLUMN_SIZE,
    BOARD_FAILED_WINDOW,
    BOARD_ROOTS,
    FEED_PAGE,
    MAX_AGENTS,
    OPEN_STATUSES,
    TASK_FIELDS,
    TEXT_CHARS,
    agent_row,
    capped,
    event_row,
    project_row,
    task_row,
)
from swarmsite.errors import NotFound
from swarmsite.models import DEFAULT_PROJECT_SLUG, Project
from tasks.models import Agent, Task, TaskDependency, TaskStatus


def swarm_project(*, slug: str | None) -> Project:
    """The project a swarm page shows: `slug`, or the default project."""
    project = Project.objects.filter(slug=slug or DEFAULT_PROJECT_SLUG).first()
    if project is None:
        raise NotFound(f"No project {slug or DEFAULT_PROJECT_SLUG!r}.")
    return project


def swarm_projects() -> list[dict[str, Any]]:
    """Projects to switch between, by slug (at most 100)."""
    return list(Project.objects.order_by("slug").values("slug", "name")[:100])


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
        return capped([task_row(r) for r in rows], BOARD_COLUMN_SIZE)

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
        agent_row(a) | {name: a[name] for name in AGENT_ROLLUPS}
        for a in Agent.objects.filter(project=project)
        .order_by("name")
        .values(*AGENT_FIELDS, *AGENT_ROLLUPS)[:MAX_AGENTS]
    ]
    return {
        "project": project_row(project),
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


def swarm_event_feed(*, project: Project, after: int) -> dict[str, Any]:
    """Events after `after`, for pages that cannot use the WebSocket stream."""
    events, reached = event_stream_page(
        project_id=project.pk, after=after, limit=FEED_PAGE
    )
    return {"events": [event_row(e) for e in events], "position": reached}
