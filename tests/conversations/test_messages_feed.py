"""Recipients, threads, the cross-conversation message list and revisions."""

import threading
import uuid

import pytest
from django.db import close_old_connections

from audit.models import AuditLog, Event
from conversations.models import Message, Participant
from conversations.services import (
    conversation_create,
    message_append,
    participant_read,
)
from tasks.services import agent_register
from tests.conftest import assert_error, assert_fields, count_queries

pytestmark = pytest.mark.django_db

FEED = "/api/v1/messages/"


@pytest.fixture
def cast(project):
    return {
        name: agent_register(project=project, name=name)[0]
        for name in ("planner", "coder", "critic")
    }


@pytest.fixture
def conversation(project, cast):
    return conversation_create(project=project, participants=[cast["planner"]])[0]


def _post(api, conversation, body):
    return api.post(
        f"/api/v1/conversations/{conversation.pk}/messages/", body, format="json"
    )


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [m["id"] for m in response.json()["results"]]


def test_recipients_and_threads_are_stored_and_shown(api, conversation, cast):
    root = _post(
        api,
        conversation,
        {
            "id": str(uuid.uuid4()),
            "role": "assistant",
            "sender": str(cast["planner"].pk),
            "recipients": [str(cast["coder"].pk), str(cast["critic"].pk)],
            "content": "Who takes the parser?",
        },
    )
    assert root.status_code == 201, root.content
    root = root.json()
    assert root["thread"] == root["id"]
    assert root["recipients"] == [str(cast["coder"].pk), str(cast["critic"].pk)]
    assert (root["revision"], root["revised_at"]) == (1, None)
    replies = _post(
        api,
        conversation,
        [
            {
                "role": "assistant",
                "sender": str(cast["coder"].pk),
                "reply_to": root["id"],
            },
            {"role": "user", "content": "unrelated"},
        ],
    ).json()
    reply = _post(
        api,
        conversation,
        {"role": "assistant", "reply_to": replies[0]["id"]},
    ).json()
    assert replies[0]["thread"] == root["id"] == reply["thread"]
    assert replies[1]["thread"] == replies[1]["id"]
    # Recipients join the conversation, so they have a read marker.
    active = Participant.objects.filter(conversation=conversation, active=True)
    assert active.count() == 3
    listed = api.get(f"/api/v1/conversations/{conversation.pk}/messages/").json()
    assert listed["results"][0]["recipients"] == root["recipients"]
    event = Event.objects.filter(kind="message.created").order_by("position").first()
    assert event.payload["recipients"] == root["recipients"]
    assert event.payload["thread"] == root["id"]


def test_recipient_errors_and_replays(api, conversation, cast, other_project):
    spy = agent_register(project=other_project, name="spy")[0]
    fields = assert_fields(
        _post(api, conversation, {"role": "user", "recipients": [str(spy.pk)]})
    )
    assert "recipients" in fields
    assert "0.recipients" in assert_fields(
        _post(api, conversation, [{"role": "user", "recipients": [str(spy.pk)]}])
    )
    body = {
        "id": str(uuid.uuid4()),
        "role": "user",
        "recipients": [str(cast["coder"].pk)],
    }
    assert _post(api, conversation, body).status_code == 201
    assert _post(api, conversation, body).status_code == 200
    assert_error(
        _post(api, conversation, body | {"recipients": [str(cast["critic"].pk)]}),
        409,
        "idempotency_conflict",
    )


def test_feed_filters_by_sender_recipient_thread_conversation(
    api, project, conversation, cast
):
    other = conversation_create(project=project)[0]
    planner, coder, critic = (str(cast[n].pk) for n in ("planner", "coder", "critic"))
    first = message_append(
        conversation=conversation,
        messages=[{"role": "assistant", "sender": planner, "recipients": [coder]}],
    )[0][0]
    second = message_append(
        conversation=other,
        messages=[{"role": "assistant", "sender": coder, "recipients": [critic]}],
    )[0][0]
    third = message_append(
        conversation=conversation,
        messages=[
            {
                "role": "assistant",
                "sender": critic,
                "recipients": [coder, planner],
                "reply_to": str(first.pk),
            }
        ],
    )[0][0]
    everything = [str(m.pk) for m in (first, second, third)]
    assert _ids(api.get(FEED)) == everything
    assert _ids(api.get(FEED, {"sender": coder})) == [str(second.pk)]
    assert _ids(api.get(FEED, {"recipient": coder})) == [str(first.pk), str(third.pk)]
    assert _ids(api.get(FEED, {"thread": str(first.pk)})) == [
        str(first.pk),
        str(third.pk),
    ]
    assert _ids(api.get(FEED, {"conversation": str(other.pk)})) == [str(second.pk)]
    assert _ids(api.get(FEED, {"page_size": 2})) == everything[:2]
    next_page = api.get(FEED, {"page_size": 2}).json()["next"]
    assert _ids(api.get(next_page)) == everything[2:]
    full = api.get(FEED, {"fields": "full", "sender": coder}).json()["results"][0]
    assert "content" in full
    assert "content" not in api.get(FEED).json()["results"][0]
    single = api.get(f"{FEED}{third.pk}/").json()
    assert (single["thread"], single["recipients"]) == (str(first.pk), [coder, planner])


def test_unread_by_follows_the_read_marker(api, conversation, cast):
    coder = cast["coder"]
    sent = message_append(
        conversation=conversation,
        messages=[
            {"role": "user", "recipients": [str(coder.pk)]},
            {"role": "user"},
            {"role": "user", "recipients": [str(coder.pk)]},
            {"role": "user", "recipients": [str(cast["critic"].pk)]},
        ],
    )
    to_coder = [str(sent[0][0].pk), str(sent[2][0].pk)]
    assert _ids(api.get(FEED, {"unread_by": str(coder.pk)})) == to_coder
    participant_read(conversation=conversation, agent=coder, seq=1)
    assert _ids(api.get(FEED, {"unread_by": str(coder.pk)})) == to_coder[1:]
    participant_read(conversation=conversation, agent=coder, seq=4)
    assert _ids(api.get(FEED, {"unread_by": str(coder.pk)})) == []


def test_feed_errors_and_other_projects(api, other_project, conversation):
    for name in ("sender", "recipient", "thread", "conversation", "unread_by"):
        assert name in assert_fields(api.get(FEED, {name: "nope"}))
    assert "fields" in assert_fields(api.get(FEED, {"fields": "all"}))
    spy = agent_register(project=other_project, name="spy")[0]
    theirs = conversation_create(project=other_project)[0]
    secret = message_append(
        conversation=theirs,
        messages=[{"role": "user", "sender": str(spy.pk), "recipients": [str(spy.pk)]}],
    )[0][0]
    assert _ids(api.get(FEED, {"sender": str(spy.pk)})) == []
    assert _ids(api.get(FEED, {"unread_by": str(spy.pk)})) == []
    assert_error(api.get(f"{FEED}{secret.pk}/"), 404, "not_found")


def test_feed_queries_do_not_grow_with_the_page(api, project, conversation, cast):
    coder = str(cast["coder"].pk)

    def append(n):
        message_append(
            conversation=conversation,
            messages=[{"role": "user", "recipients": [coder]} for _ in range(n)],
        )

    append(2)
    count_queries(api, FEED)  # the key's first use is recorded once
    small = {
        params: count_queries(api, FEED, **dict(params))
        for params in ((), (("unread_by", coder),), (("recipient", coder),))
    }
    append(30)
    assert {
        params: count_queries(api, FEED, **dict(params)) for params in small
    } == small


@pytest.mark.django_db(transaction=True)
def test_unread_by_is_exact_after_concurrent_appends_and_reads(
    project, make_api_client
):
    api = make_api_client(project)
    writer, reader = (
        agent_register(project=project, name=name)[0] for name in ("w", "r")
    )
    conversation = conversation_create(project=project, participants=[reader])[0]
    errors: list[BaseException] = []
    done = threading.Event()

    def append():
        try:
            for _ in range(15):
                message_append(
                    conversation=conversation,
                    messages=[
                        {
                            "role": "assistant",
                            "sender": str(writer.pk),
                            "recipients": [str(reader.pk)],
                        }
                    ],
                )
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()
            close_old_connections()

    def read():
        try:
            while not done.is_set():
                last = (
                    Message.objects.filter(conversation=conversation)
                    .order_by("-seq")
                    .values_list("seq", flat=True)
                    .first()
                )
                if last:
                    participant_read(
                        conversation=conversation, agent=reader, seq=max(1, last - 3)
                    )
        except BaseException as exc:
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=f) for f in (append, append, read)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    marker = Participant.objects.get(
        conversation=conversation, agent=reader
    ).last_read_seq
    expected = list(
        Message.objects.filter(conversation=conversation, seq__gt=marker)
        .order_by("created_at", "id")
        .values_list("id", flat=True)
    )
    assert Message.objects.filter(conversation=conversation).count() == 30
    assert 0 < marker < 30
    unread = []
    url = FEED + f"?unread_by={reader.pk}&page_size=7"
    while url:
        page = api.get(url).json()
        unread += [uuid.UUID(m["id"]) for m in page["results"]]
        url = page["next"]
    assert unread == expected
    assert (
        Participant.objects.get(conversation=conversation, agent=writer).message_count
        == 30
    )


def test_revise_keeps_the_old_text_in_the_event(api, project, conversation, cast):
    message = message_append(
        conversation=conversation,
        messages=[{"id": str(uuid.uuid4()), "role": "user", "content": "draft one"}],
    )[0][0]
    url = f"/api/v1/conversations/{conversation.pk}/messages/{message.pk}/revise/"
    operation = str(uuid.uuid4())
    response = api.post(url, {"content": "draft two", "id": operation}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["content"], body["revision"]) == ("draft two", 2)
    assert body["revised_at"] is not None
    again = api.post(url, {"content": "draft two", "id": operation}, format="json")
    assert again.status_code == 200
    assert again.json()["revision"] == 2
    api.post(url, {"content": "draft three"}, format="json")
    replay = api.post(url, {"content": "draft two", "id": operation}, format="json")
    assert (replay.json()["content"], replay.json()["revision"]) == ("draft three", 3)
    events = Event.objects.filter(kind="message.revised").order_by("position")
    assert [(e.payload["previous_content"], e.payload["content"]) for e in events] == [
        ("draft one", "draft two"),
        ("draft two", "draft three"),
    ]
    assert AuditLog.objects.filter(action="message.revised").count() == 2
    # A retry of the create is judged by the body that created the message.
    retry = _post(
        api,
        conversation,
        {"id": str(message.pk), "role": "user", "content": "draft one"},
    )
    assert retry.status_code == 200
    assert retry.json()["content"] == "draft three"


def test_revise_errors(api, conversation, other_project):
    message = message_append(conversation=conversation, messages=[{"role": "user"}])[0][
        0
    ]
    url = f"/api/v1/conversations/{conversation.pk}/messages/{message.pk}/revise/"
    assert "content" in assert_fields(api.post(url, {}, format="json"))
    assert "content" in assert_fields(api.post(url, {"content": 5}, format="json"))
    assert "id" in assert_fields(
        api.post(url, {"content": "x", "id": "nope"}, format="json")
    )
    assert "revision" in assert_fields(
        api.post(url, {"content": "x", "revision": 9}, format="json")
    )
    theirs = conversation_create(project=other_project)[0]
    secret = message_append(conversation=theirs, messages=[{"role": "user"}])[0][0]
    for path in (
        f"/api/v1/conversations/{theirs.pk}/messages/{secret.pk}/revise/",
        f"/api/v1/conversations/{conversation.pk}/messages/{secret.pk}/revise/",
        f"/api/v1/conversations/{conversation.pk}/messages/nope/revise/",
    ):
        assert_error(api.post(path, {"content": "x"}, format="json"), 404, "not_found")
