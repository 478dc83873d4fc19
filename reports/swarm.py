"""The swarm view: staff pages beside the admin that watch a project live.

`/admin/swarm/` is the board, `/admin/swarm/tasks/<id>/` one task as a
picture. Each page loads one JSON snapshot (`.../snapshot/`), then follows
the event stream after the snapshot's position and patches itself. The
pages hold no rules: the snapshots come from `reports.swarm_selectors`.

The JSON views are async and read on threads of their own: under daphne
every sync view of a process shares one thread, and a page must not wait
behind the static files it loads or the API writes of a busy swarm.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections
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
POLL_MILLISECONDS = 750


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


_readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="swarm-read")


class BadQuery(Exception):
    """A query parameter a JSON view cannot use: answered with a 400."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.response = JsonResponse(
            {
                "error": {
                    "code": "invalid",
                    "message": f"{field}: {message}",
                    "fields": {field: [message]},
                }
            },
            status=400,
        )


def staff_json(read: Callable[..., dict]) -> Callable[..., Any]:
    """An async JSON view of `read(request, ...)`, for staff only.

    Other users get the API's error shape, not a redirect. `read` and the
    JSON encoding run on a reader thread, whose connection is closed after
    each call (handed back to the pool on PostgreSQL).
    """

    def run(request: HttpRequest, *args, **kwargs) -> JsonResponse:
        close_old_connections()
        try:
            return JsonResponse(
                read(request, *args, **kwargs), encoder=DjangoJSONEncoder
            )
        except NotFound as exc:
            return _error(404, "not_found", str(exc))
        except BadQuery as exc:
            return exc.response
        finally:
            close_old_connections()

    reader = sync_to_async(run, thread_sensitive=False, executor=_readers)

    @functools.wraps(read)
    async def view(request: HttpRequest, *args, **kwargs) -> JsonResponse:
        user = await request.auser()
        if not user.is_authenticated:
            return _error(401, "not_authenticated", "Log in to the admin first.")
        if not (user.is_active and user.is_staff):
            return _error(403, "permission_denied", "Staff members only.")
        return await reader(request, *args, **kwargs)

    return view


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
def swarm_board_snapshot(request: HttpRequest) -> dict:
    """The board's data: `reports.swarm_selectors.swarm_board`."""
    project = swarm_project(slug=request.GET.get("project"))
    return swarm_board(project=project)


@never_cache
@gzip_page
@require_GET
@staff_json
def swarm_task_snapshot_data(request: HttpRequest, task_id: uuid.UUID) -> dict:
    """One task's picture: `reports.swarm_selectors.swarm_task_snapshot`."""
    return swarm_task_snapshot(task_id=task_id)


@never_cache
@gzip_page
@require_GET
@staff_json
def swarm_feed(request: HttpRequest) -> dict:
    """`?project=&after=`: the events a staff session cannot stream."""
    project = swarm_project(slug=request.GET.get("project"))
    try:
        after = int(request.GET.get("after", ""))
    except ValueError:
        after = -1
    if after < 0:
        raise BadQuery("after", "Must be a position, 0 or more.")
    return swarm_event_feed(project=project, after=after)
