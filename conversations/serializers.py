"""API shapes of conversations and messages: explicit input and output fields."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from conversations.models import (
    Conversation,
    ConversationStatus,
    Message,
    MessageRole,
)
from conversations.selectors import MESSAGE_BIG_FIELDS
from swarmsite.serializers import (
    DecimalAmountField,
    JSONValueField,
    StrictInputSerializer,
)

INT32_MAX = 2**31 - 1
MAX_PARTICIPANTS = 1000


def _id(**kwargs) -> serializers.UUIDField:
    return serializers.UUIDField(required=False, allow_null=True, **kwargs)


class StringField(serializers.CharField):
    """A CharField that refuses numbers instead of turning them into text."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


def _text(max_length: int | None = None) -> serializers.CharField:
    return StringField(
        max_length=max_length,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
    )


def _participants() -> serializers.ListField:
    return serializers.ListField(
        child=serializers.UUIDField(), max_length=MAX_PARTICIPANTS, required=False
    )


# Conversations ------------------------------------------------------------

CONVERSATION_ROLLUPS = (
    "message_count",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost",
    "last_message_at",
)
CONVERSATION_READ_ONLY = (
    *CONVERSATION_ROLLUPS,
    "created_at",
    "updated_at",
    "project",
    "messages",
)


class ConversationSerializer(serializers.ModelSerializer):
    participants = serializers.SerializerMethodField()

    class Meta:
        model = Conversation
        fields = [
            "id",
            "task",
            "title",
            "status",
            "participants",
            "metadata",
            *CONVERSATION_ROLLUPS,
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.UUIDField()))
    def get_participants(self, conversation: Conversation) -> list[str]:
        # In join order, from the selector's prefetch of the links.
        return [str(link.agent_id) for link in conversation.participant_links.all()]


class ConversationCreateInputSerializer(StrictInputSerializer):
    read_only_names = (*CONVERSATION_READ_ONLY, "status")

    id = serializers.UUIDField(required=False)
    task = _id()
    title = _text(max_length=500)
    participants = _participants()
    metadata = JSONValueField(kind=dict, required=False)


class ConversationUpdateInputSerializer(StrictInputSerializer):
    read_only_names = (*CONVERSATION_READ_ONLY, "id", "task")

    title = _text(max_length=500)
    status = serializers.ChoiceField(choices=ConversationStatus.choices, required=False)
    participants = _participants()
    metadata = JSONValueField(kind=dict, required=False)


# Messages -----------------------------------------------------------------

MESSAGE_LIST_FIELDS = [
    "id",
    "conversation",
    "seq",
    "role",
    "sender",
    "tool_call_id",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost",
    "latency_ms",
    "reply_to",
    "created_at",
]


class MessageListSerializer(serializers.ModelSerializer):
    class Meta:
        model = Message
        fields = MESSAGE_LIST_FIELDS
        read_only_fields = fields


class MessageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Message
        fields = [*MESSAGE_LIST_FIELDS, *MESSAGE_BIG_FIELDS]
        read_only_fields = fields


def _count() -> serializers.IntegerField:
    return serializers.IntegerField(required=False, min_value=0, max_value=INT32_MAX)


class MessageInputSerializer(StrictInputSerializer):
    """One message to append; `seq` and the time are the server's."""

    read_only_names = ("seq", "conversation", "project", "created_at")

    id = serializers.UUIDField(required=False)
    role = serializers.ChoiceField(choices=MessageRole.choices)
    content = _text()
    sender = _id()
    tool_calls = JSONValueField(kind=list, required=False, allow_null=True)
    tool_call_id = _text(max_length=200)
    model = _text(max_length=200)
    prompt_tokens = _count()
    completion_tokens = _count()
    cached_tokens = _count()
    cost = DecimalAmountField(max_digits=16, decimal_places=6, required=False)
    latency_ms = serializers.FloatField(min_value=0, required=False, allow_null=True)
    reply_to = _id()
    metadata = JSONValueField(kind=dict, required=False)
