"""Query-string filters of the conversation, message and memory lists."""

from __future__ import annotations

import django_filters
from django import forms

from conversations.models import (
    Conversation,
    ConversationStatus,
    Memory,
    Message,
    MessageRole,
)
from conversations.selectors import memories_tagged, messages_to, messages_unread_by
from swarmsite.filters import StrictFilterSet, UTCDateTimeFilter

INT32_MAX = 2**31 - 1


class IntegerFilter(django_filters.NumberFilter):
    """A whole-number filter; decimals are refused, not truncated."""

    field_class = forms.IntegerField


class ConversationFilterSet(StrictFilterSet):
    task = django_filters.UUIDFilter(field_name="task_id")
    status = django_filters.MultipleChoiceFilter(choices=ConversationStatus.choices)
    # A participant link is unique per agent, so this join adds no duplicates.
    participant = django_filters.UUIDFilter(field_name="participant_links__agent_id")
    created_after = UTCDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Conversation
        fields = ["task", "status", "participant", "created_after", "created_before"]


class MessageFilterSet(StrictFilterSet):
    after_seq = IntegerFilter(
        field_name="seq", lookup_expr="gt", min_value=0, max_value=INT32_MAX
    )
    sender = django_filters.UUIDFilter(field_name="sender_id")
    role = django_filters.MultipleChoiceFilter(choices=MessageRole.choices)

    class Meta:
        model = Message
        fields = ["after_seq", "sender", "role"]


class MessageFeedFilterSet(StrictFilterSet):
    """Filters of the cross-conversation message list (an inbox)."""

    sender = django_filters.UUIDFilter(field_name="sender_id")
    recipient = django_filters.UUIDFilter(method="filter_recipient")
    thread = django_filters.UUIDFilter(field_name="thread")
    conversation = django_filters.UUIDFilter(field_name="conversation_id")
    unread_by = django_filters.UUIDFilter(method="filter_unread_by")
    role = django_filters.MultipleChoiceFilter(choices=MessageRole.choices)
    created_after = UTCDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Message
        fields = [
            "sender",
            "recipient",
            "thread",
            "conversation",
            "unread_by",
            "role",
            "created_after",
            "created_before",
        ]

    def filter_recipient(self, queryset, name, value):
        return messages_to(queryset, value)

    def filter_unread_by(self, queryset, name, value):
        return messages_unread_by(queryset, value)


class MemoryFilterSet(StrictFilterSet):
    """Filters of the memory list; `q` (search) is read by the view."""

    agent = django_filters.UUIDFilter(field_name="agent_id")
    namespace = django_filters.CharFilter(field_name="namespace")
    tag = django_filters.CharFilter(method="filter_tag")
    task = django_filters.UUIDFilter(field_name="task_id")
    conversation = django_filters.UUIDFilter(field_name="conversation_id")

    class Meta:
        model = Memory
        fields = ["agent", "namespace", "tag", "task", "conversation"]

    def filter_tag(self, queryset, name, value):
        return memories_tagged(queryset, value)
