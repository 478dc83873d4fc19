"""Writes to workflows."""

from __future__ import annotations

import uuid

from audit.journal import race_safe
from audit.models import EventKind
from audit.services import SYSTEM, Actor, audit_event_record
from swarmsite.errors import IdempotencyConflict
from swarmsite.models import Project
from swarmsite.validation import clean_fields, json_object, parse_uuid
from tasks.models import Workflow


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
    """Create a workflow by name; an existing name returns that workflow."""
    existing = Workflow.objects.filter(project=project, name=name).first()
    if existing is not None:
        return existing, False
    workflow = Workflow(
        id=parse_uuid(workflow_id) or uuid.uuid4(),
        project=project,
        name=name,
        description=description,
        metadata=json_object(metadata, field="metadata"),
    )
    clean_fields(workflow)
    if Workflow.objects.filter(pk=workflow.pk).exists():
        raise IdempotencyConflict(
            f"A workflow with id {workflow.pk} exists under another name."
        )
    workflow.save(force_insert=True)
    audit_event_record(
        project_id=project.pk,
        kind=EventKind.WORKFLOW_CREATED,
        actor=actor,
        payload={"workflow": str(workflow.pk), "name": name},
    )
    return workflow, True
