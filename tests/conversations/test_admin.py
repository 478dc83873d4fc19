import pytest
from django.urls import reverse

from audit.models import Event, EventKind
from conversations.models import Conversation, Message, Participant
from conversations.services import message_append
from tests.conftest import count_queries
from tests.conversations.factories import ConversationFactory
from tests.tasks.factories import AgentFactory
from tests.utils import add_inline_row, changeform_data, inline_prefix

pytestmark = pytest.mark.django_db

MESSAGES = reverse("admin:conversations_message_changelist")
CONVERSATIONS = reverse("admin:conversations_conversation_changelist")


@pytest.fixture
def conversation(project, agent, task):
    return ConversationFactory(
        project=project, task=task, title="Planning", participants=[agent.pk]
    )


def _append(conversation, count: int, *, start: int = 0, sender=None) -> None:
    message_append(
        conversation=conversation,
        messages=[
            {
                "role": "assistant" if n % 2 else "user",
                "content": f"message number {n}",
                "sender": str(sender.pk) if sender and n % 2 else None,
                "prompt_tokens": 3,
            }
            for n in range(start, start + count)
        ],
    )


def _change_url(obj) -> str:
    meta = obj._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])


# Conversations ----------------------------------------------------------------


def test_conversation_add_goes_through_conversation_create(
    staff_client, project, agent, task
):
    url = reverse("admin:conversations_conversation_add")
    response = staff_client.get(url)
    data = changeform_data(
        response, project=str(project.pk), task=str(task.pk), title="Retro"
    )
    add_inline_row(data, inline_prefix(response, Participant), agent=agent.pk)
    response = staff_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    conversation = Conversation.objects.get(title="Retro")
    assert (conversation.task, conversation.status) == (task, "active")
    assert list(conversation.participants.all()) == [agent]
    event = Event.objects.get(kind=EventKind.CONVERSATION_CREATED)
    assert event.conversation_id == conversation.pk
    assert (event.actor_type, event.actor_label) == ("user", "admin")


def test_conversation_change_goes_through_conversation_update(
    staff_client, project, agent, conversation
):
    reviewer = AgentFactory(project=project, name="reviewer")
    url = _change_url(conversation)
    response = staff_client.get(url)
    prefix = inline_prefix(response, Participant)
    data = changeform_data(
        response,
        title="Planning (closed)",
        status="closed",
        **{f"{prefix}-0-DELETE": "on"},
    )
    add_inline_row(data, prefix, agent=reviewer.pk)
    response = staff_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    conversation.refresh_from_db()
    assert (conversation.title, conversation.status) == ("Planning (closed)", "closed")
    links = {link.agent: link for link in conversation.participant_links.all()}
    assert [a for a, link in links.items() if link.active] == [reviewer]
    assert links[agent].left_at is not None
    event = Event.objects.get(kind=EventKind.CONVERSATION_UPDATED)
    assert set(event.payload["changes"]) == {"title", "status", "participants"}
    assert event.actor_type == "user"


def test_conversation_change_page_pages_messages_in_seq_order(
    staff_client, agent, conversation
):
    _append(conversation, 60, sender=agent)
    url = _change_url(conversation)
    response = staff_client.get(url)
    assert response.status_code == 200
    (messages,) = [
        i.formset
        for i in response.context["inline_admin_formsets"]
        if i.formset.model is Message
    ]
    assert [f.instance.seq for f in messages.forms] == list(range(1, 51))
    html = response.content.decode()
    assert "messages 1–50 of 60" in html.lower()
    assert "?after_seq=50" in html
    response = staff_client.get(url, {"after_seq": 50})
    (messages,) = [
        i.formset
        for i in response.context["inline_admin_formsets"]
        if i.formset.model is Message
    ]
    assert [f.instance.seq for f in messages.forms] == list(range(51, 61))
    assert "messages 51–60 of 60" in response.content.decode().lower()


def test_conversation_change_page_queries_do_not_grow_with_messages(
    staff_client, agent, conversation, django_assert_max_num_queries
):
    url = _change_url(conversation)
    _append(conversation, 4, sender=agent)
    few = count_queries(staff_client, url)
    _append(conversation, 40, start=4, sender=agent)
    with django_assert_max_num_queries(few):
        assert staff_client.get(url).status_code == 200


def test_conversation_changelist_filters_and_searches(staff_client, conversation, task):
    response = staff_client.get(CONVERSATIONS, {"q": "plan"})
    assert list(response.context["cl"].result_list) == [conversation]
    response = staff_client.get(CONVERSATIONS, {"q": str(task.pk)})
    assert list(response.context["cl"].result_list) == [conversation]
    response = staff_client.get(CONVERSATIONS, {"status__exact": "closed"})
    assert list(response.context["cl"].result_list) == []


# Messages are read-only ---------------------------------------------------------


def test_messages_refuse_add_change_and_delete(staff_client, conversation):
    _append(conversation, 1)
    message = Message.objects.get()
    assert (
        staff_client.get(reverse("admin:conversations_message_add")).status_code == 403
    )
    url = _change_url(message)
    assert staff_client.get(url).status_code == 200
    assert staff_client.post(url, {"content": "rewritten"}).status_code == 403
    delete = reverse("admin:conversations_message_delete", args=[message.pk])
    assert staff_client.post(delete, {"post": "yes"}).status_code == 403
    message.refresh_from_db()
    assert message.content == "message number 0"


def test_participants_are_read_only_outside_their_conversation(
    staff_client, conversation
):
    participant = Participant.objects.get()
    add = reverse("admin:conversations_participant_add")
    assert staff_client.get(add).status_code == 403
    assert staff_client.post(_change_url(participant), {}).status_code == 403


def test_message_changelist_shows_previews_and_filters(
    staff_client, agent, conversation
):
    message_append(
        conversation=conversation,
        messages=[{"role": "tool", "content": "x" * 5000, "tool_call_id": "call-7"}],
    )
    _append(conversation, 2, sender=agent)
    response = staff_client.get(MESSAGES)
    assert [m.seq for m in response.context["cl"].result_list] == [1, 2, 3]
    assert "x" * 5000 not in response.content.decode()
    response = staff_client.get(MESSAGES, {"q": "call-7"})
    assert [m.seq for m in response.context["cl"].result_list] == [1]
    response = staff_client.get(MESSAGES, {"role__exact": "assistant"})
    assert [m.role for m in response.context["cl"].result_list] == ["assistant"]
    response = staff_client.get(MESSAGES, {"q": str(conversation.pk)})
    assert len(response.context["cl"].result_list) == 3


def test_message_changelist_queries_do_not_grow_with_rows(
    staff_client, agent, conversation, django_assert_max_num_queries
):
    _append(conversation, 5, sender=agent)
    few = count_queries(staff_client, MESSAGES)
    _append(conversation, 45, start=5, sender=agent)
    with django_assert_max_num_queries(few):
        response = staff_client.get(MESSAGES)
    assert len(response.context["cl"].result_list) == 50
