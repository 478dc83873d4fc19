"""Writes to agents: registration, updates, heartbeats."""

from __future__ import annotations

import uuid
from typing import Any

from django.utils import timezone

from audit.journal import journaled, race_safe
from audit.models import AuditAction, EventKind
from audit.services import (
    SYSTEM,
    Actor,
    audit_event_record,
    audit_log_record,
    audit_operation_applied,
)
from swarmsite.errors import IdempotencyConflict, ValidationError
from swarmsite.models import Project
from swarmsite.validation import (
    clean_fields,
    id_or_none,
    json_list,
    json_object,
    parse_uuid,
    resolve,
)
from tasks.models import Agent, AgentHeartbeat, AgentStatus

AGENT_UPDATABLE_FIELDS = (
    "name",
    "role",
    "model",
    "parent",
    "status",
    "capabilities",
    "config",
    "metadata",
)


def _agent_snapshot(agent: Agent) -> dict[str, Any]:
    return {
        "name": agent.name,
        "role": agent.role,
        "model": agent.model,
        "parent": id_or_none(agent.parent_id),
        "capabilities": agent.capabilities,
        "config": agent.config,
        "metadata": agent.metadata,
    }


def agent_actor(agent: Agent, *, correlation_id: str = "") -> Actor:
    """The audit actor for changes an agent makes."""
    return Actor(
        type="agent", id=str(agent.pk), label=agent.name, correlation_id=correlation_id
    )


@race_safe
def agent_register(
    *,
    project: Project,
    name: str,
    role: str = "",
    model: str = "",
    parent: Agent | uuid.UUID | str | None = None,
    capabilities: list | None = None,
    config: dict | None = None,
    metadata: dict | None = None,
    agent_id: uuid.UUID | str | None = None,
    actor: Actor = SYSTEM,
) -> tuple[Agent, bool]:
    """Register an agent by name; an existing name returns that agent."""
    existing = Agent.objects.filter(project=project, name=name).first()
    if existing is not None:
        return existing, False
    agent = Agent(
        id=parse_uuid(agent_id) or uuid.uuid4(),
        project=project,
        name=name,
        role=role,
        model=model,
        parent=resolve(Agent, project=project, field="parent", value=parent),
        capabilities=json_list(capabilities, field="capabilities"),
        config=json_object(config, field="config"),
        metadata=json_object(metadata, field="metadata"),
    )
    clean_fields(agent)
    if Agent.objects.filter(pk=agent.pk).exists():
        raise IdempotencyConflict(
            f"An agent with id {agent.pk} exists under another name."
        )
    agent.save(force_insert=True)
    audit_event_record(
        project_id=project.pk,
        kind=EventKind.AGENT_REGISTERED,
        actor=actor,
        payload={"agent": str(agent.pk), **_agent_snapshot(agent)},
    )
    audit_log_record(
        project_id=project.pk,
        action=AuditAction.AGENT_REGISTERED,
        actor=actor,
        obj=agent,
    )
    return agent, True


def _check_agent_parent(agent: Agent, parent: Agent | None) -> None:
    seen = {agent.pk}
    node = parent
    while node is not None:
        if node.pk in seen:
            raise ValidationError({"parent": "An agent cannot be its own ancestor."})
        seen.add(node.pk)
        node = node.parent


@journaled()
def agent_update(*, agent: Agent, actor: Actor = SYSTEM, **fields: Any) -> Agent:
    """Change an agent's descriptive fields or status."""
    unknown = set(fields) - set(AGENT_UPDATABLE_FIELDS)
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be changed."))
    before = _agent_snapshot(agent) | {"status": agent.status}
    if "parent" in fields:
        parent = resolve(
            Agent, project=agent.project, field="parent", value=fields.pop("parent")
        )
        _check_agent_parent(agent, parent)
        agent.parent = parent
    for name in ("capabilities",):
        if name in fields:
            fields[name] = json_list(fields[name], field=name)
    for name in ("config", "metadata"):
        if name in fields:
            fields[name] = json_object(fields[name], field=name)
    for name, value in fields.items():
        setattr(agent, name, value)
    clean_fields(agent)
    after = _agent_snapshot(agent) | {"status": agent.status}
    changes = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
    if not changes:
        return agent
    if "name" in changes and (
        Agent.objects.filter(project=agent.project, name=agent.name)
        .exclude(pk=agent.pk)
        .exists()
    ):
        raise ValidationError({"name": f"An agent named {agent.name} exists."})
    agent.save(update_fields=[*changes, "updated_at"])
    audit_event_record(
        project_id=agent.project_id,
        kind=EventKind.AGENT_UPDATED,
        actor=actor,
        payload={"agent": str(agent.pk), "changes": changes},
    )
    audit_log_record(
        project_id=agent.project_id,
        action=AuditAction.AGENT_UPDATED,
        actor=actor,
        obj=agent,
        changes=changes,
    )
    return agent


@journaled()
def agent_heartbeat(
    *,
    agent: Agent,
    status: str | None = None,
    details: dict | None = None,
    operation_id: uuid.UUID | str | None = None,
    actor: Actor | None = None,
) -> AgentHeartbeat | None:
    """Record that an agent is alive, with its status and details.

    A repeated `operation_id` records nothing and returns None.
    """
    operation_id = parse_uuid(operation_id, field="id")
    Agent.objects.select_for_update().filter(pk=agent.pk).exists()
    if audit_operation_applied(
        project_id=agent.project_id,
        operation_id=operation_id,
        kinds=(EventKind.AGENT_HEARTBEAT,),
        subject=("agent", str(agent.pk)),
    ):
        return None
    status = status or agent.status
    if status not in AgentStatus.values:
        raise ValidationError(
            {"status": f"Choose from {', '.join(AgentStatus.values)}."}
        )
    details = json_object(details, field="details")
    now = timezone.now()
    beat = AgentHeartbeat.objects.create(
        project_id=agent.project_id,
        agent=agent,
        status=status,
        details=details,
        created_at=now,
    )
    Agent.objects.filter(pk=agent.pk).update(
        status=status, last_heartbeat_at=now, last_active_at=now, updated_at=now
    )
    agent.status, agent.last_heartbeat_at, agent.updated_at = status, now, now
    audit_event_record(
        project_id=agent.project_id,
        kind=EventKind.AGENT_HEARTBEAT,
        actor=actor or agent_actor(agent),
        payload={"agent": str(agent.pk), "status": status, "details": details},
        occurred_at=now,
        event_id=operation_id,
    )
    return beat
