"""The factories create through the services, so derived state holds."""

import pytest

from audit.models import Event
from tests.conversations.factories import ConversationFactory, MessageFactory
from tests.tasks.factories import AgentFactory, AgentRunFactory, TaskFactory

pytestmark = pytest.mark.django_db


def test_a_factory_run_rolls_its_usage_up_into_its_task_and_agent(project, agent):
    task = TaskFactory(project=project)
    AgentRunFactory(project=project, task=task, agent=agent, prompt_tokens=7)
    task.refresh_from_db()
    agent.refresh_from_db()
    assert task.prompt_tokens == 7
    assert agent.runs_count == 1
    assert Event.objects.filter(task_id=task.pk, kind="task.created").exists()


def test_factory_messages_get_consecutive_seqs_and_count_on_the_conversation(
    project,
):
    conversation = ConversationFactory(project=project)
    messages = MessageFactory.create_batch(3, conversation=conversation)
    conversation.refresh_from_db()
    assert [m.seq for m in messages] == [1, 2, 3]
    assert conversation.message_count == 3


def test_factories_name_each_object_apart(project):
    names = {a.name for a in AgentFactory.create_batch(3, project=project)}
    assert len(names) == 3
