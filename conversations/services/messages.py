"""Writes to messages: append (with recipients and threads) and revise."""

from __future__ import annotations

import uuid
from decimal import Decimal
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
    audit_log_record,
    audit_operation_applied,
)
from conversations.models import (
    Conversation,
    Message,
    MessageRecipient,
    MessageRole,
    Participant,
)
from swarmsite.errors import IdempotencyConflict, NotFound, ValidationError
from swarmsite.validation import (
    body_digest,
    check_replay,
    clean_fields,
    json_check,
    json_object,
    parse_uuid,
    pk_or_none,
    to_count,
    to_decimal,
)
from tasks.models import Agent
from tasks.services import messages_rollup

MAX_MESSAGES_PER_APPEND = 5000
MAX_RECIPIENTS = 1000
MESSAGE_FIELDS = (
    "recipients",
    "id",
    "role",
    "content",
    "sender",
    "tool_calls",
    "tool_call_id",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost",
    "latency_ms",
    "reply_to",
    "metadata",
    "created_at",
)


def _message_snapshot(
    message: Message, recipients: list[str] | None = None
) -> dict[str, Any]:
    snapshot = {
        "role": message.role,
        "content": message.content,
        "sender": pk_or_none(message.sender),
        "tool_calls": message.tool_calls,
        "tool_call_id": message.tool_call_id,
        "model": message.model,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "cached_tokens": message.cached_tokens,
        "cost": str(message.cost),
        "latency_ms": message.latency_ms,
        "reply_to": pk_or_none(message.reply_to),
        "metadata": message.metadata,
    }
    # Only when present, so digests of messages stored before recipients
    # existed still judge their replays.
    if recipients:
        snapshot["recipients"] = sorted(recipients)
    return snapshot


class _Prefixed:
    """Re-raises a ValidationError with its fields named `messages[i].field`."""

    def __init__(self, index: int | None) -> None:
        self.index = index

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.index is not None and isinstance(exc, ValidationError):
            raise ValidationError(
                {f"messages[{self.index}].{k}": v for k, v in exc.fields.items()}
            ) from exc
        return False


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _recipients(value: Any, agents: dict[str, Agent]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise ValidationError({"recipients": "Must be a list of agent ids."})
    if len(value) > MAX_RECIPIENTS:
        raise ValidationError({"recipients": f"At most {MAX_RECIPIENTS} agents."})
    ids = list(dict.fromkeys(str(v) for v in value))
    missing = [i for i in ids if i not in agents]
    if missing:
        raise ValidationError(
            {"recipients": f"No agents {', '.join(missing)} in this project."}
        )
    return [str(agents[i].pk) for i in ids]


def _build_message(
    spec: dict[str, Any],
    *,
    conversation: Conversation,
    senders: dict[str, Agent],
) -> Message:
    if not isinstance(spec, dict):
        raise ValidationError(
            {"non_field_errors": "Each message must be a JSON object."}
        )
    unknown = set(spec) - set(MESSAGE_FIELDS)
    if unknown:
        raise ValidationError(dict.fromkeys(sorted(unknown), "Unknown field."))
    role = spec.get("role")
    if role not in MessageRole.values:
        raise ValidationError({"role": f"Choose from {', '.join(MessageRole.values)}."})
    tool_calls = spec.get("tool_calls")
    if tool_calls is not None and not isinstance(tool_calls, list):
        raise ValidationError({"tool_calls": "Must be a JSON list."})
    json_check(tool_calls, field="tool_calls")
    latency = spec.get("latency_ms")
    if latency is not None and (
        isinstance(latency, bool) or not isinstance(latency, int | float) or latency < 0
    ):
        raise ValidationError({"latency_ms": "Must be a number of zero or more."})
    content = spec.get("content") or ""
    if not isinstance(content, str):
        raise ValidationError({"content": "Must be a string."})
    sender_id = spec.get("sender")
    sender = None
    if sender_id:
        sender = senders.get(str(sender_id))
        if sender is None:
            raise ValidationError({"sender": f"No agent {sender_id} in this project."})
    message = Message(
        id=parse_uuid(spec.get("id")) or uuid.uuid4(),
        project_id=conversation.project_id,
        conversation=conversation,
        role=role,
        content=content,
        sender=sender,
        tool_calls=tool_calls,
        tool_call_id=spec.get("tool_call_id") or "",
        model=spec.get("model") or "",
        prompt_tokens=to_count(spec.get("prompt_tokens", 0), field="prompt_tokens"),
        completion_tokens=to_count(
            spec.get("completion_tokens", 0), field="completion_tokens"
        ),
        cached_tokens=to_count(spec.get("cached_tokens", 0), field="cached_tokens"),
        cost=to_decimal(spec.get("cost", 0), field="cost"),
        latency_ms=latency,
        metadata=json_object(spec.get("metadata"), field="metadata"),
        created_at=spec.get("created_at") or timezone.now(),
    )
    clean_fields(message, exclude=["seq", "thread"])
    message.recipient_ids = _recipients(spec.get("recipients"), senders)
    return message


@journaled()
def message_append(
    *,
    conversation: Conversation,
    messages: list[dict[str, Any]],
    actor: Actor = SYSTEM,
) -> list[tuple[Message, bool]]:
    """Append messages in order with gap-free `seq`; repeated ids return the stored.

    The conversation row is locked for the append, so concurrent appenders get
    consecutive numbers. New messages go in with one bulk INSERT.
    """
    if not isinstance(messages, list) or not messages:
        raise ValidationError({"messages": "Send one message or a non-empty list."})
    if len(messages) > MAX_MESSAGES_PER_APPEND:
        raise ValidationError(
            {"messages": f"At most {MAX_MESSAGES_PER_APPEND} messages at once."}
        )
    many = len(messages) > 1
    # Only the conversation row: locking the joined project row FOR UPDATE
    # would block every insert that references the project (the journal's
    # included, taken under the JournalHead lock) and deadlock with it.
    conversation = (
        Conversation.objects.select_for_update(of=("self",))
        .select_related("project")
        .get(pk=conversation.pk)
    )
    sender_ids = {
        str(m["sender"]) for m in messages if isinstance(m, dict) and m.get("sender")
    }
    for m in messages:
        if isinstance(m, dict) and isinstance(m.get("recipients"), list | tuple):
            sender_ids.update(str(r) for r in m["recipients"])
    senders: dict[str, Agent] = {}
    if sender_ids:
        # Unknown senders and recipients are reported per message by
        # _build_message.
        senders = {
            str(a.pk): a
            for a in Agent.objects.filter(
                project=conversation.project,
                pk__in=[s for s in sender_ids if _is_uuid(s)],
            )
        }

    built: list[Message] = []
    for index, spec in enumerate(messages):
        with _Prefixed(index if many else None):
            built.append(
                _build_message(spec, conversation=conversation, senders=senders)
            )
    ids = [m.pk for m in built]
    if len(set(ids)) != len(ids):
        raise ValidationError({"messages": "Two messages in one request share an id."})
    stored = {
        m.pk: m
        for m in Message.objects.filter(pk__in=ids)
        .select_related("sender", "reply_to")
        .prefetch_related("recipient_links")
    }

    # reply_to may name a stored message or an earlier one in this request;
    # any other value is reported per message below.
    reply_ids = {str(spec["reply_to"]) for spec in messages if spec.get("reply_to")}
    known: dict[str, Message] = (
        {
            str(m.pk): m
            for m in Message.objects.filter(
                conversation=conversation,
                pk__in=[r for r in reply_ids if _is_uuid(r)],
            )
        }
        if reply_ids
        else {}
    )

    results: list[tuple[Message, bool]] = []
    new: list[Message] = []
    seq = conversation.message_count
    for index, (spec, message) in enumerate(zip(messages, built, strict=True)):
        with _Prefixed(index if many else None):
            reply_to = spec.get("reply_to")
            if reply_to:
                message.reply_to = known.get(str(reply_to))
                if message.reply_to is None:
                    raise ValidationError(
                        {"reply_to": f"No earlier message {reply_to} here."}
                    )
            existing = stored.get(message.pk)
            if existing is not None:
                if existing.conversation_id != conversation.pk:
                    raise IdempotencyConflict(f"The id {message.pk} is taken.")
                check_replay(
                    stored_digest=existing.create_digest,
                    stored=_message_snapshot(
                        existing,
                        [str(r.agent_id) for r in existing.recipient_links.all()],
                    ),
                    supplied=_message_snapshot(message, message.recipient_ids),
                    what="message",
                )
                results.append((existing, False))
                known[str(existing.pk)] = existing
                continue
        seq += 1
        message.seq = seq
        # The first message of the reply chain: replies inherit its id.
        message.thread = (
            message.reply_to.thread if message.reply_to is not None else message.pk
        )
        message.create_digest = body_digest(
            _message_snapshot(message, message.recipient_ids)
        )
        new.append(message)
        known[str(message.pk)] = message
        results.append((message, True))
    if not new:
        return results

    Message.objects.bulk_create(new)
    usage = {
        "prompt_tokens": sum(m.prompt_tokens for m in new),
        "completion_tokens": sum(m.completion_tokens for m in new),
        "cached_tokens": sum(m.cached_tokens for m in new),
        "cost": sum((m.cost for m in new), start=Decimal(0)),
    }
    last_at = max(m.created_at for m in new)
    Conversation.objects.filter(pk=conversation.pk).update(
        message_count=seq,
        prompt_tokens=F("prompt_tokens") + usage["prompt_tokens"],
        completion_tokens=F("completion_tokens") + usage["completion_tokens"],
        cached_tokens=F("cached_tokens") + usage["cached_tokens"],
        cost=F("cost") + usage["cost"],
        last_message_at=last_at,
        updated_at=timezone.now(),
    )
    # Task, workflow and sender roll-ups (runs own usage a message names).
    messages_rollup(task_id=conversation.task_id, messages=new)
    MessageRecipient.objects.bulk_create(
        [
            MessageRecipient(
                project_id=conversation.project_id, message=m, agent_id=agent_id
            )
            for m in new
            for agent_id in m.recipient_ids
        ]
    )
    _participants_count(conversation, new)
    audit_events_record(
        project_id=conversation.project_id,
        actor=actor,
        events=[
            {
                "kind": EventKind.MESSAGE_CREATED,
                "conversation_id": conversation.pk,
                "task_id": conversation.task_id,
                "occurred_at": m.created_at,
                "payload": {
                    "message": str(m.pk),
                    "conversation": str(conversation.pk),
                    "seq": m.seq,
                    "role": m.role,
                    "sender": pk_or_none(m.sender),
                    "model": m.model,
                    "prompt_tokens": m.prompt_tokens,
                    "completion_tokens": m.completion_tokens,
                    "cached_tokens": m.cached_tokens,
                    "cost": str(m.cost),
                    "reply_to": pk_or_none(m.reply_to),
                    "thread": str(m.thread),
                    "recipients": m.recipient_ids,
                },
            }
            for m in new
        ],
    )
    return results


def _participants_count(conversation: Conversation, new: list[Message]) -> None:
    """Senders and recipients become participants; senders' counts grow."""
    sent: dict[Any, int] = {}
    for m in new:
        if m.sender_id:
            sent[m.sender_id] = sent.get(m.sender_id, 0) + 1
    involved = set(sent) | {
        uuid.UUID(agent_id) for m in new for agent_id in m.recipient_ids
    }
    if not involved:
        return
    Participant.objects.bulk_create(
        [
            Participant(conversation=conversation, agent_id=a)
            for a in sorted(involved, key=str)
        ],
        ignore_conflicts=True,
    )
    # In key order, so concurrent appenders never wait on each other in a
    # cycle (they also hold the conversation lock).
    for agent_id in sorted(sent, key=str):
        Participant.objects.filter(conversation=conversation, agent_id=agent_id).update(
            message_count=F("message_count") + sent[agent_id]
        )


def message_append_one(
    *, conversation: Conversation, actor: Actor = SYSTEM, **fields: Any
) -> tuple[Message, bool]:
    """Append a single message; see message_append."""
    with transaction.atomic():
        return message_append(
            conversation=conversation, messages=[fields], actor=actor
        )[0]


@journaled()
def message_revise(
    *,
    message: Message,
    content: str,
    operation_id: uuid.UUID | str | None = None,
    actor: Actor = SYSTEM,
) -> Message:
    """Replace a message's content; the earlier text stays in the event log.

    `revision` grows by one and `revised_at` is set; the `message.revised`
    event carries the previous and the new content. A repeated
    `operation_id` changes nothing and sets `message.replayed`.
    """
    if not isinstance(content, str):
        raise ValidationError({"content": "Must be a string."})
    json_check(content, field="content")
    operation_id = parse_uuid(operation_id, field="id")
    stored = (
        Message.objects.select_for_update(of=("self",))
        .select_related("conversation")
        .filter(pk=message.pk)
        .first()
    )
    if stored is None:
        raise NotFound(f"No message {message.pk}.")
    stored.replayed = audit_operation_applied(
        project_id=stored.project_id,
        operation_id=operation_id,
        kinds=(EventKind.MESSAGE_REVISED,),
        subject=("message", str(stored.pk)),
    )
    if stored.replayed:
        return stored
    previous = stored.content
    now = timezone.now()
    Message.objects.filter(pk=stored.pk).update(
        content=content, revision=F("revision") + 1, revised_at=now
    )
    stored.content, stored.revised_at = content, now
    stored.revision += 1
    conversation = stored.conversation
    audit_event_record(
        project_id=stored.project_id,
        kind=EventKind.MESSAGE_REVISED,
        actor=actor,
        conversation_id=conversation.pk,
        task_id=conversation.task_id,
        payload={
            "message": str(stored.pk),
            "conversation": str(conversation.pk),
            "seq": stored.seq,
            "revision": stored.revision,
            "previous_content": previous,
            "content": content,
        },
        occurred_at=now,
        event_id=operation_id,
    )
    audit_log_record(
        project_id=stored.project_id,
        action=AuditAction.MESSAGE_REVISED,
        actor=actor,
        obj=stored,
        changes={"revision": [stored.revision - 1, stored.revision]},
    )
    return stored
