"""Every write to conversations, participants, messages and memories.

A package by entity; every public name is re-exported here, so callers
import from `conversations.services`.
"""

from conversations.services.conversations import (
    conversation_create,
    conversation_create_many,
    conversation_update,
)
from conversations.services.memories import (
    MEMORY_PUT_KEYS,
    MEMORY_UPDATABLE_FIELDS,
    memory_delete,
    memory_put,
    memory_put_many,
    memory_update,
)
from conversations.services.messages import (
    MAX_MESSAGES_PER_APPEND,
    MESSAGE_FIELDS,
    message_append,
    message_append_one,
    message_revise,
    message_sender_set,
    message_sender_set_many,
    messages_append,
)
from conversations.services.participants import (
    participant_join,
    participant_leave,
    participant_read,
    participants_set,
)

__all__ = [
    "MAX_MESSAGES_PER_APPEND",
    "MEMORY_PUT_KEYS",
    "MEMORY_UPDATABLE_FIELDS",
    "MESSAGE_FIELDS",
    "conversation_create",
    "conversation_create_many",
    "conversation_update",
    "memory_delete",
    "memory_put",
    "memory_put_many",
    "memory_update",
    "message_append",
    "message_append_one",
    "message_revise",
    "message_sender_set",
    "message_sender_set_many",
    "messages_append",
    "participant_join",
    "participant_leave",
    "participant_read",
    "participants_set",
]
