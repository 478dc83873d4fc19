"""Reads of conversations, participants, messages and memories shared by the
admin, API and commands."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet, Subquery, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.utils import timezone

from conversations import search
from conversations.models import (
    Conversation,
    Memory,
    Message,
    MessageRecipient,
    Participant,
)
from swarmsite.errors import NotFound
from swarmsite.models import Project

# Left out of message lists unless asked for: they can be large.
MESSAGE_BIG_FIELDS = ("content", "tool_calls", "metadata")


def conversation_get(
    *, project: Project, conversation_id: uuid.UUID | str
) -> Conversation:
    """One conversation of the project; another project's is not found."""
    try:
        return Conversation.objects.select_related("project", "task").get(
            project=project, pk=conversation_id
        )
    except (Conversation.DoesNotExist, ValueError, ValidationError) as exc:
        raise NotFound(f"No conversation {conversation_id}.") from exc


def message_list(
    *, conversation: Conversation, after_seq: int = 0
) -> QuerySet[Message]:
    """A conversation's messages after `after_seq`, in seq order."""
    return (
        Message.objects.filter(conversation=conversation, seq__gt=after_seq)
        .select_related("sender")
        .order_by("seq")
    )


def conversation_list(*, project: Project) -> QuerySet[Conversation]:
    """A project's conversations, newest first, with their participants' ids."""
    return (
        Conversation.objects.filter(project=project)
        .prefetch_related(
            Prefetch(
                "participant_links",
                queryset=Participant.objects.filter(active=True)
                .only("id", "conversation_id", "agent_id", "joined_at")
                .order_by("joined_at", "id"),
            )
        )
        .order_by("-created_at", "-id")
    )


def conversation_detail(
    *, project: Project, conversation_id: uuid.UUID | str
) -> Conversation:
    """One conversation of the project with its participants' ids."""
    try:
        return conversation_list(project=project).get(pk=conversation_id)
    except (Conversation.DoesNotExist, ValueError, ValidationError) as exc:
        raise NotFound(f"No conversation {conversation_id}.") from exc


def message_page_queryset(
    *, conversation: Conversation, full: bool = True
) -> QuerySet[Message]:
    """A conversation's messages in seq order, for a paginated list.

    Without `full`, the content, tool calls and metadata are not loaded.
    """
    messages = (
        Message.objects.filter(conversation=conversation)
        .prefetch_related(_recipients())
        .order_by("seq")
    )
    if not full:
        messages = messages.defer(*MESSAGE_BIG_FIELDS)
    return messages


def _recipients() -> Prefetch:
    return Prefetch(
        "recipient_links",
        queryset=MessageRecipient.objects.only("id", "message_id", "agent_id").order_by(
            "id"
        ),
    )


def participant_list(*, conversation: Conversation) -> QuerySet[Participant]:
    """A conversation's participants, former ones included, in join order."""
    return Participant.objects.filter(conversation=conversation).order_by(
        "joined_at", "id"
    )


def message_get(*, conversation: Conversation, message_id: uuid.UUID | str) -> Message:
    """One message of the conversation; any other is not found."""
    try:
        return Message.objects.get(conversation=conversation, pk=message_id)
    except (Message.DoesNotExist, ValueError, ValidationError) as exc:
        raise NotFound(f"No message {message_id} in this conversation.") from exc


def message_feed(*, project: Project, full: bool = True) -> QuerySet[Message]:
    """A project's messages across conversations, in creation order."""
    messages = (
        Message.objects.filter(project=project)
        .prefetch_related(_recipients())
        .order_by("created_at", "id")
    )
    if not full:
        messages = messages.defer(*MESSAGE_BIG_FIELDS)
    return messages


def messages_to(messages: QuerySet[Message], agent_id: uuid.UUID) -> QuerySet[Message]:
    """Those of `messages` addressed to the agent."""
    return messages.filter(
        Exists(
            MessageRecipient.objects.filter(
                message_id=OuterRef("pk"), agent_id=agent_id
            )
        )
    )


def messages_unread_by(
    messages: QuerySet[Message], agent_id: uuid.UUID
) -> QuerySet[Message]:
    """Those of `messages` addressed to the agent after its read marker."""
    marker = Participant.objects.filter(
        conversation_id=OuterRef("conversation_id"), agent_id=agent_id
    ).values("last_read_seq")[:1]
    return messages_to(messages, agent_id).filter(
        seq__gt=Coalesce(Subquery(marker), Value(0))
    )


# Memories -------------------------------------------------------------------

# A search ranks every match, so its pages stop after this many results.
MAX_SEARCH_RESULTS = 1000


def _live(now: datetime | None = None) -> Q:
    return Q(expires_at__isnull=True) | Q(expires_at__gt=now or timezone.now())


def memory_get(*, project: Project, memory_id: uuid.UUID | str) -> Memory:
    """One unexpired memory of the project; others are not found."""
    try:
        return (
            Memory.objects.filter(_live())
            .select_related("project")
            .get(project=project, uuid=memory_id)
        )
    except (Memory.DoesNotExist, ValueError, ValidationError) as exc:
        raise NotFound(f"No memory {memory_id}.") from exc


def memories_tagged(memories: QuerySet[Memory], tag: str) -> QuerySet[Memory]:
    """Those of `memories` that carry `tag`."""
    if connection.vendor == "postgresql":
        return memories.filter(tags__contains=[tag])
    table = Memory._meta.db_table
    return memories.filter(
        id__in=RawSQL(
            f"SELECT m.id FROM {table} m, json_each(m.tags) t WHERE t.value = %s",
            [tag],
        )
    )


def memory_list(
    *,
    project: Project,
    agent: uuid.UUID | None = None,
    namespace: str | None = None,
    tag: str | None = None,
    task: uuid.UUID | None = None,
    conversation: uuid.UUID | None = None,
) -> QuerySet[Memory]:
    """A project's unexpired memories matching the filters, newest first."""
    memories = Memory.objects.filter(_live(), project=project)
    if agent is not None:
        memories = memories.filter(agent_id=agent)
    if namespace is not None:
        memories = memories.filter(namespace=namespace)
    if task is not None:
        memories = memories.filter(task_id=task)
    if conversation is not None:
        memories = memories.filter(conversation_id=conversation)
    if tag is not None:
        memories = memories_tagged(memories, tag)
    return memories.order_by("-created_at", "-id")


@dataclass
class SearchPage:
    """One page of ranked search results and whether more follow."""

    results: list[Memory]
    more: bool


def memory_search(
    *, memories: QuerySet[Memory], text: str, offset: int = 0, limit: int = 50
) -> SearchPage:
    """Memories of `memories` matching the words of `text`, best first.

    Entries holding every word are searched first; when none does, those
    holding any of them. PostgreSQL ranks with `ts_rank_cd` over the
    weighted `tsvector` (the first SEARCH_CANDIDATES matches), SQLite with
    FTS5's `bm25()`; each result gets its `score` (higher is better on
    both). Pages end at MAX_SEARCH_RESULTS.
    """
    words = search.query_words(text)
    limit = max(0, min(limit, MAX_SEARCH_RESULTS - offset))
    if not words or limit == 0:
        return SearchPage([], False)
    rows: list[Memory] = []
    for every in (True, False) if len(words) > 1 else (True,):
        if connection.vendor == "postgresql":
            ranked = _pg_ranked(memories, search.pg_query(words, every=every))
        else:
            ranked = _sqlite_ranked(memories, search.fts5_query(words, every=every))
        rows = ranked(offset, limit + 1)
        # The choice depends on the data only, so every page makes the same.
        if rows or offset > 0 and every and ranked(0, 1):
            break
    more = len(rows) > limit and offset + limit < MAX_SEARCH_RESULTS
    return SearchPage(rows[:limit], more)


# On PostgreSQL a search ranks at most this many matches: a query whose
# words match more entries ranks the first ones the index returns. Ranking
# reads each match's tsvector, so this bounds a search's cost.
SEARCH_CANDIDATES = 5000


def _pg_ranked(memories: QuerySet[Memory], query: str):
    table = Memory._meta.db_table
    tsquery = f"websearch_to_tsquery('{search.PG_CONFIG}', %s)"
    # Two statements: the extra WHERE names the table, which a subquery
    # would alias (and so correlate with the outer query).
    candidates: list[int] | None = None

    def page(offset: int, limit: int) -> list[Memory]:
        nonlocal candidates
        if candidates is None:
            candidates = list(
                memories.order_by()
                .extra(where=[f"{table}.search_vector @@ {tsquery}"], params=[query])
                .values_list("id", flat=True)[:SEARCH_CANDIDATES]
            )
        if not candidates:
            return []
        ranked = (
            Memory.objects.filter(id__in=candidates)
            .annotate(
                score=RawSQL(f"ts_rank_cd({table}.search_vector, {tsquery})", [query])
            )
            .order_by("-score", "-id")
        )
        return list(ranked[offset : offset + limit])

    return page


def _sqlite_ranked(memories: QuerySet[Memory], match: str):
    fts = search.FTS_TABLE
    weights = ", ".join(str(w) for w in search.BM25_WEIGHTS)
    inner, params = memories.order_by().values("id").query.sql_with_params()

    def page(offset: int, limit: int) -> list[Memory]:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT rowid, bm25({fts}, {weights}) AS score FROM {fts} "
                f"WHERE {fts} MATCH %s AND +rowid IN ({inner}) "
                "ORDER BY score, rowid DESC LIMIT %s OFFSET %s",
                [match, *params, limit, offset],
            )
            scores = dict(cursor.fetchall())
        found = Memory.objects.in_bulk(list(scores))
        rows = []
        for pk, score in scores.items():
            memory = found[pk]
            # bm25 is lower for better matches; the API says higher is better.
            memory.score = -score
            rows.append(memory)
        return rows

    return page
