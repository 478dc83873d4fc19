"""Participants over the API: join, leave, rejoin, read markers."""

import threading
import uuid

import pytest
from django.db import close_old_connections

from audit.models import Event
from conversations.models import Participant
from conversations.services import (
    conversation_create,
    message_append,
    participant_read,
)
from tasks.services import agent_register
from tests.conftest import assert_error, assert_fields

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(project, agent):
    return conversation_create(project=project, title="Planning", participants=[agent])[
        0
    ]


@pytest.fixture
def reviewer(project):
    return agent_register(project=project, name="reviewer")[0]


def _url(conversation, *rest: str) -> str:
    return "/".join(["/api/v1/conversations", str(conversation.pk), *rest, ""])


def _kinds(project) -> list[str]:
    return list(
        Event.objects.filter(project=project, kind__startswith="conversation.")
        .exclude(kind="conversation.created")
        .order_by("position")
        .values_list("kind", flat=True)
    )


def test_join_leave_rejoin_keeps_history_and_counts(
    api, project, conversation, agent, reviewer
):
    url = _url(conversation, "participants")
    first = api.post(url, {"agent": str(reviewer.pk), "role": "critic"}, format="json")
    assert first.status_code == 201, first.content
    assert first.json() | {"joined_at": None} == {
        "conversation": str(conversation.pk),
        "agent": str(reviewer.pk),
        "role": "critic",
        "joined_at": None,
        "left_at": None,
        "active": True,
        "message_count": 0,
        "last_read_seq": 0,
    }
    again = api.post(url, {"agent": str(reviewer.pk), "role": "critic"}, format="json")
    assert again.status_code == 200
    message_append(
        conversation=conversation,
        messages=[{"role": "assistant", "sender": str(reviewer.pk), "content": "no"}],
    )

    left = api.delete(_url(conversation, "participants", str(reviewer.pk)))
    assert left.status_code == 200, left.content
    assert (left.json()["active"], left.json()["message_count"]) == (False, 1)
    assert left.json()["left_at"] is not None
    assert (
        api.delete(_url(conversation, "participants", str(reviewer.pk))).json()[
            "left_at"
        ]
        == left.json()["left_at"]
    )

    listed = api.get(url).json()["results"]
    assert [(p["agent"], p["active"]) for p in listed] == [
        (str(agent.pk), True),
        (str(reviewer.pk), False),
    ]
    detail = api.get(_url(conversation)).json()
    assert str(reviewer.pk) not in detail["participants"]

    back = api.post(url, {"agent": str(reviewer.pk)}, format="json")
    assert back.status_code == 200
    body = back.json()
    assert (body["active"], body["left_at"], body["message_count"], body["role"]) == (
        True,
        None,
        1,
        "critic",
    )
    assert _kinds(project) == [
        "conversation.participant_joined",
        "conversation.participant_left",
        "conversation.participant_joined",
    ]


def test_participant_errors_name_the_field_or_are_not_found(
    api, conversation, reviewer, other_project
):
    url = _url(conversation, "participants")
    assert "agent" in assert_fields(api.post(url, {}, format="json"))
    assert "role" in assert_fields(
        api.post(url, {"agent": str(reviewer.pk), "role": "x" * 101}, format="json")
    )
    stranger = agent_register(project=other_project, name="spy")[0]
    assert "agent" in assert_fields(
        api.post(url, {"agent": str(stranger.pk)}, format="json")
    )
    assert "active" in assert_fields(
        api.post(url, {"agent": str(reviewer.pk), "active": False}, format="json")
    )
    assert_error(
        api.delete(_url(conversation, "participants", str(reviewer.pk))),
        404,
        "not_found",
    )
    assert_error(
        api.delete(_url(conversation, "participants", "not-a-uuid")), 404, "not_found"
    )
    foreign = conversation_create(project=other_project, participants=[stranger])[0]
    for response in (
        api.get(_url(foreign, "participants")),
        api.post(
            _url(foreign, "participants"), {"agent": str(reviewer.pk)}, format="json"
        ),
        api.delete(_url(foreign, "participants", str(stranger.pk))),
        api.post(
            _url(foreign, "read"), {"agent": str(stranger.pk), "seq": 0}, format="json"
        ),
    ):
        assert_error(response, 404, "not_found")


def test_read_marker_moves_forward_only(api, project, conversation, agent):
    message_append(
        conversation=conversation,
        messages=[{"role": "user", "content": str(n)} for n in range(5)],
    )
    url = _url(conversation, "read")
    body = {"agent": str(agent.pk), "seq": 3}
    assert api.post(url, body, format="json").json()["last_read_seq"] == 3
    assert api.post(url, body | {"seq": 1}, format="json").json()["last_read_seq"] == 3
    assert api.post(url, body | {"seq": 5}, format="json").json()["last_read_seq"] == 5
    assert "seq" in assert_fields(api.post(url, body | {"seq": 6}, format="json"))
    assert "seq" in assert_fields(api.post(url, body | {"seq": -1}, format="json"))
    outsider = agent_register(project=project, name="outsider")[0]
    assert "agent" in assert_fields(
        api.post(url, {"agent": str(outsider.pk), "seq": 1}, format="json")
    )
    read = Event.objects.filter(kind="conversation.read").order_by("position")
    assert [(e.payload["previous"], e.payload["seq"]) for e in read] == [(0, 3), (3, 5)]


def test_message_counts_follow_each_sender(project, conversation, agent, reviewer):
    message_append(
        conversation=conversation,
        messages=[
            {"role": "assistant", "sender": str(agent.pk)},
            {"role": "assistant", "sender": str(reviewer.pk)},
            {"role": "assistant", "sender": str(agent.pk)},
        ],
    )
    counts = dict(
        Participant.objects.filter(conversation=conversation).values_list(
            "agent__name", "message_count"
        )
    )
    assert counts == {"worker-1": 2, "reviewer": 1}


@pytest.mark.django_db(transaction=True)
def test_concurrent_read_markers_end_at_the_highest(project, agent):
    conversation = conversation_create(project=project, participants=[agent])[0]
    message_append(
        conversation=conversation,
        messages=[{"role": "user"} for _ in range(40)],
    )
    seqs = list(range(1, 41))
    errors: list[BaseException] = []

    def mark(values):
        try:
            for seq in values:
                participant_read(conversation=conversation, agent=agent, seq=seq)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [
        threading.Thread(target=mark, args=(seqs[i::4][::-1],)) for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    link = Participant.objects.get(conversation=conversation, agent=agent)
    assert link.last_read_seq == 40
    moves = [
        (e.payload["previous"], e.payload["seq"])
        for e in Event.objects.filter(kind="conversation.read").order_by("position")
    ]
    assert all(after > before for before, after in moves)


def test_unknown_conversation_is_not_found(api):
    missing = uuid.uuid4()
    assert_error(
        api.get(f"/api/v1/conversations/{missing}/participants/"), 404, "not_found"
    )
