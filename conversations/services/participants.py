"""Writes to participants: join, leave, read markers."""

from __future__ import annotations

import uuid
from typing import Any

from django.utils import timezone

from audit.journal import journaled, race_safe
from audit.models import EventKind
from audit.services import SYSTEM, Actor, audit_event_record, audit_events_record
from conversations.models import Conversation, Participant
from swarmsite.errors import NotFound, ValidationError
from swarmsite.validation import parse_uuid, resolve
from tasks.models import Agent

ROLE_MAX_LENGTH = 100


def _role(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > ROLE_MAX_LENGTH:
        raise ValidationError(
            {"role": f"Must be a string of at most {ROLE_MAX_LENGTH} characters."}
        )
    return value


def _payload(link: Participant, **extra: Any) -> dict[str, Any]:
    return {
        "conversation": str(link.conversation_id),
        "agent": str(link.agent_id),
        "role": link.role,
        **extra,
    }


def _event(conversation: Conversation, kind: str, payload: dict, actor: Actor) -> None:
    audit_event_record(
        project_id=conversation.project_id,
        kind=kind,
        actor=actor,
        conversation_id=conversation.pk,
        task_id=conversation.task_id,
        payload=payload,
    )


@race_safe
def participant_join(
    *,
    conversation: Conversation,
    agent: Agent | uuid.UUID | str,
    role: str | None = None,
    actor: Actor = SYSTEM,
) -> tuple[Participant, bool]:
    """Add an agent to a conversation; True when its row is new.

    A former participant rejoins (active again, its counts and read marker
    kept); a current one keeps its place, with `role` changed if given.
    """
    role = _role(role)
    agent = resolve(Agent, project=conversation.project, field="agent", value=agent)
    link = (
        Participant.objects.select_for_update()
        .filter(conversation=conversation, agent=agent)
        .first()
    )
    now = timezone.now()
    if link is None:
        link = Participant(
            conversation=conversation, agent=agent, role=role or "", joined_at=now
        )
        # A concurrent identical join makes this INSERT fail; race_safe then
        # runs the service again, which finds the row.
        link.save(force_insert=True)
        _event(
            conversation,
            EventKind.CONVERSATION_PARTICIPANT_JOINED,
            _payload(link, rejoined=False),
            actor,
        )
        return link, True
    fields: dict[str, Any] = {}
    if role is not None and role != link.role:
        fields["role"] = role
    if not link.active:
        fields.update(active=True, left_at=None, joined_at=now)
    if not fields:
        return link, False
    Participant.objects.filter(pk=link.pk).update(**fields)
    for name, value in fields.items():
        setattr(link, name, value)
    if "active" in fields:
        _event(
            conversation,
            EventKind.CONVERSATION_PARTICIPANT_JOINED,
            _payload(link, rejoined=True),
            actor,
        )
    else:
        _event(
            conversation,
            EventKind.CONVERSATION_PARTICIPANT_UPDATED,
            _payload(link),
            actor,
        )
    return link, False


@journaled()
def participant_leave(
    *,
    conversation: Conversation,
    agent: Agent | uuid.UUID | str,
    actor: Actor = SYSTEM,
) -> Participant:
    """Mark an agent as gone from a conversation; its history stays.

    Leaving twice changes nothing the second time.
    """
    agent_id = (
        agent.pk if isinstance(agent, Agent) else parse_uuid(agent, field="agent")
    )
    link = (
        Participant.objects.select_for_update()
        .filter(conversation=conversation, agent_id=agent_id)
        .first()
    )
    if link is None:
        raise NotFound(f"Agent {agent_id} is not a participant of this conversation.")
    if not link.active:
        return link
    now = timezone.now()
    Participant.objects.filter(pk=link.pk).update(active=False, left_at=now)
    link.active, link.left_at = False, now
    _event(
        conversation,
        EventKind.CONVERSATION_PARTICIPANT_LEFT,
        _payload(link),
        actor,
    )
    return link


def _whole_number(value: Any, *, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError({field: "Must be a whole number of zero or more."})
    return value


@journaled()
def participant_read(
    *,
    conversation: Conversation,
    agent: Agent | uuid.UUID | str,
    seq: int,
    actor: Actor = SYSTEM,
) -> Participant:
    """Move an agent's read marker forward to `seq`; never back.

    One conditional UPDATE (`WHERE last_read_seq < seq`), so concurrent
    markers end at the highest of them whatever their order.
    """
    seq = _whole_number(seq, field="seq")
    agent = resolve(Agent, project=conversation.project, field="agent", value=agent)
    last = (
        Conversation.objects.filter(pk=conversation.pk)
        .values_list("message_count", flat=True)
        .first()
    )
    if last is None:
        raise NotFound(f"No conversation {conversation.pk}.")
    if seq > last:
        raise ValidationError(
            {"seq": f"The conversation's last message is number {last}."}
        )
    link = Participant.objects.filter(conversation=conversation, agent=agent).first()
    if link is None:
        raise ValidationError(
            {"agent": f"Agent {agent.pk} is not a participant of this conversation."}
        )
    previous = link.last_read_seq
    moved = Participant.objects.filter(pk=link.pk, last_read_seq__lt=seq).update(
        last_read_seq=seq
    )
    link.refresh_from_db(fields=["last_read_seq"])
    if moved:
        _event(
            conversation,
            EventKind.CONVERSATION_READ,
            {
                "conversation": str(conversation.pk),
                "agent": str(agent.pk),
                "seq": link.last_read_seq,
                "previous": previous,
            },
            actor,
        )
    return link


def participants_set(
    *, conversation: Conversation, agents: list[Agent], actor: Actor = SYSTEM
) -> None:
    """Make `agents` the active participants: others leave, new ones join.

    Callers hold a journaled transaction.
    """
    wanted = {a.pk: a for a in agents}
    links = {
        link.agent_id: link
        for link in Participant.objects.select_for_update().filter(
            conversation=conversation
        )
    }
    now = timezone.now()
    events: list[dict[str, Any]] = []
    leaving = [link for pk, link in links.items() if link.active and pk not in wanted]
    if leaving:
        Participant.objects.filter(pk__in=[link.pk for link in leaving]).update(
            active=False, left_at=now
        )
        for link in leaving:
            link.active, link.left_at = False, now
            events.append(
                {
                    "kind": EventKind.CONVERSATION_PARTICIPANT_LEFT,
                    "payload": _payload(link),
                }
            )
    rejoining = [links[pk] for pk in wanted if pk in links and not links[pk].active]
    if rejoining:
        Participant.objects.filter(pk__in=[link.pk for link in rejoining]).update(
            active=True, left_at=None, joined_at=now
        )
        for link in rejoining:
            events.append(
                {
                    "kind": EventKind.CONVERSATION_PARTICIPANT_JOINED,
                    "payload": _payload(link, rejoined=True),
                }
            )
    new = [
        Participant(conversation=conversation, agent=agent, joined_at=now)
        for pk, agent in wanted.items()
        if pk not in links
    ]
    Participant.objects.bulk_create(new)
    for link in new:
        events.append(
            {
                "kind": EventKind.CONVERSATION_PARTICIPANT_JOINED,
                "payload": _payload(link, rejoined=False),
            }
        )
    audit_events_record(
        project_id=conversation.project_id,
        actor=actor,
        events=[
            e | {"conversation_id": conversation.pk, "task_id": conversation.task_id}
            for e in events
        ],
    )
