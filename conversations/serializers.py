"""API shapes of conversations, participants, messages and memories: explicit
input and output fields."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from conversations.models import (
    DEFAULT_NAMESPACE,
    Conversation,
    ConversationStatus,
    Memory,
    Message,
    MessageRole,
    Participant,
)
from conversations.selectors import MESSAGE_BIG_FIELDS
from swarmsite.serializers import (
    DecimalAmountField,
    JSONValueField,
    StrictCharField,
    StrictFloatField,
    StrictInputSerializer,
    StrictIntegerField,
    StrictModelSerializer,
    StrictUUIDField,
    UTCDateTimeField,
)

INT32_MAX = 2**31 - 1
MAX_PARTICIPANTS = 1000


def _id(**kwargs) -> StrictUUIDField:
    return StrictUUIDField(required=False, allow_null=True, **kwargs)


def _text(max_length: int | None = None) -> StrictCharField:
    return StrictCharField(
        max_length=max_length,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
    )


def _participants() -> serializers.ListField:
    return serializers.ListField(
        child=StrictUUIDField(), max_length=MAX_PARTICIPANTS, required=False
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


class ConversationSerializer(StrictModelSerializer):
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

    id = StrictUUIDField(required=False)
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
    "thread",
    "recipients",
    "revision",
    "revised_at",
    "created_at",
]


class _MessageFields(StrictModelSerializer):
    recipients = serializers.SerializerMethodField()

    @extend_schema_field(serializers.ListField(child=serializers.UUIDField()))
    def get_recipients(self, message: Message) -> list[str]:
        # Set by message_append on new messages; else prefetched links.
        ids = getattr(message, "recipient_ids", None)
        if ids is not None:
            return list(ids)
        return [str(link.agent_id) for link in message.recipient_links.all()]


class MessageListSerializer(_MessageFields):
    class Meta:
        model = Message
        fields = MESSAGE_LIST_FIELDS
        read_only_fields = fields


class MessageSerializer(_MessageFields):
    class Meta:
        model = Message
        fields = [*MESSAGE_LIST_FIELDS, *MESSAGE_BIG_FIELDS]
        read_only_fields = fields


def _count() -> StrictIntegerField:
    return StrictIntegerField(required=False, min_value=0, max_value=INT32_MAX)


class MessageInputSerializer(StrictInputSerializer):
    """One message to append; `seq` and the time are the server's."""

    read_only_names = (
        "seq",
        "conversation",
        "project",
        "created_at",
        "thread",
        "revision",
        "revised_at",
    )

    id = StrictUUIDField(required=False)
    recipients = _participants()
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
    latency_ms = StrictFloatField(min_value=0, required=False, allow_null=True)
    reply_to = _id()
    metadata = JSONValueField(kind=dict, required=False)


class MessageReviseInputSerializer(StrictInputSerializer):
    """A message's new content; `id` names the operation."""

    read_only_names = ("revision", "revised_at", "seq", "role", "sender")

    id = StrictUUIDField(required=False)
    content = StrictCharField(allow_blank=True, trim_whitespace=False)


# Participants ---------------------------------------------------------------


class ParticipantSerializer(StrictModelSerializer):
    class Meta:
        model = Participant
        fields = [
            "conversation",
            "agent",
            "role",
            "joined_at",
            "left_at",
            "active",
            "message_count",
            "last_read_seq",
        ]
        read_only_fields = fields


PARTICIPANT_READ_ONLY = (
    "conversation",
    "joined_at",
    "left_at",
    "active",
    "message_count",
    "last_read_seq",
)


class ParticipantJoinInputSerializer(StrictInputSerializer):
    read_only_names = PARTICIPANT_READ_ONLY

    agent = StrictUUIDField()
    role = _text(max_length=100)


class ReadInputSerializer(StrictInputSerializer):
    """Move `agent`'s read marker to message number `seq` (never back)."""

    agent = StrictUUIDField()
    seq = StrictIntegerField(min_value=0, max_value=INT32_MAX)


# Memories -------------------------------------------------------------------

MEMORY_READ_ONLY = ("version", "created_at", "updated_at", "score", "project")


class MemorySerializer(StrictModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)

    class Meta:
        model = Memory
        fields = [
            "id",
            "agent",
            "namespace",
            "key",
            "content",
            "tags",
            "metadata",
            "task",
            "conversation",
            "expires_at",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class MemorySearchResultSerializer(MemorySerializer):
    """A search hit: the memory and its relevance (higher is better)."""

    score = serializers.FloatField(read_only=True, allow_null=True)

    class Meta(MemorySerializer.Meta):
        fields = [*MemorySerializer.Meta.fields, "score"]
        read_only_fields = fields


def _tags() -> serializers.ListField:
    return serializers.ListField(
        child=StrictCharField(max_length=100, allow_blank=False),
        max_length=100,
        required=False,
    )


class MemoryUpdateInputSerializer(StrictInputSerializer):
    """What PATCH may change; `id` names the operation."""

    read_only_names = (*MEMORY_READ_ONLY, "agent", "namespace", "key")

    id = StrictUUIDField(required=False)
    content = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)
    tags = _tags()
    metadata = JSONValueField(kind=dict, required=False)
    task = _id()
    conversation = _id()
    expires_at = UTCDateTimeField(required=False, allow_null=True)


class MemoryInputSerializer(MemoryUpdateInputSerializer):
    """A memory to write; with `key`, the entry of agent + namespace + key."""

    read_only_names = MEMORY_READ_ONLY

    content = StrictCharField(allow_blank=True, trim_whitespace=False)
    agent = _id()
    namespace = StrictCharField(
        max_length=200, required=False, default=DEFAULT_NAMESPACE, trim_whitespace=False
    )
    key = _text(max_length=500)
