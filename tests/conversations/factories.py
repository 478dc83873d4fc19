"""Factories of conversations and messages, created through the services
(see tests/swarmsite/factories.py for why); defaults are the services'."""

import factory
from factory.django import DjangoModelFactory

from conversations.models import Conversation, Message
from conversations.services import conversation_create, message_append
from tests.swarmsite.factories import ProjectFactory


class ConversationFactory(DjangoModelFactory[Conversation]):
    """A conversation of its project, about no task unless given one."""

    class Meta:
        model = Conversation

    project = factory.SubFactory(ProjectFactory)

    @classmethod
    def _create(cls, model_class, **kwargs) -> Conversation:
        return conversation_create(**kwargs)[0]


class MessageFactory(DjangoModelFactory[Message]):
    """One message appended to a conversation; other keys are message_append's."""

    class Meta:
        model = Message

    conversation = factory.SubFactory(ConversationFactory)
    role = "user"
    content = factory.Sequence(lambda n: f"Message {n}")

    @classmethod
    def _create(cls, model_class, **kwargs) -> Message:
        conversation = kwargs.pop("conversation")
        return message_append(conversation=conversation, messages=[kwargs])[0][0]
