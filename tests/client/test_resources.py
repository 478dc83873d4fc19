"""The contract 1.1 endpoints through the client: the work queue,
workflows, conversations between agents, memory, operation ids."""

from __future__ import annotations

import uuid

import pytest

from swarmsite_client import DependencyCycle

pytestmark = pytest.mark.slow


def test_work_queue_claims_by_priority_extends_leases_and_retries(client):
    agent = client.agents.register(name=f"queue-{uuid.uuid4().hex[:6]}")["id"]
    workflow = client.workflows.create(name=f"wf-{uuid.uuid4().hex[:6]}")
    low = client.tasks.create(title="low", workflow=workflow["id"], priority=1)
    high = client.tasks.create(title="high", workflow=workflow["id"], priority=9)
    blocked = client.tasks.create(title="after high", workflow=workflow["id"],
                                  priority=99)  # fmt: skip
    client.tasks.add_dependencies(blocked["id"], [high["id"]])
    with pytest.raises(DependencyCycle):
        client.tasks.add_dependencies(high["id"], [blocked["id"]])
    for task in (low, high, blocked):
        client.tasks.transition(task["id"], status="queued")

    operation = uuid.uuid4()
    claimed = client.tasks.claim(
        agent=agent, workflow=workflow["id"], operation_id=operation
    )
    assert claimed["id"] == high["id"] and claimed["status"] == "running"
    # The same claim resent (an answer lost on the way) takes nothing more.
    again = client.tasks.claim(
        agent=agent, workflow=workflow["id"], operation_id=operation
    )
    assert again["id"] == high["id"]
    extended = client.tasks.heartbeat(high["id"], lease_seconds=600)
    assert extended["lease_expires_at"] >= claimed["lease_expires_at"]
    client.tasks.transition(high["id"], status="failed", error="boom")
    assert client.tasks.retry(high["id"])["status"] == "queued"

    assert client.tasks.claim(agent=agent, workflow=workflow["id"])["id"] == high["id"]
    client.tasks.transition(high["id"], status="completed")
    assert (
        client.tasks.claim(agent=agent, workflow=workflow["id"])["id"]
        == (blocked["id"])
    )
    client.tasks.remove_dependency(blocked["id"], high["id"])
    assert client.tasks.get(blocked["id"])["depends_on"] == []
    assert client.tasks.claim(agent=agent, workflow=workflow["id"])["id"] == low["id"]
    assert client.tasks.claim(agent=agent, workflow=workflow["id"]) is None

    cancelled = client.workflows.cancel(workflow["id"])
    assert cancelled["id"] == workflow["id"]
    assert (
        client.workflows.update(workflow["id"], description="Done")["description"]
        == "Done"
    )
    assert workflow["id"] in [w["id"] for w in client.workflows.list()]


def test_conversations_between_agents_participants_inbox_and_revisions(client):
    tag = uuid.uuid4().hex[:6]
    alice = client.agents.register(name=f"alice-{tag}")["id"]
    bob = client.agents.register(name=f"bob-{tag}")["id"]
    chat = client.conversations.create(title="Pair")["id"]
    client.conversations.add_participant(chat, agent=alice, role="lead")
    client.conversations.add_participant(chat, agent=bob)
    first = client.conversations.append(
        chat, {"role": "assistant", "sender": alice, "content": "Ping",
               "recipients": [bob]},
    )  # fmt: skip
    inbox = list(client.messages.inbox(bob))
    assert [m["id"] for m in inbox] == [first["id"]]
    client.conversations.read(chat, agent=bob, seq=first["seq"])
    assert list(client.messages.inbox(bob)) == []

    operation = uuid.uuid4()
    revised = client.conversations.revise(
        chat, first["id"], content="Ping!", operation_id=operation
    )
    replayed = client.conversations.revise(
        chat, first["id"], content="Ping!", operation_id=operation
    )
    assert revised["content"] == "Ping!"
    assert revised["revision"] == replayed["revision"] == first["revision"] + 1

    client.conversations.remove_participant(chat, bob)
    participants = {p["agent"]: p for p in client.conversations.participants(chat)}
    assert participants[bob]["active"] is False
    assert participants[alice]["role"] == "lead"
    assert [m["id"] for m in client.messages.list(conversation=chat)] == [first["id"]]


def test_memories_put_search_update_delete(client):
    namespace = f"ns-{uuid.uuid4().hex[:6]}"
    note = client.memories.put(
        content="The quarterly revenue grew twelve percent",
        namespace=namespace,
        tags=["finance"],
    )
    keyed = client.memories.put(content="first", namespace=namespace, key="k")
    rewritten = client.memories.put(content="second", namespace=namespace, key="k")
    assert rewritten["id"] == keyed["id"] and rewritten["content"] == "second"
    found = list(client.memories.search("revenue", namespace=namespace))
    assert [m["id"] for m in found] == [note["id"]]
    updated = client.memories.update(note["id"], tags=["finance", "q3"])
    assert updated["tags"] == ["finance", "q3"]
    assert client.memories.get(note["id"])["content"].startswith("The quarterly")
    client.memories.delete(note["id"])
    assert [m["id"] for m in client.memories.list(namespace=namespace)] == [keyed["id"]]


def test_a_replayed_update_changes_nothing(client):
    task = client.tasks.create(title="Replayed")["id"]
    operation = uuid.uuid4()
    first = client.tasks.transition(task, status="running", operation_id=operation)
    again = client.tasks.transition(task, status="running", operation_id=operation)
    assert first["version"] == again["version"]
    progress = uuid.uuid4()
    client.tasks.progress(task, 30, operation_id=progress)
    client.tasks.progress(task, 60)
    assert client.tasks.progress(task, 30, operation_id=progress)["progress"] == 60
    assert client._no_operation_ids == set()
