import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import Event
from conversations.filters import ConversationFilterSet, MessageFilterSet
from conversations.models import Conversation, Message
from conversations.services import (
    conversation_create,
    conversation_update,
    message_append,
)
from swarmsite.pagination import MAX_PAGE_SIZE
from tests.audit.factories import table_counts
from tests.conftest import assert_error, assert_fields, count_queries
from tests.conversations.factories import ConversationFactory
from tests.tasks.factories import AgentFactory, TaskFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/conversations/"


@pytest.fixture
def conversation(project, task, agent):
    return ConversationFactory(
        project=project, task=task, title="Planning", participants=[agent.pk]
    )


@pytest.fixture
def foreign(other_project):
    """An agent, a task, a conversation and a message of another project."""
    agent = AgentFactory(project=other_project, name="spy")
    task = TaskFactory(project=other_project, title="Secret")
    conversation = ConversationFactory(
        project=other_project, task=task, participants=[agent.pk]
    )
    message = message_append(
        conversation=conversation, messages=[{"role": "user", "content": "psst"}]
    )[0][0]
    return {
        "agent": agent,
        "task": task,
        "conversation": conversation,
        "message": message,
    }


def _messages_url(conversation) -> str:
    return f"{URL}{conversation.pk}/messages/"


# Conversations ------------------------------------------------------------


def test_conversation_create_answers_201_with_task_participants_and_rollups(
    api, task, agent
):
    body = {
        "task": str(task.pk),
        "title": "Planning",
        "participants": [str(agent.pk)],
        "metadata": {"topic": "report"},
    }
    response = api.post(URL, body, format="json", HTTP_X_REQUEST_ID="req-c1")
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["task"] == str(task.pk)
    assert data["participants"] == [str(agent.pk)]
    assert (data["status"], data["message_count"], data["cost"]) == (
        "active",
        0,
        "0.000000",
    )
    event = Event.objects.get(kind="conversation.created", conversation_id=data["id"])
    assert (event.actor_type, event.correlation_id) == ("api_key", "req-c1")


def test_conversation_create_needs_no_field_at_all(api):
    response = api.post(URL, {}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["task"] is None


def test_conversation_create_with_a_known_id_is_idempotent_or_a_conflict(api, agent):
    conversation_id = str(uuid.uuid4())
    body = {"id": conversation_id, "title": "Once", "participants": [str(agent.pk)]}
    assert api.post(URL, body, format="json").status_code == 201
    again = api.post(URL, body, format="json")
    assert again.status_code == 200
    assert again.json()["id"] == conversation_id
    different = api.post(URL, {**body, "title": "Twice"}, format="json")
    assert_error(different, 409, "idempotency_conflict")
    assert Conversation.objects.filter(pk=conversation_id).count() == 1
    assert Event.objects.filter(kind="conversation.created").count() == 1


def test_conversation_create_with_another_projects_id_is_a_conflict(api, foreign):
    body = {"id": str(foreign["conversation"].pk)}
    assert_error(api.post(URL, body, format="json"), 409, "idempotency_conflict")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "x" * 501}, "title"),
        ({"title": "nul\x00"}, "title"),
        ({"id": "nope"}, "id"),
        ({"task": "nope"}, "task"),
        ({"task": str(uuid.uuid4())}, "task"),
        ({"participants": "x"}, "participants"),
        ({"participants": ["nope"]}, "participants.0"),
        ({"participants": [str(uuid.uuid4())]}, "participants"),
        ({"metadata": [1]}, "metadata"),
        ({"metadata": {"k": "\x00"}}, "metadata"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_conversation_create_refuses_bad_input_naming_the_field(api, body, field):
    before = table_counts()
    response = api.post(URL, body, format="json")
    assert field in assert_fields(response)
    assert table_counts() == before


def test_conversation_create_refuses_a_body_that_is_not_an_object(api):
    assert_fields(api.post(URL, [{"title": "t"}], format="json"))


@pytest.mark.parametrize(
    "field",
    [
        "status",
        "message_count",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cost",
        "last_message_at",
        "created_at",
        "updated_at",
        "project",
        "messages",
    ],
)
def test_conversation_create_refuses_read_only_fields(api, field):
    response = api.post(URL, {"title": "t", field: 7}, format="json")
    assert assert_fields(response) == {field: ["This field is read-only."]}
    assert not Conversation.objects.filter(title="t").exists()


@pytest.mark.parametrize("target", ["task", "agent"])
def test_conversation_create_refuses_another_projects_objects(api, foreign, target):
    field, value = {
        "task": ("task", str(foreign["task"].pk)),
        "agent": ("participants", [str(foreign["agent"].pk)]),
    }[target]
    response = api.post(URL, {field: value}, format="json")
    assert field in assert_fields(response)
    assert not Conversation.objects.filter(project__slug="default").exists()


def test_conversation_retrieve_shows_participants_in_join_order(
    api, project, conversation
):
    second = AgentFactory(project=project, name="a-second")
    conversation_update(
        conversation=conversation,
        participants=[*conversation.participants.all(), second],
    )
    response = api.get(f"{URL}{conversation.pk}/")
    assert response.status_code == 200
    assert response.json()["participants"][-1] == str(second.pk)
    assert api.get(f"{URL}{conversation.pk}").status_code == 200


def test_conversation_patch_changes_title_status_participants_metadata(
    api, project, conversation
):
    helper = AgentFactory(project=project, name="helper")
    body = {
        "title": "Renamed",
        "status": "closed",
        "participants": [str(helper.pk)],
        "metadata": {"k": 1},
    }
    response = api.patch(f"{URL}{conversation.pk}/", body, format="json")
    assert response.status_code == 200, response.content
    data = response.json()
    assert (data["title"], data["status"], data["metadata"]) == (
        "Renamed",
        "closed",
        {"k": 1},
    )
    assert data["participants"] == [str(helper.pk)]
    event = Event.objects.get(kind="conversation.updated")
    assert event.payload["changes"]["status"] == ["active", "closed"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "deleted"}, "status"),
        ({"title": "x" * 501}, "title"),
        ({"participants": [str(uuid.uuid4())]}, "participants"),
        ({"metadata": "x"}, "metadata"),
        ({"task": None}, "task"),
        ({"id": str(uuid.uuid4())}, "id"),
        ({"message_count": 9}, "message_count"),
        ({"cost": "1"}, "cost"),
        ({"created_at": "2020-01-01T00:00:00Z"}, "created_at"),
    ],
)
def test_conversation_patch_refuses_bad_and_read_only_fields(
    api, conversation, body, field
):
    before = table_counts()
    response = api.patch(f"{URL}{conversation.pk}/", body, format="json")
    assert field in assert_fields(response)
    assert table_counts() == before
    conversation.refresh_from_db()
    assert (conversation.title, conversation.message_count) == ("Planning", 0)


def test_conversation_list_filters_by_task_status_and_participant(
    api, project, task, agent, conversation
):
    helper = AgentFactory(project=project, name="helper")
    other = ConversationFactory(project=project, participants=[helper.pk])
    conversation_update(conversation=other, status="archived")

    def ids(query: str) -> set[str]:
        response = api.get(f"{URL}?{query}")
        assert response.status_code == 200, response.content
        return {c["id"] for c in response.json()["results"]}

    both = {str(conversation.pk), str(other.pk)}
    assert ids("") == both
    assert ids(f"task={task.pk}") == {str(conversation.pk)}
    assert ids("status=archived") == {str(other.pk)}
    assert ids("status=archived&status=active") == both
    assert ids("status=closed") == set()
    assert ids(f"participant={agent.pk}") == {str(conversation.pk)}
    assert ids(f"participant={helper.pk}") == {str(other.pk)}
    assert ids(f"task={uuid.uuid4()}") == set()
    assert ids("created_after=2000-01-01T00:00:00Z") == both
    assert ids("created_before=2000-01-01T00:00:00Z") == set()
    for query, field in [
        ("status=open", "status"),
        ("task=x", "task"),
        ("participant=x", "participant"),
        ("created_after=yesterday", "created_after"),
    ]:
        assert field in assert_fields(api.get(f"{URL}?{query}"))


def test_conversation_list_shows_only_the_callers_project(api, conversation, foreign):
    ids = {c["id"] for c in api.get(URL).json()["results"]}
    assert ids == {str(conversation.pk)}
    by_task = api.get(f"{URL}?task={foreign['task'].pk}").json()["results"]
    assert by_task == []


def test_conversation_list_pages_newest_first_and_clamps_page_size(api, project):
    start = timezone.now() - timedelta(days=1)
    Conversation.objects.bulk_create(
        Conversation(
            project=project, title=f"c{n}", created_at=start + timedelta(seconds=n)
        )
        for n in range(501)
    )
    first = api.get(f"{URL}?page_size=2").json()
    assert [c["title"] for c in first["results"]] == ["c500", "c499"]
    second = api.get(first["next"]).json()
    assert [c["title"] for c in second["results"]] == ["c498", "c497"]
    huge = api.get(f"{URL}?page_size=100000").json()
    assert len(huge["results"]) == MAX_PAGE_SIZE
    rest = api.get(huge["next"]).json()
    assert [c["title"] for c in rest["results"]] == ["c0"]
    assert "cursor" in assert_fields(api.get(f"{URL}?cursor=garbage"))


# Messages: append ---------------------------------------------------------


def test_message_append_one_answers_201_with_its_seq(api, conversation, agent):
    body = {
        "role": "assistant",
        "content": "Hello",
        "sender": str(agent.pk),
        "model": "gpt-x",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cached_tokens": 2,
        "cost": "0.25",
        "latency_ms": 120.5,
        "tool_calls": [{"name": "search"}],
        "tool_call_id": "",
        "metadata": {"k": "v"},
    }
    response = api.post(_messages_url(conversation), body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["seq"], data["content"], data["sender"]) == (1, "Hello", str(agent.pk))
    assert data["conversation"] == str(conversation.pk)
    assert data["cost"] == "0.250000"
    stored = api.get(f"{URL}{conversation.pk}/").json()
    assert (stored["message_count"], stored["prompt_tokens"], stored["cost"]) == (
        1,
        10,
        "0.250000",
    )
    event = Event.objects.get(kind="message.created")
    assert event.payload["seq"] == 1
    assert event.actor_type == "api_key"


def test_message_append_list_answers_a_list_of_consecutive_seqs(api, conversation):
    question = str(uuid.uuid4())
    body = [
        {"id": question, "role": "user", "content": "?"},
        {"role": "assistant", "content": "!", "reply_to": question},
        {"role": "tool", "tool_call_id": "call-1", "content": "{}"},
    ]
    response = api.post(_messages_url(conversation), body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert [m["seq"] for m in data] == [1, 2, 3]
    assert data[0]["id"] == question
    assert data[1]["reply_to"] == question
    more = api.post(_messages_url(conversation), [{"role": "user"}], format="json")
    assert [m["seq"] for m in more.json()] == [4]


def test_message_append_retry_is_idempotent_and_a_changed_body_conflicts(
    api, conversation
):
    url = _messages_url(conversation)
    first = {"id": str(uuid.uuid4()), "role": "user", "content": "one"}
    assert api.post(url, first, format="json").status_code == 201
    again = api.post(url, first, format="json")
    assert again.status_code == 200
    assert again.json()["seq"] == 1
    second = {"id": str(uuid.uuid4()), "role": "user", "content": "two"}
    mixed = api.post(url, [first, second], format="json")
    assert mixed.status_code == 201
    assert [m["seq"] for m in mixed.json()] == [1, 2]
    repeated = api.post(url, [first, second], format="json")
    assert repeated.status_code == 200
    assert [m["seq"] for m in repeated.json()] == [1, 2]
    before = table_counts()
    changed = api.post(
        url, [{**second, "content": "2"}, {"role": "user"}], format="json"
    )
    assert_error(changed, 409, "idempotency_conflict")
    assert table_counts() == before
    assert Message.objects.filter(conversation=conversation).count() == 2


def test_message_append_with_another_conversations_id_is_a_conflict(
    api, conversation, foreign
):
    body = {"id": str(foreign["message"].pk), "role": "user", "content": "psst"}
    response = api.post(_messages_url(conversation), body, format="json")
    assert_error(response, 409, "idempotency_conflict")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"role": "robot"}, "role"),
        ({"role": None}, "role"),
        ({"content": 5}, "content"),
        ({"content": "nul\x00"}, "content"),
        ({"tool_calls": {"not": "a list"}}, "tool_calls"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"latency_ms": "fast"}, "latency_ms"),
        ({"prompt_tokens": -1}, "prompt_tokens"),
        ({"completion_tokens": 2**40}, "completion_tokens"),
        ({"cached_tokens": 1.5}, "cached_tokens"),
        ({"cost": "free"}, "cost"),
        ({"cost": "-1"}, "cost"),
        ({"metadata": []}, "metadata"),
        ({"id": "nope"}, "id"),
        ({"sender": "nope"}, "sender"),
        ({"sender": str(uuid.uuid4())}, "sender"),
        ({"reply_to": str(uuid.uuid4())}, "reply_to"),
        ({"model": "x" * 201}, "model"),
        ({"tool_call_id": "x" * 201}, "tool_call_id"),
        ({"colour": "red"}, "colour"),
    ],
    ids=lambda v: v if isinstance(v, str) else next(iter(v)),
)
def test_message_append_names_the_bad_field_alone_or_by_item(
    api, conversation, spec, field
):
    url = _messages_url(conversation)
    before = table_counts()
    single = api.post(url, {"role": "user"} | spec, format="json")
    assert list(assert_fields(single)) == [field]
    batch = [{"role": "user"}, {"role": "user"}, {"role": "user"} | spec]
    assert list(assert_fields(api.post(url, batch, format="json"))) == [f"2.{field}"]
    alone = api.post(url, [{"role": "user"} | spec], format="json")
    assert list(assert_fields(alone)) == [f"0.{field}"]
    assert table_counts() == before


def test_message_append_names_several_bad_items_at_once(api, conversation):
    batch = [{"role": "robot"}, {"role": "user"}, {"content": "no role"}]
    fields = assert_fields(api.post(_messages_url(conversation), batch, format="json"))
    assert set(fields) == {"0.role", "2.role"}


def test_message_append_names_a_non_object_item(api, conversation):
    batch = [{"role": "user"}, "hi"]
    fields = assert_fields(api.post(_messages_url(conversation), batch, format="json"))
    assert list(fields) == ["1.non_field_errors"]


def test_message_append_refuses_an_id_repeated_in_one_request(api, conversation):
    message_id = str(uuid.uuid4())
    batch = [{"id": message_id, "role": "user"}] * 2
    fields = assert_fields(api.post(_messages_url(conversation), batch, format="json"))
    assert fields == {"1.id": ["Repeats the id of item 0."]}
    assert not Message.objects.exists()


@pytest.mark.parametrize("body", ["[]", '"text"', "5", "null"])
def test_message_append_refuses_a_body_that_is_not_messages(api, conversation, body):
    response = api.generic(
        "POST", _messages_url(conversation), body, content_type="application/json"
    )
    assert list(assert_fields(response)) == ["non_field_errors"]
    assert not Message.objects.exists()


def test_message_append_refuses_malformed_json_and_other_media_types(api, conversation):
    url = _messages_url(conversation)
    broken = api.generic("POST", url, "[{", content_type="application/json")
    assert_error(broken, 400, "parse_error")
    form = api.generic(
        "POST", url, "role=user", content_type="application/x-www-form-urlencoded"
    )
    assert_error(form, 415, "unsupported_media_type")


def test_message_append_over_the_limit_answers_413_naming_it(
    api, conversation, settings
):
    settings.INGEST_MAX_ITEMS = 3
    url = _messages_url(conversation)
    response = api.post(url, [{"role": "user"}] * 4, format="json")
    body = assert_error(response, 413, "request_too_large")
    assert "At most 3 messages" in body["message"]
    assert not Message.objects.exists()
    assert api.post(url, [{"role": "user"}] * 3, format="json").status_code == 201


@pytest.mark.parametrize("field", ["seq", "conversation", "project", "created_at"])
def test_message_append_refuses_read_only_fields(api, conversation, field):
    body = {"role": "user", field: 7}
    response = api.post(_messages_url(conversation), body, format="json")
    assert assert_fields(response) == {field: ["This field is read-only."]}
    assert not Message.objects.exists()


@pytest.mark.parametrize("target", ["agent", "message"])
def test_message_append_refuses_another_projects_sender_or_reply_to(
    api, conversation, foreign, target
):
    field = {"agent": "sender", "message": "reply_to"}[target]
    body = {"role": "user", field: str(foreign[target].pk)}
    response = api.post(_messages_url(conversation), body, format="json")
    assert list(assert_fields(response)) == [field]
    assert not Message.objects.filter(conversation=conversation).exists()


def test_message_append_adds_a_new_sender_to_the_participants(
    api, project, conversation
):
    newcomer = AgentFactory(project=project, name="newcomer")
    body = {"role": "assistant", "sender": str(newcomer.pk)}
    assert api.post(_messages_url(conversation), body, format="json").status_code == 201
    participants = api.get(f"{URL}{conversation.pk}/").json()["participants"]
    assert str(newcomer.pk) in participants


# Messages: list -----------------------------------------------------------


@pytest.fixture
def chat(project, conversation, agent):
    helper = AgentFactory(project=project, name="helper")
    message_append(
        conversation=conversation,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Plan?", "sender": agent.pk},
            {"role": "assistant", "content": "Step 1", "sender": helper.pk},
            {"role": "tool", "content": "{}", "tool_call_id": "c1"},
            {"role": "assistant", "content": "Done", "sender": helper.pk},
        ],
    )
    return {"agent": agent, "helper": helper}


def test_message_list_is_in_seq_order_without_big_fields_unless_full(
    api, conversation, chat
):
    url = _messages_url(conversation)
    page = api.get(url).json()
    assert [m["seq"] for m in page["results"]] == [1, 2, 3, 4, 5]
    assert not {"content", "tool_calls", "metadata"} & set(page["results"][0])
    full = api.get(f"{url}?fields=full").json()["results"]
    assert [m["content"] for m in full] == [
        "Be brief.",
        "Plan?",
        "Step 1",
        "{}",
        "Done",
    ]
    assert "fields" in assert_fields(api.get(f"{url}?fields=all"))


def test_message_list_filters_by_after_seq_sender_and_role(api, conversation, chat):
    url = _messages_url(conversation)

    def seqs(query: str) -> list[int]:
        response = api.get(f"{url}?{query}")
        assert response.status_code == 200, response.content
        return [m["seq"] for m in response.json()["results"]]

    assert seqs("after_seq=0") == [1, 2, 3, 4, 5]
    assert seqs("after_seq=3") == [4, 5]
    assert seqs("after_seq=5") == []
    assert seqs(f"sender={chat['helper'].pk}") == [3, 5]
    assert seqs(f"sender={chat['helper'].pk}&after_seq=3") == [5]
    assert seqs("role=assistant") == [3, 5]
    assert seqs("role=assistant&role=tool") == [3, 4, 5]
    for query, field in [
        ("after_seq=-1", "after_seq"),
        ("after_seq=x", "after_seq"),
        ("after_seq=1.5", "after_seq"),
        ("sender=x", "sender"),
        ("role=robot", "role"),
    ]:
        assert field in assert_fields(api.get(f"{url}?{query}"))


def test_message_list_pages_by_seq_and_clamps_page_size(api, conversation):
    message_append(
        conversation=conversation, messages=[{"role": "user"} for _ in range(501)]
    )
    url = _messages_url(conversation)
    first = api.get(f"{url}?page_size=2").json()
    assert [m["seq"] for m in first["results"]] == [1, 2]
    second = api.get(first["next"]).json()
    assert [m["seq"] for m in second["results"]] == [3, 4]
    assert [m["seq"] for m in api.get(second["previous"]).json()["results"]] == [1, 2]
    huge = api.get(f"{url}?page_size=100000").json()
    assert len(huge["results"]) == MAX_PAGE_SIZE
    rest = api.get(huge["next"]).json()
    assert [m["seq"] for m in rest["results"]] == [501]
    assert rest["next"] is None
    assert "cursor" in assert_fields(api.get(f"{url}?cursor=garbage"))


# FilterSets ---------------------------------------------------------------


def test_conversation_filterset_filters_and_names_bad_values(
    project, task, agent, conversation
):
    other = ConversationFactory(project=project, title="Other")
    conversation_update(conversation=other, status="closed")
    everything = Conversation.objects.filter(project=project)

    def titles(data: dict) -> set[str]:
        filterset = ConversationFilterSet(data, queryset=everything)
        assert filterset.is_valid(), filterset.errors
        return {c.title for c in filterset.qs}

    assert titles({}) == {"Planning", "Other"}
    assert titles({"task": str(task.pk)}) == {"Planning"}
    assert titles({"status": ["closed"]}) == {"Other"}
    assert titles({"participant": str(agent.pk)}) == {"Planning"}
    invalid = ConversationFilterSet(
        {"status": ["open"], "task": "x", "participant": "y"}, queryset=everything
    )
    assert not invalid.is_valid()
    assert set(invalid.errors) == {"status", "task", "participant"}


def test_message_filterset_filters_and_names_bad_values(conversation, chat):
    everything = Message.objects.filter(conversation=conversation)

    def seqs(data: dict) -> list[int]:
        filterset = MessageFilterSet(data, queryset=everything)
        assert filterset.is_valid(), filterset.errors
        return sorted(m.seq for m in filterset.qs)

    assert seqs({"after_seq": "2"}) == [3, 4, 5]
    assert seqs({"sender": str(chat["agent"].pk)}) == [2]
    assert seqs({"role": ["system", "tool"]}) == [1, 4]
    invalid = MessageFilterSet(
        {"after_seq": "-2", "sender": "x", "role": ["robot"]}, queryset=everything
    )
    assert not invalid.is_valid()
    assert set(invalid.errors) == {"after_seq", "sender", "role"}


# Query counts -------------------------------------------------------------


def test_conversation_list_query_count_does_not_grow_with_the_page(
    api, project, task, agent
):
    def fill(count: int) -> None:
        for n in range(count):
            helper = AgentFactory(project=project, name=f"h{n}")
            conversation_create(
                project=project, task=task, participants=[agent.pk, helper.pk]
            )

    url = f"{URL}?page_size=100"
    api.get(URL)  # the key's last-used time is written once
    fill(3)
    small = count_queries(api, url)
    fill(30)
    assert count_queries(api, url) == small
    assert small <= 4


def test_message_list_query_count_does_not_grow_with_the_page(
    api, project, conversation, agent
):
    def fill(count: int) -> None:
        first = message_append(conversation=conversation, messages=[{"role": "user"}])
        message_append(
            conversation=conversation,
            messages=[
                {
                    "role": "assistant",
                    "sender": agent.pk,
                    "reply_to": first[0][0].pk,
                    "content": "x" * 100,
                    "tool_calls": [{"n": 1}],
                }
                for _ in range(count)
            ],
        )

    urls = [
        f"{_messages_url(conversation)}?page_size=100",
        f"{_messages_url(conversation)}?page_size=100&fields=full",
        f"{_messages_url(conversation)}?page_size=100&role=assistant&after_seq=1",
    ]
    api.get(URL)  # the key's last-used time is written once
    fill(3)
    small = {url: count_queries(api, url) for url in urls}
    fill(60)
    assert {url: count_queries(api, url) for url in urls} == small
    assert max(small.values()) <= 4


# Scoping, auth and scopes -------------------------------------------------


def _detail_routes(conversation_id) -> list[tuple[str, str, object]]:
    base = f"{URL}{conversation_id}"
    return [
        ("get", f"{base}/", {}),
        ("patch", f"{base}/", {"title": "x"}),
        ("get", f"{base}/messages/", {}),
        ("post", f"{base}/messages/", {"role": "user"}),
        ("post", f"{base}/messages/", [{"role": "user"}]),
    ]


def test_every_detail_route_answers_404_for_another_projects_conversation(api, foreign):
    before = table_counts()
    for method, url, body in _detail_routes(foreign["conversation"].pk):
        response = getattr(api, method)(url, body, format="json")
        assert_error(response, 404, "not_found")
    assert table_counts() == before


@pytest.mark.parametrize("conversation_id", [uuid.uuid4(), "not-a-uuid"])
def test_every_detail_route_answers_404_for_unknown_and_malformed_ids(
    api, conversation_id
):
    for method, url, body in _detail_routes(conversation_id):
        assert_error(getattr(api, method)(url, body, format="json"), 404, "not_found")


def test_a_read_only_key_reads_but_cannot_write(reader, conversation):
    assert reader.get(URL).status_code == 200
    assert reader.get(_messages_url(conversation)).status_code == 200
    before = table_counts()
    writes = [("post", URL, {"title": "t"})] + [
        r for r in _detail_routes(conversation.pk) if r[0] != "get"
    ]
    for method, url, body in writes:
        response = getattr(reader, method)(url, body, format="json")
        assert_error(response, 403, "permission_denied")
    assert table_counts() == before


def test_every_route_needs_a_key(conversation):
    anonymous = APIClient()
    routes = [("get", URL, {}), ("post", URL, {}), *_detail_routes(conversation.pk)]
    for method, url, body in routes:
        response = getattr(anonymous, method)(url, body, format="json")
        assert_error(response, 401, "not_authenticated")
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_unsupported_methods_answer_405(api, conversation):
    assert_error(api.delete(f"{URL}{conversation.pk}/"), 405, "method_not_allowed")
    assert_error(
        api.put(f"{URL}{conversation.pk}/", {}, format="json"),
        405,
        "method_not_allowed",
    )
    assert_error(api.delete(_messages_url(conversation)), 405, "method_not_allowed")


def test_rollups_come_from_the_messages_not_the_client(api, conversation, task):
    body = [
        {"role": "assistant", "prompt_tokens": 7, "cost": "0.1"},
        {"role": "assistant", "completion_tokens": 3, "cost": "0.2"},
    ]
    api.post(_messages_url(conversation), body, format="json")
    refused = api.patch(f"{URL}{conversation.pk}/", {"prompt_tokens": 0}, format="json")
    assert "prompt_tokens" in assert_fields(refused)
    conversation.refresh_from_db()
    task.refresh_from_db()
    assert (conversation.prompt_tokens, conversation.completion_tokens) == (7, 3)
    assert conversation.cost == Decimal("0.3")
    assert (task.prompt_tokens, task.cost) == (7, Decimal("0.3"))
