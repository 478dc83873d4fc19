"""Writes to messages: append (with recipients and threads) and revise."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connections, router, transaction
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
    audit_logs_record,
    audit_operation_applied,
)
from conversations.models import (
    Conversation,
    Message,
    MessageRecipient,
    MessageRole,
    Participant,
)
from swarmsite.bulk import bulk_insert
from swarmsite.errors import Conflict, IdempotencyConflict, NotFound, ValidationError
from swarmsite.models import Project
from swarmsite.validation import (
    Resolver,
    body_digest,
    check_replay,
    clean_fields,
    id_or_none,
    json_check,
    json_object,
    parse_uuid,
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
        "sender": id_or_none(message.sender_id),
        "tool_calls": message.tool_calls,
        "tool_call_id": message.tool_call_id,
        "model": message.model,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "cached_tokens": message.cached_tokens,
        "cost": str(message.cost),
        "latency_ms": message.latency_ms,
        "reply_to": id_or_none(message.reply_to_id),
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


# The values a message takes as given, without Model.clean_fields: what no
# field of any backend refuses or converts (PositiveIntegerField's smallest
# range, DecimalField's digits, CharField's lengths). Anything else is
# cleaned by the fields themselves.
_COUNT_MAX = 2147483647
_COST_FIELD = Message._meta.get_field("cost")
_COST_MAX = Decimal(10) ** (_COST_FIELD.max_digits - _COST_FIELD.decimal_places)
_TEXT_MAX = {
    name: Message._meta.get_field(name).max_length for name in ("tool_call_id", "model")
}
_ROLES = MessageRole.values
_FIELDS = Message._meta.concrete_fields
_CONVERSATION = Message._meta.get_field("conversation")
_SENDER = Message._meta.get_field("sender")


def _plain_json(value: Any) -> bool:
    """True when json_check and JSONField.validate would both take `value`.

    A value that needs json_default, a NaN, a lone surrogate or a NUL
    character is left to those checks.
    """
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        text.encode()
    except (TypeError, ValueError, RecursionError):
        return False
    return "\\u0000" not in text


def _as_is(value: Any, limit: int) -> bool:
    return isinstance(value, str) and len(value) <= limit


def _new_message(**values: Any) -> Message:
    """A Message built as a query builds its rows: positionally, by column."""
    return Message(
        *[
            values[f.attname] if f.attname in values else f.get_default()
            for f in _FIELDS
        ]
    )


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
    if role not in _ROLES:
        raise ValidationError({"role": f"Choose from {', '.join(_ROLES)}."})
    # `plain`: every value is one clean_fields would keep as it is.
    tool_calls = spec.get("tool_calls")
    plain = True
    if tool_calls is not None:
        if not isinstance(tool_calls, list):
            raise ValidationError({"tool_calls": "Must be a JSON list."})
        if not _plain_json(tool_calls):
            json_check(tool_calls, field="tool_calls")
            plain = False
    latency = spec.get("latency_ms")
    if latency is not None:
        if (
            isinstance(latency, bool)
            or not isinstance(latency, int | float)
            or latency < 0
        ):
            raise ValidationError({"latency_ms": "Must be a number of zero or more."})
        # FloatField keeps floats and turns integers into floats.
        if type(latency) is float:
            pass
        elif type(latency) is int and latency <= _COUNT_MAX:
            latency = float(latency)
        else:
            plain = False
    content = spec.get("content") or ""
    if not isinstance(content, str):
        raise ValidationError({"content": "Must be a string."})
    sender_id = spec.get("sender")
    sender = None
    if sender_id:
        sender = senders.get(str(sender_id))
        if sender is None:
            raise ValidationError({"sender": f"No agent {sender_id} in this project."})
    message_id = parse_uuid(spec.get("id")) or uuid.uuid4()
    tool_call_id = spec.get("tool_call_id") or ""
    model = spec.get("model") or ""
    counts = [
        to_count(spec.get(name, 0), field=name)
        for name in ("prompt_tokens", "completion_tokens", "cached_tokens")
    ]
    cost = to_decimal(spec.get("cost", 0), field="cost")
    metadata = spec.get("metadata")
    if metadata is None:
        metadata = {}
    elif not (isinstance(metadata, dict) and _plain_json(metadata)):
        metadata = json_object(metadata, field="metadata")
        plain = False
    created_at = spec.get("created_at") or timezone.now()
    plain = (
        plain
        and _as_is(tool_call_id, _TEXT_MAX["tool_call_id"])
        and _as_is(model, _TEXT_MAX["model"])
        and max(counts) <= _COUNT_MAX
        and cost < _COST_MAX
        and isinstance(created_at, datetime)
    )
    message = _new_message(
        id=message_id,
        project_id=conversation.project_id,
        conversation_id=conversation.pk,
        role=role,
        content=content,
        sender_id=None if sender is None else sender.pk,
        tool_calls=tool_calls,
        tool_call_id=tool_call_id,
        model=model,
        prompt_tokens=counts[0],
        completion_tokens=counts[1],
        cached_tokens=counts[2],
        cost=cost,
        latency_ms=latency,
        metadata=metadata,
        created_at=created_at,
    )
    # As Message(conversation=..., sender=...) caches them.
    _CONVERSATION.set_cached_value(message, conversation)
    _SENDER.set_cached_value(message, sender)
    if not plain:
        clean_fields(message, exclude=["seq", "thread"])
    message.recipient_ids = _recipients(spec.get("recipients"), senders)
    return message


def _checked_list(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise ValidationError({"messages": "Send one message or a non-empty list."})
    if len(messages) > MAX_MESSAGES_PER_APPEND:
        raise ValidationError(
            {"messages": f"At most {MAX_MESSAGES_PER_APPEND} messages at once."}
        )


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
    _checked_list(messages)
    return _append(
        project_id=conversation.project_id,
        entries=[(conversation.pk, spec) for spec in messages],
        actor=actor,
    )


@journaled()
def messages_append(
    *,
    project: Project,
    messages: list[dict[str, Any]],
    actor: Actor = SYSTEM,
) -> list[tuple[Message, bool]]:
    """Append messages of several conversations of `project`, as message_append.

    Each item is a message with the id of its `conversation`. The
    conversations are locked in key order; each numbers its messages in the
    order given, and roll-ups of the whole batch are written together.
    """
    _checked_list(messages)
    entries = []
    for spec in messages:
        if isinstance(spec, dict):
            spec = dict(spec)
            entries.append((spec.pop("conversation", None), spec))
        else:
            entries.append((None, spec))
    return _append(project_id=project.pk, entries=entries, actor=actor)


def _locked_conversations(
    project_id: int, entries: list[tuple[Any, Any]], many: bool
) -> dict[str, Conversation]:
    wanted = {str(c) for c, _ in entries if c is not None}
    # Only the conversation rows, in key order so that appenders to several
    # conversations never wait on each other in a cycle: locking the joined
    # project row FOR UPDATE would block every insert that references the
    # project (the journal's included, taken under the JournalHead lock).
    found = {
        str(c.pk): c
        for c in Conversation.objects.select_for_update(of=("self",))
        .filter(project_id=project_id, pk__in=[c for c in wanted if _is_uuid(c)])
        .order_by("pk")
    }
    for index, (conversation_id, _) in enumerate(entries):
        if str(conversation_id) not in found:
            with _Prefixed(index if many else None):
                raise ValidationError(
                    {
                        "conversation": (
                            f"No conversation {conversation_id} in this project."
                        )
                    }
                )
    return found


def _append(
    *,
    project_id: int,
    entries: list[tuple[Any, Any]],
    actor: Actor,
) -> list[tuple[Message, bool]]:
    """Append (conversation id, message) entries; see messages_append."""
    many = len(entries) > 1
    conversations = _locked_conversations(project_id, entries, many)
    messages = [spec for _, spec in entries]
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
                project_id=project_id,
                pk__in=[s for s in sender_ids if _is_uuid(s)],
            )
        }

    built: list[Message] = []
    for index, (conversation_id, spec) in enumerate(entries):
        with _Prefixed(index if many else None):
            built.append(
                _build_message(
                    spec,
                    conversation=conversations[str(conversation_id)],
                    senders=senders,
                )
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

    # reply_to may name a stored message or an earlier one in this request,
    # of the same conversation; any other value is reported per message below.
    reply_ids = {
        str(spec["reply_to"])
        for spec in messages
        if isinstance(spec, dict) and spec.get("reply_to")
    }
    known: dict[str, Message] = (
        {
            str(m.pk): m
            for m in Message.objects.filter(
                conversation_id__in=[c.pk for c in conversations.values()],
                pk__in=[r for r in reply_ids if _is_uuid(r)],
            )
        }
        if reply_ids
        else {}
    )

    results: list[tuple[Message, bool]] = []
    new: list[Message] = []
    seqs = {c.pk: c.message_count for c in conversations.values()}
    for index, (spec, message) in enumerate(zip(messages, built, strict=True)):
        with _Prefixed(index if many else None):
            reply_to = spec.get("reply_to")
            if reply_to:
                message.reply_to = known.get(str(reply_to))
                if (
                    message.reply_to is None
                    or message.reply_to.conversation_id != message.conversation_id
                ):
                    raise ValidationError(
                        {"reply_to": f"No earlier message {reply_to} here."}
                    )
            existing = stored.get(message.pk)
            if existing is not None:
                if existing.conversation_id != message.conversation_id:
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
        seqs[message.conversation_id] += 1
        message.seq = seqs[message.conversation_id]
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
    if new:
        _write(new, conversations, seqs, actor)
    return results


def _write(
    new: list[Message],
    conversations: dict[str, Conversation],
    seqs: dict[Any, int],
    actor: Actor,
) -> None:
    """Insert new messages; conversation, task, agent and participant roll-ups."""
    bulk_insert(Message, new)
    by_conversation: dict[Any, list[Message]] = {}
    for m in new:
        by_conversation.setdefault(m.conversation_id, []).append(m)

    _conversations_add(by_conversation, seqs)
    # Task, workflow and sender roll-ups (runs own usage a message names).
    tasks = {c.pk: c.task_id for c in conversations.values()}
    messages_rollup(messages=new, tasks=tasks)
    MessageRecipient.objects.bulk_create(
        [
            MessageRecipient(project_id=m.project_id, message=m, agent_id=agent_id)
            for m in new
            for agent_id in m.recipient_ids
        ]
    )
    _participants_count(new)
    audit_events_record(
        project_id=new[0].project_id,
        actor=actor,
        events=[
            {
                "kind": EventKind.MESSAGE_CREATED,
                "conversation_id": m.conversation_id,
                "task_id": tasks[m.conversation_id],
                "occurred_at": m.created_at,
                "payload": {
                    "message": str(m.pk),
                    "conversation": str(m.conversation_id),
                    "seq": m.seq,
                    "role": m.role,
                    "sender": id_or_none(m.sender_id),
                    "model": m.model,
                    "prompt_tokens": m.prompt_tokens,
                    "completion_tokens": m.completion_tokens,
                    "cached_tokens": m.cached_tokens,
                    "cost": str(m.cost),
                    "reply_to": id_or_none(m.reply_to_id),
                    "thread": str(m.thread),
                    "recipients": m.recipient_ids,
                },
            }
            for m in new
        ],
    )


def _conversations_add(
    by_conversation: dict[Any, list[Message]], seqs: dict[Any, int]
) -> None:
    """Counts, usage and last message time of conversations, in one UPDATE.

    Their rows are locked already. Written as SQL: the ORM resolves a CASE
    branch per conversation and column, which costs as much as the rest of
    an append of a few hundred messages. Values go through the fields'
    conversions, as the ORM's do.
    """
    connection = connections[router.db_for_write(Conversation)]
    quote = connection.ops.quote_name
    field = Conversation._meta.get_field
    pk = Conversation._meta.pk
    keys = [pk.get_db_prep_value(key, connection) for key in by_conversation]
    added = list(by_conversation.values())
    # column: (its new value given the CASE, that conversation's value).
    columns = {
        "message_count": ("{case}", [seqs[a[0].conversation_id] for a in added]),
        **{
            name: (
                "{column} + {case}",
                [sum(getattr(m, name) for m in a) for a in added],
            )
            for name in ("prompt_tokens", "completion_tokens", "cached_tokens")
        },
        # SQLite keeps decimals as numbers only when cast, as the ORM casts them.
        "cost": (
            "CAST({column} + {case} AS NUMERIC)",
            [sum((m.cost for m in a), start=Decimal(0)) for a in added],
        ),
        "last_message_at": ("{case}", [max(m.created_at for m in a) for a in added]),
    }
    clauses, params = [], []
    for name, (template, values) in columns.items():
        column = quote(field(name).column)
        then = "CAST(%s AS NUMERIC)" if name == "cost" else "%s"
        case = f"CASE {quote(pk.column)} {f'WHEN %s THEN {then} ' * len(keys)}END"
        clauses.append(f"{column} = {template.format(column=column, case=case)}")
        for key, value in zip(keys, values, strict=True):
            params += [key, field(name).get_db_prep_save(value, connection)]
    clauses.append(f"{quote(field('updated_at').column)} = %s")
    params.append(field("updated_at").get_db_prep_save(timezone.now(), connection))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(Conversation._meta.db_table)} SET {', '.join(clauses)} "
            f"WHERE {quote(pk.column)} IN ({', '.join(['%s'] * len(keys))})",
            [*params, *keys],
        )


def _participants_count(new: list[Message]) -> None:
    """Senders and recipients become participants; senders' counts grow."""
    sent: dict[tuple[Any, Any], int] = {}
    involved: set[tuple[Any, Any]] = set()
    for m in new:
        if m.sender_id:
            key = (m.conversation_id, m.sender_id)
            sent[key] = sent.get(key, 0) + 1
        involved.update(
            (m.conversation_id, uuid.UUID(agent_id)) for agent_id in m.recipient_ids
        )
    involved |= set(sent)
    if not involved:
        return
    Participant.objects.bulk_create(
        [
            Participant(conversation_id=c, agent_id=a)
            for c, a in sorted(involved, key=str)
        ],
        ignore_conflicts=True,
    )
    if not sent:
        return
    # Only appenders write these counts, and they hold the conversations'
    # locks: one UPDATE per distinct count, by primary key.
    found = Participant.objects.filter(
        conversation_id__in={c for c, _ in sent}, agent_id__in={a for _, a in sent}
    ).values_list("pk", "conversation_id", "agent_id")
    by_count: dict[int, list[int]] = {}
    for pk, conversation_id, agent_id in found:
        n = sent.get((conversation_id, agent_id))
        if n:
            by_count.setdefault(n, []).append(pk)
    for n, pks in sorted(by_count.items()):
        Participant.objects.filter(pk__in=sorted(pks)).update(
            message_count=F("message_count") + n
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


MESSAGE_SENDER_KEYS = frozenset({"message", "sender"})


class _SenderPrefixed(_Prefixed):
    """Re-raises a ValidationError with its fields named `senders[i].field`."""

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.index is not None and isinstance(exc, ValidationError):
            raise ValidationError(
                {f"senders[{self.index}].{k}": v for k, v in exc.fields.items()}
            ) from exc
        return False


def _sender_fills(project: Project, senders: Any) -> list[tuple[uuid.UUID, Agent]]:
    """(message id, agent) per item, or the first bad item's field error."""
    if not isinstance(senders, list) or not senders:
        raise ValidationError({"senders": "Send a non-empty list."})
    if len(senders) > MAX_MESSAGES_PER_APPEND:
        raise ValidationError(
            {"senders": f"At most {MAX_MESSAGES_PER_APPEND} messages at once."}
        )
    many = len(senders) > 1
    agents = Resolver(Agent, project=project)
    for spec in senders:
        if isinstance(spec, dict):
            agents.want(spec.get("sender"))
    parsed: list[tuple[uuid.UUID, Any]] = []
    for index, spec in enumerate(senders):
        with _SenderPrefixed(index if many else None):
            if not isinstance(spec, dict):
                raise ValidationError(
                    {"non_field_errors": "Each item must be a JSON object."}
                )
            unknown = set(spec) - MESSAGE_SENDER_KEYS
            if unknown:
                raise ValidationError(dict.fromkeys(sorted(unknown), "Unknown field."))
            message_id = parse_uuid(spec.get("message"), field="message")
            if message_id is None:
                raise ValidationError({"message": "This field is required."})
            if spec.get("sender") in (None, ""):
                raise ValidationError({"sender": "This field is required."})
            parsed.append((message_id, spec["sender"]))
    stored = set(
        Message.objects.filter(project=project, pk__in={pk for pk, _ in parsed})
        .order_by()
        .values_list("pk", flat=True)
    )
    fills = []
    for index, (message_id, sender) in enumerate(parsed):
        with _SenderPrefixed(index if many else None):
            if message_id not in stored:
                raise ValidationError(
                    {"message": f"No message {message_id} in this project."}
                )
            fills.append((message_id, agents.one(field="sender", value=sender)))
    return fills


@journaled()
def message_sender_set_many(
    *,
    project: Project,
    senders: list[dict[str, Any]],
    actor: Actor = SYSTEM,
) -> list[tuple[Message, bool]]:
    """Give messages stored without a sender the agent that sent them.

    Each item is `{"message": id, "sender": agent id}` of `project`. Only an
    empty sender is filled: the same sender again changes nothing (False),
    another one is refused, so a sender once set is never replaced. The
    roll-ups move as if the message had been appended with that sender: the
    agent's message count, usage and latency, and its participation in the
    conversation with its message count. One `message.updated` event and
    audit record per message filled. Raises on the first bad item, having
    written nothing.
    """
    fills = _sender_fills(project, senders)
    ids = {pk for pk, _ in fills}
    # The conversations' locks, in key order within this call as appenders
    # take them: their participants' counts are written under them. (A batch
    # that appends and fills takes them twice; PostgreSQL's rare deadlock
    # between two such batches is retried by ingest.)
    locked = {
        c.pk: c
        for c in Conversation.objects.select_for_update(of=("self",))
        .filter(
            pk__in=Message.objects.filter(pk__in=ids)
            .order_by()
            .values("conversation_id")
        )
        .order_by("pk")
    }
    stored = {m.pk: m for m in Message.objects.filter(pk__in=ids).order_by()}
    many = len(fills) > 1
    results: list[tuple[Message, bool]] = []
    filled: list[Message] = []
    for index, (message_id, agent) in enumerate(fills):
        message = stored.get(message_id)
        if message is None or message.conversation_id not in locked:
            # Deleted (pruned) since it was checked.
            field = f"senders[{index}].message" if many else "message"
            raise ValidationError({field: f"No message {message_id} in this project."})
        if message.sender_id is None:
            message.sender_id = agent.pk
            message.recipient_ids = []
            filled.append(message)
            results.append((message, True))
        elif message.sender_id == agent.pk:
            results.append((message, False))
        else:
            field = f"senders[{index}].sender" if many else "sender"
            raise Conflict(
                f"{field}: message {message_id} was sent by agent "
                f"{message.sender_id}; a sender once set is not replaced."
            )
    if not filled:
        return results
    by_sender: dict[Any, list[Any]] = {}
    for message in filled:
        by_sender.setdefault(message.sender_id, []).append(message.pk)
    for sender_id, pks in sorted(by_sender.items(), key=lambda kv: str(kv[0])):
        Message.objects.filter(pk__in=pks, sender__isnull=True).update(
            sender_id=sender_id
        )
    # The sender's roll-ups only: the conversation, its task and workflow
    # counted the message when it was appended.
    messages_rollup(messages=filled)
    _participants_count(filled)
    audit_events_record(
        project_id=project.pk,
        actor=actor,
        events=[
            {
                "kind": EventKind.MESSAGE_UPDATED,
                "conversation_id": m.conversation_id,
                "task_id": locked[m.conversation_id].task_id,
                "payload": {
                    "message": str(m.pk),
                    "conversation": str(m.conversation_id),
                    "seq": m.seq,
                    "sender": str(m.sender_id),
                    "changes": {"sender": [None, str(m.sender_id)]},
                },
            }
            for m in filled
        ],
    )
    audit_logs_record(
        project_id=project.pk,
        actor=actor,
        entries=[
            {
                "action": AuditAction.MESSAGE_UPDATED,
                "obj": m,
                "changes": {"sender": [None, str(m.sender_id)]},
            }
            for m in filled
        ],
    )
    return results


def message_sender_set(
    *,
    message: Message,
    sender: Agent | uuid.UUID | str,
    actor: Actor = SYSTEM,
) -> tuple[Message, bool]:
    """Fill one message's empty sender; see message_sender_set_many."""
    with transaction.atomic():
        return message_sender_set_many(
            project=message.project,
            senders=[{"message": message.pk, "sender": getattr(sender, "pk", sender)}],
            actor=actor,
        )[0]
