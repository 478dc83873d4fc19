"""Query-string filters of the conversation and message lists."""

from __future__ import annotations

import django_filters
from django import forms

from conversations.models import (
    Conversation,
    ConversationStatus,
    Message,
    MessageRole,
)
from swarmsite.filters import UTCDateTimeFilter

INT32_MAX = 2**31 - 1


class IntegerFilter(django_filters.NumberFilter):
    """A whole-number filter; decimals are refused, not truncated."""

    field_class = forms.IntegerField


class ConversationFilterSet(django_filters.FilterSet):
    task = django_filters.UUIDFilter(field_name="task_id")
    status = django_filters.MultipleChoiceFilter(choices=ConversationStatus.choices)
    # A participant link is unique per agent, so this join adds no duplicates.
    participant = django_filters.UUIDFilter(field_name="participant_links__agent_id")
    created_after = UTCDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Conversation
        fields = ["task", "status", "participant", "created_after", "created_before"]


class MessageFilterSet(django_filters.FilterSet):
    after_seq = IntegerFilter(
        field_name="seq", lookup_expr="gt", min_value=0, max_value=INT32_MAX
    )
    sender = django_filters.UUIDFilter(field_name="sender_id")
    role = django_filters.MultipleChoiceFilter(choices=MessageRole.choices)

    class Meta:
        model = Message
        fields = ["after_seq", "sender", "role"]
