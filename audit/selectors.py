"""Reads of the event log and audit log shared by the admin, API and streams."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.db.models import QuerySet

from audit.models import AuditLog, Event


def event_list_after(
    *,
    project_id: int,
    after: int = 0,
    task_ids: Iterable[uuid.UUID] = (),
    conversation_ids: Iterable[uuid.UUID] = (),
    kinds: Iterable[str] = (),
    limit: int = 500,
) -> list[Event]:
    """Events of a project after `after`, in position order, filtered.

    Positions follow commit order with no gap, so "after the last position I
    saw" never skips an event that committed late.
    """
    events = Event.objects.filter(project_id=project_id, position__gt=after)
    task_ids, conversation_ids, kinds = (
        list(task_ids),
        list(conversation_ids),
        list(kinds),
    )
    if task_ids:
        events = events.filter(task_id__in=task_ids)
    if conversation_ids:
        events = events.filter(conversation_id__in=conversation_ids)
    if kinds:
        events = events.filter(kind__in=kinds)
    return list(events.order_by("position")[:limit])


def event_latest_position(*, project_id: int) -> int:
    """The highest committed position of a project, 0 when it has none."""
    last = (
        Event.objects.filter(project_id=project_id)
        .order_by("-position")
        .values_list("position", flat=True)
        .first()
    )
    return last or 0


def event_list_for_task(
    *, project_id: int, task_id: uuid.UUID, limit: int = 20
) -> list[Event]:
    """The latest events that concern a task, newest first (uses its index)."""
    return list(
        Event.objects.filter(project_id=project_id, task_id=task_id).order_by(
            "-position"
        )[:limit]
    )


def audit_log_list(*, project_id: int) -> QuerySet[AuditLog]:
    """A project's audit records, newest first."""
    return AuditLog.objects.filter(project_id=project_id).order_by(
        "-occurred_at", "-id"
    )
