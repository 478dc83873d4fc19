"""Writes to workflows: create, update, cancel.

A workflow's roll-ups (tasks by status, tokens, cost) are kept by the task
and usage services (`tasks.services.rollups`); its status is derived from
the counts (`tasks.models.workflow_status`).
"""

from __future__ import annotations

import uuid
from typing import Any

from audit.journal import journaled, race_safe
from audit.models import EventKind
from audit.services import SYSTEM, Actor, audit_event_record, audit_operation_applied
from swarmsite.errors import IdempotencyConflict, ValidationError
from swarmsite.models import Project
from swarmsite.validation import (
    body_digest,
    check_replay,
    clean_fields,
    json_object,
    parse_uuid,
)
from tasks.models import TERMINAL_STATUSES, Task, TaskStatus, Workflow
from tasks.services.lifecycle import task_transition

WORKFLOW_UPDATABLE_FIELDS = ("name", "description", "metadata")


def _workflow_snapshot(workflow: Workflow) -> dict[str, Any]:
    return {
        "name": workflow.name,
        "description": workflow.description,
        "metadata": workflow.metadata,
    }


@race_safe
def workflow_create(
    *,
    project: Project,
    name: str,
    description: str = "",
    metadata: dict | None = None,
    workflow_id: uuid.UUID | str | None = None,
    actor: Actor = SYSTEM,
) -> tuple[Workflow, bool]:
    """Create a workflow; returns `(workflow, created)`.

    With an `id` that exists, the body is judged against the one that
    created it (same: that workflow; else 409). Otherwise an existing name
    returns that workflow, as agents do.
    """
    pk = parse_uuid(workflow_id, field="id")
    workflow = Workflow(
        id=pk or uuid.uuid4(),
        project=project,
        name=name,
        description=description,
        metadata=json_object(metadata, field="metadata"),
    )
    clean_fields(workflow)
    snapshot = _workflow_snapshot(workflow)
    if pk is not None:
        stored = Workflow.objects.filter(pk=pk).first()
        if stored is not None:
            if stored.project_id != project.pk:
                raise IdempotencyConflict(f"The id {pk} is taken.")
            check_replay(
                stored_digest=stored.create_digest,
                stored=_workflow_snapshot(stored),
                supplied=snapshot,
                what="workflow",
            )
            return stored, False
    existing = Workflow.objects.filter(project=project, name=name).first()
    if existing is not None:
        # Idempotent by name, as agents are: a new id for a known name
        # answers the stored workflow.
        return existing, False
    workflow.create_digest = body_digest(snapshot)
    workflow.save(force_insert=True)
    audit_event_record(
        project_id=project.pk,
        kind=EventKind.WORKFLOW_CREATED,
        actor=actor,
        payload={"workflow": str(workflow.pk), **snapshot},
    )
    return workflow, True


def _locked(workflow: Workflow) -> Workflow:
    return Workflow.objects.select_for_update().get(pk=workflow.pk)


@journaled()
def workflow_update(
    *,
    workflow: Workflow,
    operation_id: uuid.UUID | str | None = None,
    actor: Actor = SYSTEM,
    **fields: Any,
) -> Workflow:
    """Change a workflow's name, description or metadata.

    A repeated `operation_id` changes nothing and sets `workflow.replayed`.
    """
    unknown = set(fields) - set(WORKFLOW_UPDATABLE_FIELDS)
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be changed."))
    operation_id = parse_uuid(operation_id, field="id")
    workflow = _locked(workflow)
    workflow.replayed = audit_operation_applied(
        project_id=workflow.project_id,
        operation_id=operation_id,
        kinds=(EventKind.WORKFLOW_UPDATED,),
        subject=("workflow", str(workflow.pk)),
    )
    if workflow.replayed:
        return workflow
    if "metadata" in fields:
        fields["metadata"] = json_object(fields["metadata"], field="metadata")
    before = _workflow_snapshot(workflow)
    for name, value in fields.items():
        setattr(workflow, name, value)
    clean_fields(workflow)
    after = _workflow_snapshot(workflow)
    changes = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
    if not changes and operation_id is None:
        return workflow
    if "name" in changes and (
        Workflow.objects.filter(project_id=workflow.project_id, name=workflow.name)
        .exclude(pk=workflow.pk)
        .exists()
    ):
        raise ValidationError({"name": f"A workflow named {workflow.name} exists."})
    if changes:
        workflow.save(update_fields=[*changes, "updated_at"])
    audit_event_record(
        project_id=workflow.project_id,
        kind=EventKind.WORKFLOW_UPDATED,
        actor=actor,
        payload={"workflow": str(workflow.pk), "changes": changes},
        event_id=operation_id,
    )
    return workflow


@journaled()
def workflow_cancel(
    *,
    workflow: Workflow,
    operation_id: uuid.UUID | str | None = None,
    actor: Actor = SYSTEM,
) -> Workflow:
    """Cancel every unfinished task of the workflow, in one transaction.

    A repeated `operation_id` changes nothing and sets `workflow.replayed`.
    """
    operation_id = parse_uuid(operation_id, field="id")
    # Tasks first, then the workflow: the order of a transition, which locks
    # its task and then updates the workflow's roll-ups.
    unfinished = list(
        Task.objects.select_for_update()
        .filter(workflow=workflow)
        .exclude(status__in=list(TERMINAL_STATUSES))
        .order_by("pk")
    )
    workflow = _locked(workflow)
    workflow.replayed = audit_operation_applied(
        project_id=workflow.project_id,
        operation_id=operation_id,
        kinds=(EventKind.WORKFLOW_CANCELLED,),
        subject=("workflow", str(workflow.pk)),
    )
    if workflow.replayed:
        return workflow
    for task in unfinished:
        task_transition(task=task, status=TaskStatus.CANCELLED, actor=actor)
    audit_event_record(
        project_id=workflow.project_id,
        kind=EventKind.WORKFLOW_CANCELLED,
        actor=actor,
        payload={"workflow": str(workflow.pk), "cancelled": len(unfinished)},
        event_id=operation_id,
    )
    workflow.refresh_from_db()
    workflow.replayed = False
    return workflow
