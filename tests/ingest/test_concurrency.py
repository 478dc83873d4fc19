"""The same batch posted by racing clients, on real connections, both databases."""

import uuid

import pytest

from audit.chain import audit_chain_verify
from audit.models import Event
from conversations.models import Conversation, Message
from conversations.services import conversation_create
from swarmsite.services import api_key_create, project_create
from tasks.models import Task
from tests.utils import post_at_once

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 120
URL = "/api/v1/ingest/"


@pytest.fixture
def project(transactional_db):
    return project_create(slug="race")[0]


def _batch(conversation: Conversation) -> list[dict]:
    tasks = [
        {"type": "task", "data": {"id": str(uuid.uuid4()), "title": f"t{i}"}}
        for i in range(200)
    ]
    events = [
        {
            "type": "event",
            "data": {
                "id": str(uuid.uuid4()),
                "kind": "eval.scored",
                "payload": {"i": i},
            },
        }
        for i in range(200)
    ]
    messages = [
        {
            "type": "message",
            "data": {
                "conversation": str(conversation.pk),
                "id": str(uuid.uuid4()),
                "role": "assistant",
                "content": f"m{i}",
                "prompt_tokens": 1,
            },
        }
        for i in range(100)
    ]
    # Interleaved, so each batch takes row locks of every kind in turn.
    return (
        tasks[:100]
        + events[:100]
        + messages[:50]
        + tasks[100:]
        + events[100:]
        + (messages[50:])
    )


def _post_concurrently(secret: str, body: dict, n: int) -> list:
    return post_at_once(secret, URL, body, n, wait=WAIT)


def test_a_batch_posted_three_times_at_once_and_twice_more_stores_it_once(project):
    _, secret = api_key_create(project=project, name="racer", scopes=["write"])
    conversation, _ = conversation_create(project=project, title="shared")
    body = {"items": _batch(conversation)}

    responses = _post_concurrently(secret, body, 3)
    responses += _post_concurrently(secret, body, 1)
    responses += _post_concurrently(secret, body, 1)

    for response in responses:
        assert not isinstance(response, BaseException), response
        assert response.status_code == 200, response.content
    statuses = [[r["status"] for r in resp.json()["results"]] for resp in responses]
    created_per_item = [
        sum(s[i] == "created" for s in statuses) for i in range(len(body["items"]))
    ]
    assert created_per_item == [1] * 500
    assert statuses[3] == statuses[4] == ["duplicate"] * 500
    assert Task.objects.filter(project=project).count() == 200
    assert Event.objects.filter(project=project, kind="eval.scored").count() == 200
    assert Event.objects.filter(project=project, kind="task.created").count() == 200
    assert Event.objects.filter(project=project, kind="message.created").count() == 100
    assert list(
        Message.objects.filter(conversation=conversation)
        .order_by("seq")
        .values_list("seq", flat=True)
    ) == list(range(1, 101))
    conversation.refresh_from_db()
    assert (conversation.message_count, conversation.prompt_tokens) == (100, 100)
    positions = list(
        Event.objects.filter(project=project)
        .order_by("position")
        .values_list("position", flat=True)
    )
    assert positions == list(range(1, len(positions) + 1))
    assert audit_chain_verify(project_id=project.pk).intact


def test_racing_batches_of_new_events_store_each_event_once(project):
    # Events are inserted at commit, under the journal lock: the losers of
    # the race fail there and apply their batch again.
    _, secret = api_key_create(project=project, name="racer", scopes=["write"])
    items = [
        {"type": "event", "data": {"id": str(uuid.uuid4()), "kind": "eval.scored"}}
        for _ in range(500)
    ]

    responses = _post_concurrently(secret, {"items": items}, 3)

    assert all(r.status_code == 200 for r in responses), responses
    created = sum(
        r["status"] == "created" for resp in responses for r in resp.json()["results"]
    )
    assert created == 500
    assert Event.objects.filter(project=project, kind="eval.scored").count() == 500
