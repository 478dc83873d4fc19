"""The staff page that follows the event stream in the browser."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import get_object_or_404, render

from audit.selectors import event_latest_position
from swarmsite.models import DEFAULT_PROJECT_SLUG, Project

LIVE_BACKLOG = 50


@staff_member_required
def live_events(request):
    """A staff page that follows the default project's stream in the browser."""
    project = get_object_or_404(Project, slug=DEFAULT_PROJECT_SLUG)
    latest = event_latest_position(project_id=project.pk)
    context = {
        **admin.site.each_context(request),
        "title": "Live events",
        "project": project,
        "backlog": LIVE_BACKLOG,
        "after": max(0, latest - LIVE_BACKLOG),
    }
    return render(request, "streams/live_events.html", context)
