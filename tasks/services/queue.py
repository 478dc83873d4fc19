"""The work queue: claims with leases, lease heartbeats, expiry.

A claim takes the best claimable task of a project (status `queued`, every
dependency `completed`; highest priority, then oldest) and makes it
`running` for the claiming agent until `lease_expires_at`. On PostgreSQL the
candidate row is locked with `FOR UPDATE SKIP LOCKED`, so concurrent
claimers each take a different task without waiting on one another; on
SQLite the writer lock (transactions begin IMMEDIATE) serialises them.

A claim records `task.status_changed` (`from` queued, `to` running) with
`claim: true`, the agent, the lease and the attempt. A lease that runs out
sends the task back to `queued` (`task.lease_expired`): on the next claim in
its project, or when `sweep_leases` runs. That is the only way from running
back to queued.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from audit.journal import journaled
from audit.models import AuditAction, Event, EventKind
from audit.services import (
    SYSTEM,
    Actor,
    audit_event_record,
    audit_events_record,
    audit_log_record,
    audit_logs_record,
    audit_operation_applied,
)
from swarmsite.errors import Conflict, NotFound, ValidationError
from swarmsite.models import Project
from swarmsite.validation import parse_uuid, resolve
from tasks.models import Agent, Task, TaskStatus, Workflow
from tasks.selectors import blocked_expression
from tasks.services.rollups import agent_active, task_status_moved

LEASE_DEFAULT_SECONDS = 300
LEASE_MAX_SECONDS = 86_400
# Expired leases returned per claim; the sweep takes the rest.
EXPIRE_BATCH = 100


def _lease(seconds: Any) -> timedelta:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int)
        or not 1 <= seconds <= LEASE_MAX_SECONDS
    ):
        raise ValidationError(
            {"lease_seconds": f"A whole number from 1 to {LEASE_MAX_SECONDS}."}
        )
    return timedelta(seconds=seconds)


@journaled()
def task_leases_expire(
    *,
    project: Project,
    now: datetime | None = None,
    limit: int | None = EXPIRE_BATCH,
    actor: Actor = SYSTEM,
) -> list[Task]:
    """Send running tasks of `project` whose lease ran out back to `queued`.

    Rows another transaction holds (a heartbeat, a transition) are skipped:
    that transaction decides them. Returns the tasks requeued.
    """
    return _expire(project=project, now=now or timezone.now(), limit=limit, actor=actor)


def _expire(
    *, project: Project, now: datetime, limit: int | None, actor: Actor
) -> list[Task]:
    expired = (
        Task.objects.select_for_update(skip_locked=True)
        .filter(project=project, status=TaskStatus.RUNNING, lease_expires_at__lt=now)
        .order_by("lease_expires_at", "id")
        .only(
            "id",
            "title",
            "project_id",
            "status",
            "version",
            "workflow_id",
            "assigned_agent_id",
            "lease_expires_at",
            "attempts",
        )
    )
    rows = list(expired[:limit] if limit else expired)
    if not rows:
        return []
    Task.objects.filter(pk__in=[t.pk for t in rows]).update(
        status=TaskStatus.QUEUED,
        lease_expires_at=None,
        version=F("version") + 1,
        updated_at=now,
    )
    events, entries = [], []
    for task in rows:
        task_status_moved(
            workflow_id=task.workflow_id,
            agent_id=task.assigned_agent_id,
            before=TaskStatus.RUNNING,
            after=TaskStatus.QUEUED,
        )
        events.append(
            {
                "kind": EventKind.TASK_LEASE_EXPIRED,
                "task_id": task.pk,
                "occurred_at": now,
                "payload": {
                    "task": str(task.pk),
                    "from": TaskStatus.RUNNING,
                    "to": TaskStatus.QUEUED,
                    "version": task.version + 1,
                    "agent": str(task.assigned_agent_id)
                    if task.assigned_agent_id
                    else None,
                    "lease_expires_at": task.lease_expires_at.isoformat(),
                    "attempts": task.attempts,
                },
            }
        )
        task.status, task.version = TaskStatus.QUEUED, task.version + 1
        task.lease_expires_at = None
        entries.append(
            {
                "action": AuditAction.TASK_STATUS_CHANGED,
                "obj": task,
                "changes": {"status": [TaskStatus.RUNNING, TaskStatus.QUEUED]},
                "details": {"reason": "lease expired"},
            }
        )
    audit_events_record(project_id=project.pk, events=events, actor=actor)
    audit_logs_record(project_id=project.pk, entries=entries, actor=actor)
    return rows


def task_leases_sweep(*, now: datetime | None = None, actor: Actor = SYSTEM) -> int:
    """Expire every run-out lease of every project; how many tasks went back."""
    now = now or timezone.now()
    total = 0
    projects = Project.objects.filter(
        pk__in=Task.objects.filter(
            status=TaskStatus.RUNNING, lease_expires_at__lt=now
        ).values("project_id")
    )
    for project in projects:
        while True:
            done = task_leases_expire(project=project, now=now, actor=actor)
            total += len(done)
            if len(done) < EXPIRE_BATCH:
                break
    return total


def _claimed_before(
    *, project: Project, agent: Agent, operation_id: uuid.UUID | None
) -> Task | None:
    """The task an earlier claim with this operation id took, if any."""
    if not audit_operation_applied(
        project_id=project.pk,
        operation_id=operation_id,
        kinds=(EventKind.TASK_STATUS_CHANGED,),
        subject=("agent", str(agent.pk)),
    ):
        return None
    task_id = (
        Event.objects.filter(uuid=operation_id)
        .values_list("task_id", flat=True)
        .first()
    )
    task = Task.objects.filter(pk=task_id).first()
    if task is None:
        raise NotFound(f"The task claimed by operation {operation_id} is gone.")
    task.replayed = True
    return task


@journaled()
def task_claim(
    *,
    project: Project,
    agent: Agent | uuid.UUID | str,
    workflow: Workflow | uuid.UUID | str | None = None,
    session_id: str | None = None,
    lease_seconds: int = LEASE_DEFAULT_SECONDS,
    operation_id: uuid.UUID | str | None = None,
    actor: Actor = SYSTEM,
) -> Task | None:
    """Take the best claimable task for `agent`; None when there is none.

    Claimable: `queued` with every dependency `completed` (and in `workflow`
    / `session_id` when given); best: highest priority, then oldest. The
    task becomes `running`, assigned to the agent, with `attempts` + 1 and a
    lease of `lease_seconds`. Run-out leases of the project are expired
    first. A repeated `operation_id` returns the task that claim took
    (`task.replayed`) and claims nothing.
    """
    if agent is None or agent == "":
        raise ValidationError({"agent": "This field is required."})
    agent = resolve(Agent, project=project, field="agent", value=agent)
    workflow = resolve(Workflow, project=project, field="workflow", value=workflow)
    lease = _lease(lease_seconds)
    operation_id = parse_uuid(operation_id, field="id")
    if operation_id is not None:
        # Same-id retries wait here for the first to commit, then find it.
        list(
            Agent.objects.select_for_update(no_key=True)
            .filter(pk=agent.pk)
            .values("pk")
        )
        replayed = _claimed_before(
            project=project, agent=agent, operation_id=operation_id
        )
        if replayed is not None:
            return replayed
    now = timezone.now()
    _expire(project=project, now=now, limit=EXPIRE_BATCH, actor=actor)

    candidates = Task.objects.filter(project=project, status=TaskStatus.QUEUED)
    if workflow is not None:
        candidates = candidates.filter(workflow=workflow)
    if session_id:
        candidates = candidates.filter(session_id=session_id)
    picked = list(
        candidates.filter(~blocked_expression())
        .order_by("-priority", "created_at", "id")
        .select_for_update(skip_locked=True)
        .values_list("pk", "workflow_id", "assigned_agent_id")[:1]
    )
    if not picked:
        return None
    pk, workflow_id, previous_agent = picked[0]
    expires = now + lease
    Task.objects.filter(pk=pk).update(
        status=TaskStatus.RUNNING,
        assigned_agent=agent,
        lease_expires_at=expires,
        attempts=F("attempts") + 1,
        version=F("version") + 1,
        started_at=Coalesce(F("started_at"), now),
        updated_at=now,
    )
    Task.agents.through.objects.bulk_create(
        [Task.agents.through(task_id=pk, agent_id=agent.pk)], ignore_conflicts=True
    )
    task_status_moved(
        workflow_id=workflow_id,
        agent_id=agent.pk,
        before=TaskStatus.QUEUED,
        after=TaskStatus.RUNNING,
    )
    agent_active(agent.pk, now)
    task = Task.objects.get(pk=pk)
    audit_event_record(
        project_id=project.pk,
        kind=EventKind.TASK_STATUS_CHANGED,
        actor=actor,
        task_id=pk,
        payload={
            "task": str(pk),
            "from": TaskStatus.QUEUED,
            "to": TaskStatus.RUNNING,
            "version": task.version,
            "claim": True,
            "agent": str(agent.pk),
            "lease_expires_at": expires.isoformat(),
            "attempt": task.attempts,
        },
        occurred_at=now,
        event_id=operation_id,
    )
    changes: dict[str, list] = {"status": [TaskStatus.QUEUED, TaskStatus.RUNNING]}
    if previous_agent != agent.pk:
        changes["assigned_agent"] = [
            str(previous_agent) if previous_agent else None,
            str(agent.pk),
        ]
    audit_log_record(
        project_id=project.pk,
        action=AuditAction.TASK_STATUS_CHANGED,
        actor=actor,
        obj=task,
        changes=changes,
        details={"claim": True, "attempt": task.attempts},
    )
    task.replayed = False
    return task


@journaled()
def task_lease_extend(
    *,
    task: Task,
    lease_seconds: int = LEASE_DEFAULT_SECONDS,
    agent: Agent | uuid.UUID | str | None = None,
    operation_id: uuid.UUID | str | None = None,
    actor: Actor = SYSTEM,
) -> Task:
    """Extend the lease of a running task to `lease_seconds` from now.

    Refused (409) once the task is no longer running, or, when `agent` is
    given, no longer assigned to that agent: the claimer lost it. A
    repeated `operation_id` changes nothing and sets `task.replayed`.
    """
    lease = _lease(lease_seconds)
    operation_id = parse_uuid(operation_id, field="id")
    if not Task.objects.select_for_update().filter(pk=task.pk).exists():
        raise NotFound(f"Task {task.pk} does not exist.")
    task.refresh_from_db()
    task.replayed = audit_operation_applied(
        project_id=task.project_id,
        operation_id=operation_id,
        kinds=(EventKind.TASK_LEASE_EXTENDED,),
        subject=("task", str(task.pk)),
    )
    if task.replayed:
        return task
    if agent is not None and agent != "":
        agent = resolve(Agent, project=task.project, field="agent", value=agent)
        if task.assigned_agent_id != agent.pk:
            raise Conflict(f"Task {task.pk} is no longer assigned to agent {agent.pk}.")
    if task.status != TaskStatus.RUNNING:
        raise Conflict(
            f"Task {task.pk} is {task.status}: only a running task's lease "
            "can be extended."
        )
    now = timezone.now()
    expires = now + lease
    Task.objects.filter(pk=task.pk).update(lease_expires_at=expires, updated_at=now)
    task.lease_expires_at, task.updated_at = expires, now
    agent_active(task.assigned_agent_id, now)
    audit_event_record(
        project_id=task.project_id,
        kind=EventKind.TASK_LEASE_EXTENDED,
        actor=actor,
        task_id=task.pk,
        payload={
            "task": str(task.pk),
            "agent": str(task.assigned_agent_id) if task.assigned_agent_id else None,
            "lease_expires_at": expires.isoformat(),
        },
        occurred_at=now,
        event_id=operation_id,
    )
    return task


__all__ = [
    "LEASE_DEFAULT_SECONDS",
    "LEASE_MAX_SECONDS",
    "blocked_expression",
    "task_claim",
    "task_lease_extend",
    "task_leases_expire",
    "task_leases_sweep",
]
