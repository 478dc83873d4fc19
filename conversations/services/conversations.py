"""Writes to conversations: open one, change its title, status or members."""

from __future__ import annotations

import uuid
from typing import Any

from audit.journal import journaled, race_safe
from audit.models import EventKind
from audit.services import SYSTEM, Actor, audit_event_record
from conversations.models import Conversation, ConversationStatus, Participant
from conversations.services.participants import participants_set
from swarmsite.errors import IdempotencyConflict, ValidationError
from swarmsite.models import Project
from swarmsite.validation import (
    body_digest,
    check_replay,
    clean_fields,
    json_object,
    parse_uuid,
    pk_or_none,
    resolve,
    resolve_many,
)
from tasks.models import Agent, Task


def _conversation_snapshot(
    conversation: Conversation, participants: list[Agent]
) -> dict:
    return {
        "task": pk_or_none(conversation.task),
        "title": conversation.title,
        "status": conversation.status,
        "participants": sorted(str(a.pk) for a in participants),
        "metadata": conversation.metadata,
    }


def _active_agents(conversation: Conversation) -> list[Agent]:
    return [
        link.agent
        for link in Participant.objects.filter(
            conversation=conversation, active=True
        ).select_related("agent")
    ]


@race_safe
def conversation_create(
    *,
    project: Project,
    conversation_id: uuid.UUID | str | None = None,
    task: Task | uuid.UUID | str | None = None,
    title: str = "",
    participants: list | None = None,
    metadata: dict | None = None,
    actor: Actor = SYSTEM,
) -> tuple[Conversation, bool]:
    """Open a conversation; a repeated id with the same body returns it."""
    conversation = Conversation(
        id=parse_uuid(conversation_id) or uuid.uuid4(),
        project=project,
        task=resolve(Task, project=project, field="task", value=task),
        title=title,
        metadata=json_object(metadata, field="metadata"),
    )
    agents = resolve_many(
        Agent, project=project, field="participants", values=participants
    )
    clean_fields(conversation)
    stored = Conversation.objects.filter(pk=conversation.pk).first()
    if stored is not None:
        if stored.project_id != project.pk:
            raise IdempotencyConflict(f"The id {conversation.pk} is taken.")
        check_replay(
            stored_digest=stored.create_digest,
            stored=_conversation_snapshot(stored, list(stored.participants.all())),
            supplied=_conversation_snapshot(conversation, agents),
            what="conversation",
            grown=("participants",),
        )
        return stored, False
    conversation.create_digest = body_digest(
        _conversation_snapshot(conversation, agents)
    )
    conversation.save(force_insert=True)
    Participant.objects.bulk_create(
        [
            Participant(
                conversation=conversation, agent=a, joined_at=conversation.created_at
            )
            for a in agents
        ]
    )
    audit_event_record(
        project_id=project.pk,
        kind=EventKind.CONVERSATION_CREATED,
        actor=actor,
        conversation_id=conversation.pk,
        task_id=conversation.task_id,
        payload={"conversation": str(conversation.pk)}
        | _conversation_snapshot(conversation, agents),
    )
    return conversation, True


@journaled()
def conversation_update(
    *, conversation: Conversation, actor: Actor = SYSTEM, **fields: Any
) -> Conversation:
    """Change a conversation's title, status, metadata or participants.

    `participants` is the whole list of active members: agents left out
    leave (their history is kept), new ones join, former ones rejoin.
    """
    allowed = {"title", "status", "metadata", "participants"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be changed."))
    participants = _active_agents(conversation)
    before = _conversation_snapshot(conversation, participants)
    if "participants" in fields:
        participants = resolve_many(
            Agent,
            project=conversation.project,
            field="participants",
            values=fields.pop("participants"),
        )
    if "status" in fields and fields["status"] not in ConversationStatus.values:
        raise ValidationError(
            {"status": f"Choose from {', '.join(ConversationStatus.values)}."}
        )
    if "metadata" in fields:
        fields["metadata"] = json_object(fields["metadata"], field="metadata")
    for name, value in fields.items():
        setattr(conversation, name, value)
    clean_fields(conversation)
    after = _conversation_snapshot(conversation, participants)
    changes = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
    if not changes:
        return conversation
    columns = [k for k in changes if k != "participants"]
    if columns:
        conversation.save(update_fields=[*columns, "updated_at"])
    if "participants" in changes:
        participants_set(conversation=conversation, agents=participants, actor=actor)
    audit_event_record(
        project_id=conversation.project_id,
        kind=EventKind.CONVERSATION_UPDATED,
        actor=actor,
        conversation_id=conversation.pk,
        task_id=conversation.task_id,
        payload={"conversation": str(conversation.pk), "changes": changes},
    )
    return conversation
