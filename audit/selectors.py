"""Reads of the event log and audit log shared by the admin, API and streams."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.db.models import QuerySet, Sum

from audit.models import AuditLog, Event, JournalHead
from swarmsite.errors import NotFound
from swarmsite.models import Project


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


def event_written_total() -> int:
    """Events ever appended, all projects: pruning never lowers a head."""
    return JournalHead.objects.aggregate(total=Sum("last_position"))["total"] or 0


def event_stream_page(
    *,
    project_id: int,
    after: int,
    task_ids: Iterable[uuid.UUID] = (),
    conversation_ids: Iterable[uuid.UUID] = (),
    kinds: Iterable[str] = (),
    limit: int = 500,
) -> tuple[list[Event], int]:
    """The next matching events after `after`, and the position they reach.

    The second value is where a reader continues: past events that did not
    match too, so a filtered stream's cursor keeps up with the project.
    """
    # Read the head first: everything up to it has committed, and no event
    # at or below it can appear later.
    latest = event_latest_position(project_id=project_id)
    events = event_list_after(
        project_id=project_id,
        after=after,
        task_ids=task_ids,
        conversation_ids=conversation_ids,
        kinds=kinds,
        limit=limit,
    )
    if len(events) == limit:
        return events, events[-1].position
    reached = max(latest, events[-1].position if events else after, after)
    return events, reached


def event_foreign_object_ids(
    *,
    project_id: int,
    task_ids: Iterable[uuid.UUID] = (),
    conversation_ids: Iterable[uuid.UUID] = (),
) -> set[uuid.UUID]:
    """Task and conversation ids that another project's events name.

    Every task and conversation logs its creation, so an id in another
    project's log belongs to that project. One index probe per project.
    """
    task_ids, conversation_ids = list(task_ids), list(conversation_ids)
    if not task_ids and not conversation_ids:
        return set()
    others = Project.objects.exclude(pk=project_id).values("pk")
    found: set[uuid.UUID] = set()
    if task_ids:
        found.update(
            Event.objects.filter(project_id__in=others, task_id__in=task_ids)
            .values_list("task_id", flat=True)
            .distinct()
        )
    if conversation_ids:
        found.update(
            Event.objects.filter(
                project_id__in=others, conversation_id__in=conversation_ids
            )
            .values_list("conversation_id", flat=True)
            .distinct()
        )
    return found


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


def audit_log_get(*, project_id: int, entry_id: uuid.UUID) -> AuditLog:
    """One audit record of a project by its public id, or NotFound."""
    try:
        entry_uuid = uuid.UUID(str(entry_id))
    except ValueError:
        entry_uuid = None
    entry = (
        AuditLog.objects.filter(project_id=project_id, uuid=entry_uuid).first()
        if entry_uuid is not None
        else None
    )
    if entry is None:
        raise NotFound(f"No audit record {entry_id}.")
    return entry
