"""Writes to conversations: open one, change its title, status or members."""

from __future__ import annotations

import uuid
from typing import Any

from audit.journal import journaled, race_safe
from audit.models import EventKind
from audit.services import SYSTEM, Actor, audit_event_record, audit_events_record
from conversations.models import Conversation, ConversationStatus, Participant
from conversations.services.participants import participants_set
from swarmsite.errors import IdempotencyConflict, ValidationError
from swarmsite.models import Project
from swarmsite.validation import (
    Resolver,
    body_digest,
    check_replay,
    clean_fields,
    id_or_none,
    json_object,
    parse_uuid,
    resolve_many,
)
from tasks.models import Agent, Task


def _conversation_snapshot(
    conversation: Conversation, participants: list[Agent]
) -> dict:
    return {
        "task": id_or_none(conversation.task_id),
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


CONVERSATION_CREATE_KEYS = frozenset(
    {"conversation_id", "task", "title", "participants", "metadata"}
)


@race_safe
def conversation_create_many(
    *,
    project: Project,
    conversations: list[dict[str, Any]],
    actor: Actor = SYSTEM,
) -> list[tuple[Conversation, bool]]:
    """Open conversations with bulk INSERTs; repeated ids return them.

    Each item takes conversation_create's arguments. A repeated id is judged
    against the body that created the conversation. Raises on the first bad
    item, having written nothing.
    """
    for spec in conversations:
        unknown = set(spec) - CONVERSATION_CREATE_KEYS
        if unknown:
            raise ValidationError(dict.fromkeys(sorted(unknown), "Unknown field."))
    tasks = Resolver(Task, project=project)
    agents = Resolver(Agent, project=project)
    for spec in conversations:
        tasks.want(spec.get("task"))
        agents.want_many(spec.get("participants"))
    built: list[tuple[Conversation, list[Agent]]] = []
    for spec in conversations:
        conversation = Conversation(
            id=parse_uuid(spec.get("conversation_id")) or uuid.uuid4(),
            project=project,
            task=tasks.one(field="task", value=spec.get("task")),
            title=spec.get("title", ""),
            metadata=json_object(spec.get("metadata"), field="metadata"),
        )
        involved = agents.many(field="participants", values=spec.get("participants"))
        clean_fields(conversation)
        built.append((conversation, involved))
    stored = {
        c.pk: c
        for c in Conversation.objects.filter(
            pk__in=[c.pk for c, _ in built]
        ).prefetch_related("participants")
    }
    earlier: dict[uuid.UUID, tuple[Conversation, dict]] = {}
    results: list[tuple[Conversation, bool]] = []
    new: list[tuple[Conversation, list[Agent]]] = []
    for conversation, involved in built:
        snapshot = _conversation_snapshot(conversation, involved)
        existing = stored.get(conversation.pk)
        if existing is not None and conversation.pk not in earlier:
            if existing.project_id != project.pk:
                raise IdempotencyConflict(f"The id {conversation.pk} is taken.")
            first = _conversation_snapshot(existing, list(existing.participants.all()))
            earlier[existing.pk] = (existing, first)
        if conversation.pk in earlier:
            # Judged against the body that created it (stored, or earlier here).
            existing, first = earlier[conversation.pk]
            check_replay(
                stored_digest=existing.create_digest,
                stored=first,
                supplied=snapshot,
                what="conversation",
                grown=("participants",),
            )
            results.append((existing, False))
            continue
        conversation.create_digest = body_digest(snapshot)
        earlier[conversation.pk] = (conversation, snapshot)
        new.append((conversation, involved))
        results.append((conversation, True))
    if not new:
        return results

    # Rows in key order: two batches that share ids lock them in one order.
    Conversation.objects.bulk_create(sorted((c for c, _ in new), key=lambda c: c.pk))
    Participant.objects.bulk_create(
        [
            Participant(conversation=c, agent=a, joined_at=c.created_at)
            for c, involved in new
            for a in involved
        ]
    )
    audit_events_record(
        project_id=project.pk,
        actor=actor,
        events=[
            {
                "kind": EventKind.CONVERSATION_CREATED,
                "conversation_id": c.pk,
                "task_id": c.task_id,
                "payload": {"conversation": str(c.pk)}
                | _conversation_snapshot(c, involved),
            }
            for c, involved in new
        ],
    )
    return results


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
    spec = {
        "conversation_id": conversation_id,
        "task": task,
        "title": title,
        "participants": participants,
        "metadata": metadata,
    }
    return conversation_create_many(project=project, conversations=[spec], actor=actor)[
        0
    ]


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
