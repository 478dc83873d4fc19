"""The swarm view: staff pages beside the admin that watch a project live.

`/admin/swarm/` is the board, `/admin/swarm/tasks/<id>/` one task as a
picture. Each page loads one JSON snapshot (`.../snapshot/`), then follows
the event stream after the snapshot's position and patches itself. The
pages hold no rules: the snapshots come from `reports.swarm_selectors`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import require_GET

from reports.swarm_selectors import (
    swarm_board,
    swarm_event_feed,
    swarm_project,
    swarm_projects,
    swarm_task_head,
    swarm_task_snapshot,
)
from swarmsite.errors import NotFound
from swarmsite.models import DEFAULT_PROJECT_SLUG, Project

# The stream accepts a staff session for the default project only
# (docs/streams.md); other projects' pages read the same events over HTTP.
POLL_MILLISECONDS = 1000


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def staff_json(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """Staff only, answered in the API's error shape instead of a redirect."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> JsonResponse:
        user = request.user
        if not user.is_authenticated:
            return _error(401, "not_authenticated", "Log in to the admin first.")
        if not (user.is_active and user.is_staff):
            return _error(403, "permission_denied", "Staff members only.")
        try:
            return view(request, *args, **kwargs)
        except NotFound as exc:
            return _error(404, "not_found", str(exc))

    return wrapped


def _json(data: dict) -> JsonResponse:
    return JsonResponse(data, encoder=DjangoJSONEncoder)


def _project_or_404(request: HttpRequest) -> Project:
    try:
        return swarm_project(slug=request.GET.get("project"))
    except NotFound as exc:
        raise Http404(str(exc)) from exc


def _feed_config(project: Project, snapshot_url: str) -> dict:
    """What the page's script needs to load and follow."""
    return {
        "snapshot_url": snapshot_url,
        "stream": project.slug == DEFAULT_PROJECT_SLUG,
        "feed_url": reverse("swarm-feed") + f"?project={project.slug}",
        "poll_ms": POLL_MILLISECONDS,
        "board_url": reverse("swarm-board"),
        "task_url": reverse("swarm-task", args=[uuid.UUID(int=0)]),
        "admin_task_url": reverse("admin:tasks_task_change", args=[uuid.UUID(int=0)]),
        "admin_agent_url": reverse("admin:tasks_agent_change", args=[uuid.UUID(int=0)]),
        "admin_conversation_url": reverse(
            "admin:conversations_conversation_change", args=[uuid.UUID(int=0)]
        ),
        "project": project.slug,
    }


@never_cache
@staff_member_required
@require_GET
def swarm_board_page(request: HttpRequest) -> HttpResponse:
    """`/admin/swarm/?project=<slug>`: the live board of a project."""
    project = _project_or_404(request)
    snapshot_url = reverse("swarm-board-snapshot") + f"?project={project.slug}"
    context = {
        **admin.site.each_context(request),
        "title": "Swarm",
        "project": project,
        "projects": swarm_projects(),
        "config": _feed_config(project, snapshot_url),
    }
    return render(request, "reports/swarm/board.html", context)


@never_cache
@staff_member_required
@require_GET
def swarm_task_page(request: HttpRequest, task_id: uuid.UUID) -> HttpResponse:
    """`/admin/swarm/tasks/<id>/`: one task, its subtasks and agents, live."""
    try:
        task = swarm_task_head(task_id=task_id)
    except NotFound as exc:
        raise Http404(str(exc)) from exc
    snapshot_url = reverse("swarm-task-snapshot", args=[task.pk])
    context = {
        **admin.site.each_context(request),
        "title": task.title,
        "task": task,
        "project": task.project,
        "config": _feed_config(task.project, snapshot_url) | {"task": str(task.pk)},
    }
    return render(request, "reports/swarm/task.html", context)


@never_cache
@gzip_page
@require_GET
@staff_json
def swarm_board_snapshot(request: HttpRequest) -> JsonResponse:
    """The board's data: `reports.swarm_selectors.swarm_board`."""
    project = swarm_project(slug=request.GET.get("project"))
    return _json(swarm_board(project=project))


@never_cache
@gzip_page
@require_GET
@staff_json
def swarm_task_snapshot_data(request: HttpRequest, task_id: uuid.UUID) -> JsonResponse:
    """One task's picture: `reports.swarm_selectors.swarm_task_snapshot`."""
    return _json(swarm_task_snapshot(task_id=task_id))


@never_cache
@require_GET
@staff_json
def swarm_feed(request: HttpRequest) -> JsonResponse:
    """`?project=&after=`: the events a staff session cannot stream."""
    project = swarm_project(slug=request.GET.get("project"))
    try:
        after = int(request.GET.get("after", ""))
    except ValueError:
        after = -1
    if after < 0:
        return JsonResponse(
            {
                "error": {
                    "code": "invalid",
                    "message": "after: must be a position, 0 or more.",
                    "fields": {"after": ["Must be a position, 0 or more."]},
                }
            },
            status=400,
        )
    return _json(swarm_event_feed(project=project, after=after))
