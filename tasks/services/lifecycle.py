"""A task's lifecycle: transitions (one or many), retry and progress."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from audit.journal import journaled
from audit.models import AuditAction, EventKind
from audit.services import (
    SYSTEM,
    Actor,
    audit_event_record,
    audit_events_record,
    audit_logs_record,
    audit_operations_applied,
)
from swarmsite.errors import (
    Conflict,
    IdempotencyConflict,
    IllegalTransition,
    NotFound,
    ValidationError,
    VersionConflict,
)
from swarmsite.models import Project
from swarmsite.validation import json_check, parse_uuid
from tasks.models import TASK_TRANSITIONS, TERMINAL_STATUSES, Task, TaskStatus
from tasks.services.rollups import tasks_status_moved

TRANSITION_KEYS = frozenset(
    {
        "task",
        "status",
        "expected_version",
        "result",
        "result_summary",
        "error",
        "operation_id",
    }
)


def whole_number(value: Any, *, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError({field: "Must be a whole number."})
    return value


def task_locked(task: Task) -> Task:
    """`task` reloaded, its row locked until commit (a replay waits here)."""
    if not Task.objects.select_for_update().filter(pk=task.pk).exists():
        raise NotFound(f"Task {task.pk} does not exist.")
    task.refresh_from_db()
    return task


def task_replayed(task: Task, operation_id: uuid.UUID | None, *kinds: str) -> bool:
    """Whether this operation was applied before; marks `task.replayed`."""
    task.replayed = audit_operations_applied(
        project_id=task.project_id,
        operations=[(operation_id, kinds, ("task", str(task.pk)))],
    )[0]
    return task.replayed


def _checked(spec: dict[str, Any]) -> dict[str, Any]:
    unknown = set(spec) - TRANSITION_KEYS
    if unknown:
        raise ValidationError(dict.fromkeys(sorted(unknown), "Unknown field."))
    if spec.get("status") not in TaskStatus.values:
        raise ValidationError(
            {"status": f"Choose from {', '.join(TaskStatus.values)}."}
        )
    if spec.get("expected_version") is not None:
        whole_number(spec["expected_version"], field="expected_version")
    if spec.get("result") is not None:
        json_check(spec["result"], field="result")
    return spec | {"operation_id": parse_uuid(spec.get("operation_id"), field="id")}


def _locked_tasks(project_id: int, specs: list[dict[str, Any]]) -> dict[Any, Task]:
    """The tasks the items name, locked in key order with one query.

    A task passed as an instance is that instance, reloaded.
    """
    named: dict[uuid.UUID, Any] = {}
    for spec in specs:
        value = spec["task"]
        pk = value.pk if isinstance(value, Task) else parse_uuid(value, field="task")
        named.setdefault(pk, value)
    rows = {
        t.pk: t
        for t in Task.objects.select_for_update()
        .filter(project_id=project_id, pk__in=named)
        .order_by("pk")
    }
    tasks: dict[Any, Task] = {}
    for pk, value in named.items():
        row = rows.get(pk)
        if row is None and isinstance(value, Task):
            raise NotFound(f"Task {pk} does not exist.")
        if row is None:
            raise ValidationError({"task": f"No task {value} in this project."})
        if isinstance(value, Task):
            for f in Task._meta.concrete_fields:
                setattr(value, f.attname, getattr(row, f.attname))
            row = value
        tasks[pk] = row
    return tasks


def _move(task: Task, spec: dict[str, Any], now: Any) -> dict[str, Any]:
    """The columns one transition sets; raises when it is not allowed now."""
    status = spec["status"]
    expected = spec.get("expected_version")
    if expected is not None and expected != task.version:
        raise VersionConflict(expected=expected, actual=task.version)
    if status not in TASK_TRANSITIONS[task.status]:
        raise IllegalTransition(current=task.status, requested=status)
    values: dict[str, Any] = {"status": status, "updated_at": now}
    if status == TaskStatus.RUNNING:
        # The stored value, not the caller's copy: a retry keeps the first start.
        values["started_at"] = task.started_at or now
    if status in TERMINAL_STATUSES:
        values["completed_at"] = now
    if status == TaskStatus.COMPLETED:
        values["progress"] = 100
    if status == TaskStatus.QUEUED and task.status in TERMINAL_STATUSES:
        values.update(completed_at=None, error="")
    if task.status == TaskStatus.RUNNING:
        values["lease_expires_at"] = None
    for name in ("result", "result_summary", "error"):
        if spec.get(name) is not None:
            values[name] = spec[name]
    return values


def _same(value: Any) -> Any:
    # Equal values of one type store the same; others (JSON results, and
    # 1 == True == 1.0) only ever share a statement with themselves.
    if value is None or type(value) is int or isinstance(value, str | datetime):
        return (type(value), value)
    return id(value)


def _grouped(
    changed: dict[uuid.UUID, dict[str, Any]],
) -> dict[tuple[Any, int], tuple[dict[str, Any], list[uuid.UUID]]]:
    """The rows of `changed` that get the same columns, in key order."""
    groups: dict[tuple[Any, int], tuple[dict[str, Any], list[uuid.UUID]]] = {}
    for pk in sorted(changed, key=str):
        columns = dict(changed[pk])
        count = columns.pop("version")
        key = tuple((name, _same(value)) for name, value in sorted(columns.items()))
        groups.setdefault((key, count), (columns, []))[1].append(pk)
    return groups


@journaled()
def _transitions_apply(
    *, project_id: int, transitions: list[dict[str, Any]], actor: Actor
) -> list[tuple[Task, bool]]:
    specs = [_checked(spec) for spec in transitions]
    tasks = _locked_tasks(project_id, specs)
    pk_of = [
        s["task"].pk if isinstance(s["task"], Task) else parse_uuid(s["task"])
        for s in specs
    ]
    applied = audit_operations_applied(
        project_id=project_id,
        operations=[
            (s["operation_id"], (EventKind.TASK_STATUS_CHANGED,), ("task", str(pk)))
            for s, pk in zip(specs, pk_of, strict=True)
        ],
    )
    now = timezone.now()
    results: list[tuple[Task, bool]] = []
    changed: dict[uuid.UUID, dict[str, Any]] = {}
    moves, events, entries = [], [], []
    seen: dict[uuid.UUID, uuid.UUID] = {}
    for spec, pk, replayed in zip(specs, pk_of, applied, strict=True):
        task, operation_id = tasks[pk], spec["operation_id"]
        if operation_id is not None and operation_id in seen:
            # Applied by an earlier item of this call.
            replayed = True
            if seen[operation_id] != pk:
                raise IdempotencyConflict(
                    f"The operation id {operation_id} was used for another write."
                )
        if replayed:
            results.append((task, True))
            continue
        values = _move(task, spec, now)
        before = task.status
        for name, value in values.items():
            setattr(task, name, value)
        task.version += 1
        columns = changed.setdefault(pk, {"version": 0})
        columns.update(values)
        columns["version"] += 1
        if operation_id is not None:
            seen[operation_id] = pk
        moves.append((task.workflow_id, task.assigned_agent_id, before, task.status))
        payload = {
            "task": str(pk),
            "from": before,
            "to": task.status,
            "version": task.version,
        }
        if spec.get("result_summary"):
            payload["result_summary"] = spec["result_summary"]
        if spec.get("error"):
            payload["error"] = spec["error"]
        events.append(
            {
                "kind": EventKind.TASK_STATUS_CHANGED,
                "task_id": pk,
                "payload": payload,
                "occurred_at": now,
                "uuid": operation_id,
            }
        )
        entries.append(
            {
                "action": AuditAction.TASK_STATUS_CHANGED,
                "obj": task,
                "changes": {"status": [before, task.status]},
            }
        )
        results.append((task, False))
    # One UPDATE per distinct set of values; the rows are locked already.
    for (_key, count), (columns, pks) in _grouped(changed).items():
        Task.objects.filter(pk__in=pks).update(**columns, version=F("version") + count)
    tasks_status_moved(moves)
    if events:
        audit_events_record(project_id=project_id, events=events, actor=actor)
        audit_logs_record(project_id=project_id, entries=entries, actor=actor)
    return results


def task_transition_many(
    *,
    project: Project,
    transitions: list[dict[str, Any]],
    actor: Actor = SYSTEM,
) -> list[tuple[Task, bool]]:
    """Move tasks of `project` along their lifecycle in order; (task, replayed) each.

    Each item takes task_transition's arguments, `task` being a task or its
    id. The tasks are locked in key order with one query, and each item is
    judged on the state the items before it left. Raises on the first bad
    item, having changed nothing.
    """
    return _transitions_apply(
        project_id=project.pk, transitions=transitions, actor=actor
    )


def task_transition(
    *,
    task: Task,
    status: str,
    expected_version: int | None = None,
    result: Any = None,
    result_summary: str | None = None,
    error: str | None = None,
    operation_id: uuid.UUID | str | None = None,
    actor: Actor = SYSTEM,
) -> Task:
    """Move a task along its lifecycle with the row locked.

    The row is locked and updated only from the state read under the lock:
    of several concurrent conflicting transitions exactly one wins, the
    others raise IllegalTransition or VersionConflict and change nothing. A
    repeated `operation_id` changes nothing, whatever happened since, and
    sets `task.replayed`.
    """
    spec = {
        "task": task,
        "status": status,
        "expected_version": expected_version,
        "result": result,
        "result_summary": result_summary,
        "error": error,
        "operation_id": operation_id,
    }
    ((stored, replayed),) = _transitions_apply(
        project_id=task.project_id, transitions=[spec], actor=actor
    )
    stored.replayed = replayed
    return stored


def task_retry(
    *,
    task: Task,
    expected_version: int | None = None,
    operation_id: uuid.UUID | str | None = None,
    actor: Actor = SYSTEM,
) -> Task:
    """Queue a failed or cancelled task again (`queued`)."""
    with transaction.atomic():
        stored = task_locked(task)
        operation_id = parse_uuid(operation_id, field="id")
        if task_replayed(stored, operation_id, EventKind.TASK_STATUS_CHANGED):
            return stored
        if stored.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            raise Conflict(
                "Only failed or cancelled tasks can be retried; "
                f"this one is {stored.status}."
            )
        return task_transition(
            task=stored,
            status=TaskStatus.QUEUED,
            expected_version=expected_version,
            operation_id=operation_id,
            actor=actor,
        )


@journaled()
def task_progress_set(
    *,
    task: Task,
    progress: int,
    operation_id: uuid.UUID | str | None = None,
    actor: Actor = SYSTEM,
) -> Task:
    """Set an unfinished task's progress (0-100); does not bump its version.

    A repeated `operation_id` changes nothing and sets `task.replayed`.
    """
    if (
        isinstance(progress, bool)
        or not isinstance(progress, int)
        or not 0 <= progress <= 100
    ):
        raise ValidationError({"progress": "Must be a whole number from 0 to 100."})
    operation_id = parse_uuid(operation_id, field="id")
    stored = task_locked(task)
    if task_replayed(stored, operation_id, EventKind.TASK_PROGRESS):
        return stored
    if stored.status in TERMINAL_STATUSES:
        raise Conflict(
            f"The task is {stored.status}; its progress can no longer change."
        )
    now = timezone.now()
    Task.objects.filter(pk=task.pk).update(progress=progress, updated_at=now)
    previous = stored.progress
    stored.progress, stored.updated_at = progress, now
    audit_event_record(
        project_id=stored.project_id,
        kind=EventKind.TASK_PROGRESS,
        actor=actor,
        task_id=stored.pk,
        payload={"task": str(stored.pk), "progress": progress, "previous": previous},
        occurred_at=now,
        event_id=operation_id,
    )
    return stored
