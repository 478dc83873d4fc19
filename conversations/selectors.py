"""Reads of conversations and messages shared by the admin, API and commands."""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from conversations.models import Conversation, Message
from swarmsite.errors import NotFound
from swarmsite.models import Project


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
