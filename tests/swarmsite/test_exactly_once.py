"""Contract 1.1, exactly once: racing identical writes and replayed operations.

Every create endpoint and every ingest item type is sent by 8 clients at
once, 20 rounds, on real connections (threads), on both databases: every
answer is 200/201 (items `created`/`duplicate`), exactly one is a creation,
and exactly one row or event exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from audit.models import AuditLog, Event
from audit.services import (
    audit_custom_events_create,
    audit_log_create,
    audit_logs_create,
)
from conversations.models import Conversation, Message, Participant
from conversations.services import conversation_create, message_append_one
from swarmsite.errors import ValidationError
from swarmsite.services import api_key_create, project_create
from tasks.models import Agent, AgentHeartbeat, AgentRun, Task, TaskStatus
from tasks.services import agent_register, run_create, task_create
from tests.utils import post_at_once

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = 8
ROUNDS = 20
WAIT = 120


@pytest.fixture
def race(transactional_db):
    project = project_create(slug="race")[0]
    _, secret = api_key_create(project=project, name="racer", scopes=["write"])
    agent = agent_register(project=project, name="worker")[0]
    conversation = conversation_create(project=project, title="shared")[0]
    return project, secret, agent, conversation


def _post_at_once(secret: str, url: str, body: dict) -> list:
    outcomes = post_at_once(secret, url, body, CLIENTS, wait=WAIT)
    for outcome in outcomes:
        assert not isinstance(outcome, BaseException), outcome
    return outcomes


def _creates(project, agent, conversation) -> dict[str, Callable]:
    """Per endpoint: (url, body, rows with that id) for a fresh round."""

    def agents():
        name = f"agent-{uuid.uuid4().hex[:8]}"
        body = {"name": name, "role": "worker"}
        return "/api/v1/agents/", body, lambda: Agent.objects.filter(name=name)

    def tasks():
        pk = uuid.uuid4()
        body = {"id": str(pk), "title": "race", "agents": [str(agent.pk)]}
        return "/api/v1/tasks/", body, lambda: Task.objects.filter(pk=pk)

    def runs():
        pk, task = uuid.uuid4(), task_create(project=project, title="run on")[0]
        body = {"id": str(pk), "task": str(task.pk), "agent": str(agent.pk)}
        return "/api/v1/runs/", body, lambda: AgentRun.objects.filter(pk=pk)

    def conversations():
        pk = uuid.uuid4()
        body = {"id": str(pk), "title": "race", "participants": [str(agent.pk)]}
        url = "/api/v1/conversations/"
        return url, body, lambda: Conversation.objects.filter(pk=pk)

    def messages():
        pk = uuid.uuid4()
        body = {"id": str(pk), "role": "assistant", "content": "hi"}
        url = f"/api/v1/conversations/{conversation.pk}/messages/"
        return url, body, lambda: Message.objects.filter(pk=pk)

    def events():
        pk = uuid.uuid4()
        body = {"id": str(pk), "kind": "eval.scored", "payload": {"score": 1}}
        return "/api/v1/events/", body, lambda: Event.objects.filter(uuid=pk)

    def audit_logs():
        pk = uuid.uuid4()
        body = {"id": str(pk), "action": "tool.invoke", "target": "search"}
        return "/api/v1/audit-logs/", body, lambda: AuditLog.objects.filter(uuid=pk)

    return {
        "agents": agents,
        "tasks": tasks,
        "runs": runs,
        "conversations": conversations,
        "messages": messages,
        "events": events,
        "audit-logs": audit_logs,
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "endpoint",
    ["agents", "tasks", "runs", "conversations", "messages", "events", "audit-logs"],
)
def test_racing_identical_creates_answer_one_201_and_leave_one_row(race, endpoint):
    project, secret, agent, conversation = race
    make = _creates(project, agent, conversation)[endpoint]
    for _ in range(ROUNDS):
        url, body, rows = make()
        responses = _post_at_once(secret, url, body)
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * (CLIENTS - 1) + [201], [
            r.content for r in responses if r.status_code not in (200, 201)
        ]
        assert rows().count() == 1
        ids = {r.json()["id"] for r in responses}
        assert len(ids) == 1


def _ingest_cases(project, agent, conversation) -> dict[str, Callable]:
    """Per item type: (item, check that it was written exactly once)."""

    def one_event(op: uuid.UUID) -> Callable[[], bool]:
        return lambda: Event.objects.filter(uuid=op).count() == 1

    def agent_item():
        name = f"agent-{uuid.uuid4().hex[:8]}"
        item = {"type": "agent", "data": {"name": name}}
        return item, lambda: Agent.objects.filter(name=name).count() == 1

    def heartbeat():
        op = uuid.uuid4()
        data = {"id": str(op), "agent": str(agent.pk), "status": "busy"}

        def once() -> bool:
            beats = AgentHeartbeat.objects.filter(agent=agent).count()
            return one_event(op)() and beats == heartbeat.beats + 1

        heartbeat.beats = AgentHeartbeat.objects.filter(agent=agent).count()
        return {"type": "heartbeat", "data": data}, once

    def task():
        pk = uuid.uuid4()
        item = {"type": "task", "data": {"id": str(pk), "title": "t"}}
        return item, lambda: Task.objects.filter(pk=pk).count() == 1

    def task_update():
        op, target = uuid.uuid4(), task_create(project=project, title="t")[0]
        data = {"id": str(op), "task": str(target.pk), "title": "renamed"}

        def once() -> bool:
            target.refresh_from_db()
            return one_event(op)() and target.version == 2

        return {"type": "task_update", "data": data}, once

    def transition():
        op, target = uuid.uuid4(), task_create(project=project, title="t")[0]
        data = {"id": str(op), "task": str(target.pk), "status": "running"}

        def once() -> bool:
            target.refresh_from_db()
            return one_event(op)() and (target.status, target.version) == (
                TaskStatus.RUNNING,
                2,
            )

        return {"type": "transition", "data": data}, once

    def progress():
        op, target = uuid.uuid4(), task_create(project=project, title="t")[0]
        data = {"id": str(op), "task": str(target.pk), "progress": 40}
        return {"type": "progress", "data": data}, one_event(op)

    def conversation_item():
        pk = uuid.uuid4()
        item = {"type": "conversation", "data": {"id": str(pk), "title": "c"}}
        return item, lambda: Conversation.objects.filter(pk=pk).count() == 1

    def message():
        pk = uuid.uuid4()
        data = {
            "id": str(pk),
            "conversation": str(conversation.pk),
            "role": "user",
            "content": "hello",
        }
        return {
            "type": "message",
            "data": data,
        }, lambda: Message.objects.filter(pk=pk).count() == 1

    def run():
        pk, target = uuid.uuid4(), task_create(project=project, title="t")[0]
        data = {"id": str(pk), "task": str(target.pk), "agent": str(agent.pk)}
        item = {"type": "run", "data": data}
        return item, lambda: AgentRun.objects.filter(pk=pk).count() == 1

    def run_update():
        op, target = uuid.uuid4(), task_create(project=project, title="t")[0]
        stored = run_create(project=project, task=target)[0]
        data = {"id": str(op), "run": str(stored.pk), "prompt_tokens": 7}

        def once() -> bool:
            target.refresh_from_db()
            return one_event(op)() and target.prompt_tokens == 7

        return {"type": "run_update", "data": data}, once

    def message_sender_fill():
        unsigned = message_append_one(
            conversation=conversation, role="assistant", content="unsigned"
        )[0]
        data = {"message": str(unsigned.pk), "sender": str(agent.pk)}
        sent = Agent.objects.get(pk=agent.pk).messages_count

        def once() -> bool:
            unsigned.refresh_from_db()
            updates = Event.objects.filter(
                kind="message.updated", payload__message=str(unsigned.pk)
            )
            joined = Participant.objects.get(conversation=conversation, agent=agent)
            return (
                unsigned.sender_id == agent.pk
                and updates.count() == 1
                and Agent.objects.get(pk=agent.pk).messages_count == sent + 1
                and joined.message_count == sent + 1
            )

        return {"type": "message_sender_fill", "data": data}, once

    def run_metadata_fill():
        target = task_create(project=project, title="t")[0]
        stored = run_create(project=project, task=target)[0]
        metadata = {"otel": {"delegated_by": "planner"}}
        data = {"run": str(stored.pk), "metadata": metadata}

        def once() -> bool:
            stored.refresh_from_db()
            updates = Event.objects.filter(
                kind="run.updated", payload__run=str(stored.pk)
            )
            return stored.metadata == metadata and updates.count() == 1

        return {"type": "run_metadata_fill", "data": data}, once

    def event():
        pk = uuid.uuid4()
        item = {"type": "event", "data": {"id": str(pk), "kind": "eval.scored"}}
        return item, one_event(pk)

    def audit():
        pk = uuid.uuid4()
        item = {"type": "audit", "data": {"id": str(pk), "action": "tool.invoke"}}
        return item, lambda: AuditLog.objects.filter(uuid=pk).count() == 1

    return {
        "agent": agent_item,
        "heartbeat": heartbeat,
        "task": task,
        "task_update": task_update,
        "transition": transition,
        "progress": progress,
        "conversation": conversation_item,
        "message": message,
        "run": run,
        "run_update": run_update,
        "message_sender_fill": message_sender_fill,
        "run_metadata_fill": run_metadata_fill,
        "event": event,
        "audit": audit,
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "item_type",
    [
        "agent",
        "heartbeat",
        "task",
        "task_update",
        "transition",
        "progress",
        "conversation",
        "message",
        "run",
        "run_update",
        "message_sender_fill",
        "run_metadata_fill",
        "event",
        "audit",
    ],
)
def test_racing_identical_ingest_items_are_created_once_and_never_an_error(
    race, item_type
):
    project, secret, agent, conversation = race
    make = _ingest_cases(project, agent, conversation)[item_type]
    for _ in range(ROUNDS):
        item, written_once = make()
        responses = _post_at_once(secret, "/api/v1/ingest/", {"items": [item]})
        assert [r.status_code for r in responses] == [200] * CLIENTS, [
            r.content for r in responses
        ]
        results = sorted(r.json()["results"][0]["status"] for r in responses)
        assert results == ["created"] + ["duplicate"] * (CLIENTS - 1)
        assert written_once()


# Operation ids replayed after later changes -------------------------------


@pytest.fixture
def api(race):
    project, secret, agent, conversation = race
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def _task_events(task_id) -> int:
    return Event.objects.filter(task_id=task_id).count()


def test_a_transition_replayed_after_later_changes_answers_200_and_changes_nothing(
    race, api
):
    project, _, _, _ = race
    task = task_create(project=project, title="t")[0]
    url = f"/api/v1/tasks/{task.pk}/"
    start = {"id": str(uuid.uuid4()), "status": "running"}
    assert api.post(url + "transition/", start, format="json").status_code == 200
    assert (
        api.post(url + "progress/", {"progress": 50}, format="json").status_code == 200
    )
    done = {"id": str(uuid.uuid4()), "status": "completed"}
    assert api.post(url + "transition/", done, format="json").status_code == 200
    events = _task_events(task.pk)

    again = api.post(url + "transition/", start, format="json")

    assert again.status_code == 200, again.content
    assert (again.json()["status"], again.json()["version"]) == ("completed", 3)
    assert _task_events(task.pk) == events


def test_progress_replayed_after_a_later_value_keeps_the_later_value(race, api):
    project, _, _, _ = race
    task = task_create(project=project, title="t")[0]
    url = f"/api/v1/tasks/{task.pk}/progress/"
    first = {"id": str(uuid.uuid4()), "progress": 30}
    assert api.post(url, first, format="json").status_code == 200
    assert api.post(url, {"progress": 70}, format="json").status_code == 200
    events = _task_events(task.pk)

    again = api.post(url, first, format="json")

    assert again.status_code == 200
    assert again.json()["progress"] == 70
    assert _task_events(task.pk) == events


def test_a_task_patch_replayed_after_another_patch_changes_nothing(race, api):
    project, _, _, _ = race
    task = task_create(project=project, title="t")[0]
    url = f"/api/v1/tasks/{task.pk}/"
    first = {"id": str(uuid.uuid4()), "title": "first"}
    assert api.patch(url, first, format="json").status_code == 200
    assert api.patch(url, {"title": "second"}, format="json").status_code == 200
    events = _task_events(task.pk)

    again = api.patch(url, first, format="json")

    assert again.status_code == 200
    assert (again.json()["title"], again.json()["version"]) == ("second", 3)
    assert _task_events(task.pk) == events


def test_a_run_update_replayed_after_a_later_one_changes_nothing(race, api):
    project, _, agent, _ = race
    task = task_create(project=project, title="t")[0]
    run = run_create(project=project, task=task, agent=agent)[0]
    url = f"/api/v1/runs/{run.pk}/"
    first = {"id": str(uuid.uuid4()), "prompt_tokens": 10}
    assert api.patch(url, first, format="json").status_code == 200
    later = {"prompt_tokens": 25, "status": "completed"}
    assert api.patch(url, later, format="json").status_code == 200

    again = api.patch(url, first, format="json")

    assert again.status_code == 200
    assert (again.json()["prompt_tokens"], again.json()["status"]) == (25, "completed")
    task.refresh_from_db()
    assert task.prompt_tokens == 25
    assert Event.objects.filter(kind="run.updated", task_id=task.pk).count() == 2


def test_a_heartbeat_replayed_records_nothing_more(race, api):
    _, _, agent, _ = race
    url = f"/api/v1/agents/{agent.pk}/heartbeat/"
    beat = {"id": str(uuid.uuid4()), "status": "busy"}
    assert api.post(url, beat, format="json").status_code == 200
    assert api.post(url, {"status": "idle"}, format="json").status_code == 200

    again = api.post(url, beat, format="json")

    assert again.status_code == 200
    assert again.json()["status"] == "idle"
    assert AgentHeartbeat.objects.filter(agent=agent).count() == 2


def test_an_operation_id_reused_for_another_task_is_a_409(race, api):
    project, _, _, _ = race
    one, two = (task_create(project=project, title=t)[0] for t in "ab")
    op = {"id": str(uuid.uuid4()), "status": "running"}
    first = api.post(f"/api/v1/tasks/{one.pk}/transition/", op, format="json")
    assert first.status_code == 200

    response = api.post(f"/api/v1/tasks/{two.pk}/transition/", op, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_conflict"


def test_a_create_retried_after_a_patch_is_judged_against_the_created_body(race, api):
    body = {"id": str(uuid.uuid4()), "title": "as created", "priority": 1}
    assert api.post("/api/v1/tasks/", body, format="json").status_code == 201
    url = f"/api/v1/tasks/{body['id']}/"
    assert api.patch(url, {"title": "renamed"}, format="json").status_code == 200

    retried = api.post("/api/v1/tasks/", body, format="json")
    other = api.post("/api/v1/tasks/", body | {"priority": 2}, format="json")

    assert retried.status_code == 200
    assert retried.json()["title"] == "renamed"
    assert other.status_code == 409


# Reserved names, refused on every path -------------------------------------


def test_a_reserved_event_kind_is_refused_by_the_events_endpoint(race, api):
    response = api.post("/api/v1/events/", {"kind": "task.created"}, format="json")
    assert response.status_code == 400
    assert "kind" in response.json()["error"]["fields"]


def test_a_reserved_event_kind_is_refused_by_ingest(race, api):
    item = {"type": "event", "data": {"kind": "run.started"}}
    response = api.post("/api/v1/ingest/", {"items": [item]}, format="json")
    assert response.status_code == 207
    [result] = response.json()["results"]
    assert result["status"] == "error"
    assert (
        "data.kind" in result["error"]["fields"] or "kind" in result["error"]["fields"]
    )


def test_a_reserved_audit_action_is_refused_by_the_audit_logs_endpoint(race, api):
    body = {"action": "api.request"}
    response = api.post("/api/v1/audit-logs/", body, format="json")
    assert response.status_code == 400
    assert "action" in response.json()["error"]["fields"]


def test_a_reserved_audit_action_is_refused_by_ingest(race, api):
    item = {"type": "audit", "data": {"action": "api.request"}}
    response = api.post("/api/v1/ingest/", {"items": [item]}, format="json")
    assert response.status_code == 207
    [result] = response.json()["results"]
    assert result["status"] == "error"
    assert result["error"]["code"] == "validation_error"


def test_a_reserved_audit_action_is_refused_by_the_services(race):
    project, _, _, _ = race
    with pytest.raises(ValidationError):
        audit_log_create(project_id=project.pk, action="task.created")
    with pytest.raises(ValidationError):
        audit_logs_create(project_id=project.pk, entries=[{"action": "api.request"}])
    with pytest.raises(ValidationError):
        audit_custom_events_create(
            project_id=project.pk, events=[{"kind": "agent.heartbeat"}]
        )
