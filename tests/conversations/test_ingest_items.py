"""Ingest items of this app: `participant`, `memory`, messages with recipients."""

import uuid

import pytest

from conversations.models import Memory, MessageRecipient, Participant
from conversations.services import conversation_create
from tasks.services import agent_register

pytestmark = pytest.mark.django_db

URL = "/api/v1/ingest/"


def test_participant_and_memory_items_apply_once(api, project, agent):
    conversation = conversation_create(project=project)[0]
    critic = agent_register(project=project, name="critic")[0]
    memory_id = str(uuid.uuid4())
    items = [
        {
            "type": "participant",
            "data": {
                "conversation": str(conversation.pk),
                "agent": str(critic.pk),
                "role": "critic",
            },
        },
        {
            "type": "message",
            "data": {
                "conversation": str(conversation.pk),
                "id": str(uuid.uuid4()),
                "role": "assistant",
                "sender": str(agent.pk),
                "recipients": [str(critic.pk)],
            },
        },
        {
            "type": "memory",
            "data": {"id": memory_id, "content": "remember the milk", "tags": ["home"]},
        },
        {
            "type": "memory",
            "data": {"agent": str(agent.pk), "key": "mood", "content": "calm"},
        },
    ]
    first = api.post(URL, {"items": items}, format="json")
    assert first.status_code == 200, first.content
    assert [r["status"] for r in first.json()["results"]] == ["created"] * 4
    assert first.json()["results"][2]["id"] == memory_id
    again = api.post(URL, {"items": items}, format="json")
    assert [r["status"] for r in again.json()["results"]] == ["duplicate"] * 4
    link = Participant.objects.get(conversation=conversation, agent=critic)
    assert link.role == "critic"
    assert MessageRecipient.objects.get().agent == critic
    assert Memory.objects.count() == 2
    changed = items[3] | {"data": items[3]["data"] | {"content": "busy"}}
    third = api.post(URL, {"items": [changed]}, format="json")
    assert third.json()["results"][0]["status"] == "created"
    assert Memory.objects.get(key="mood").content == "busy"


def test_bad_items_are_errors_naming_the_field(api, project, other_project):
    conversation = conversation_create(project=project)[0]
    spy = agent_register(project=other_project, name="spy")[0]
    response = api.post(
        URL,
        {
            "items": [
                {"type": "memory", "data": {"tags": ["x"]}},
                {
                    "type": "participant",
                    "data": {
                        "conversation": str(conversation.pk),
                        "agent": str(spy.pk),
                    },
                },
                {"type": "memory", "data": {"content": "fine"}},
            ]
        },
        format="json",
    )
    assert response.status_code == 207, response.content
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["error", "error", "created"]
    assert "data.content" in results[0]["error"]["fields"]
    assert "agent" in results[1]["error"]["fields"]
