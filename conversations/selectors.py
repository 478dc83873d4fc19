"""Reads of conversations and messages shared by the admin, API and commands."""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.db.models import Prefetch, QuerySet

from conversations.models import Conversation, Message, Participant
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
                queryset=Participant.objects.only(
                    "id", "conversation_id", "agent_id", "joined_at"
                ).order_by("joined_at", "id"),
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
    messages = Message.objects.filter(conversation=conversation).order_by("seq")
    if not full:
        messages = messages.defer(*MESSAGE_BIG_FIELDS)
    return messages
