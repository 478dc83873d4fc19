"""Dependency edges between tasks, kept free of cycles."""

from __future__ import annotations

import uuid

from audit.journal import journaled
from audit.models import EventKind
from audit.services import SYSTEM, Actor, audit_event_record
from swarmsite.errors import DependencyCycle, ValidationError
from swarmsite.models import Project
from swarmsite.validation import resolve
from tasks.models import Task, TaskDependency


def _lock_project_graph(project: Project) -> None:
    # Serialises dependency changes per project: two concurrent edges could
    # otherwise close a cycle that neither transaction sees.
    list(
        Project.objects.select_for_update(no_key=True)
        .filter(pk=project.pk)
        .values("pk")
    )


def _reaches(start: uuid.UUID, target: uuid.UUID) -> bool:
    """Whether `target` is reachable from `start` along depends_on edges."""
    seen = {start}
    frontier = {start}
    while frontier:
        if target in frontier:
            return True
        nxt = set(
            TaskDependency.objects.filter(task_id__in=frontier).values_list(
                "depends_on_id", flat=True
            )
        )
        frontier = nxt - seen
        seen |= nxt
    return False


@journaled()
def task_dependency_add(
    *, task: Task, depends_on: Task | uuid.UUID | str, actor: Actor = SYSTEM
) -> TaskDependency:
    """Make `task` wait for `depends_on`; refuses an edge that closes a cycle.

    An existing edge is returned as is; `edge.created` tells which.
    """
    _lock_project_graph(task.project)
    other = resolve(Task, project=task.project, field="depends_on", value=depends_on)
    if other.pk == task.pk:
        raise ValidationError({"depends_on": "A task cannot depend on itself."})
    existing = TaskDependency.objects.filter(task=task, depends_on=other).first()
    if existing is not None:
        existing.created = False
        return existing
    if _reaches(other.pk, task.pk):
        raise DependencyCycle(f"Task {other.pk} already depends on {task.pk}: a cycle.")
    edge = TaskDependency.objects.create(task=task, depends_on=other)
    edge.created = True
    audit_event_record(
        project_id=task.project_id,
        kind=EventKind.TASK_DEPENDENCY_ADDED,
        actor=actor,
        task_id=task.pk,
        payload={"task": str(task.pk), "depends_on": str(other.pk)},
    )
    return edge


@journaled()
def task_dependency_remove(
    *, task: Task, depends_on: Task | uuid.UUID | str, actor: Actor = SYSTEM
) -> bool:
    """Remove an edge; True when one was removed."""
    other = resolve(Task, project=task.project, field="depends_on", value=depends_on)
    deleted, _ = TaskDependency.objects.filter(task=task, depends_on=other).delete()
    if deleted:
        audit_event_record(
            project_id=task.project_id,
            kind=EventKind.TASK_DEPENDENCY_REMOVED,
            actor=actor,
            task_id=task.pk,
            payload={"task": str(task.pk), "depends_on": str(other.pk)},
        )
    return bool(deleted)


@journaled()
def task_dependencies_add(
    *, task: Task, depends_on: list, actor: Actor = SYSTEM
) -> list[TaskDependency]:
    """Make `task` wait for each of `depends_on`, all or none."""
    if not isinstance(depends_on, list | tuple):
        raise ValidationError({"depends_on": "A list of task ids."})
    return [
        task_dependency_add(task=task, depends_on=other, actor=actor)
        for other in depends_on
    ]
