import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from audit.models import Event
from audit.services import audit_custom_event_create
from swarmsite.services import api_key_create
from tasks.models import TaskStatus
from tasks.services import task_transition

pytestmark = pytest.mark.django_db


def _client(project, *, scopes=("read", "write"), name="tests") -> APIClient:
    _, secret = api_key_create(project=project, name=name, scopes=list(scopes))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def api(project) -> APIClient:
    return _client(project)


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()["error"]
    assert body["code"] == code
    return body


def test_event_list_returns_events_in_position_order_with_next_after(api, task):
    task_transition(task=task, status=TaskStatus.RUNNING)
    page = api.get("/api/v1/events/").json()
    positions = [e["position"] for e in page["results"]]
    assert positions == sorted(positions)
    assert page["next_after"] == positions[-1]
    assert page["next"] is None
    event = page["results"][-1]
    assert set(event) >= {
        "id",
        "position",
        "kind",
        "task",
        "conversation",
        "actor",
        "payload",
        "occurred_at",
        "recorded_at",
    }
    assert event["kind"] == "task.status_changed"
    assert event["payload"]["from"] == "pending"
    assert event["actor"] == {"type": "system", "id": "", "label": "system"}


def test_event_list_after_a_position_and_when_empty(api, task):
    page = api.get("/api/v1/events/").json()
    last = page["next_after"]
    empty = api.get(f"/api/v1/events/?after={last}").json()
    assert empty["results"] == []
    assert empty["next_after"] == last
    task_transition(task=task, status=TaskStatus.RUNNING)
    newer = api.get(f"/api/v1/events/?after={last}").json()
    assert [e["position"] for e in newer["results"]] == [last + 1]


def test_event_list_filters_by_task_conversation_and_repeatable_kind(
    api, project, task
):
    conversation = uuid.uuid4()
    audit_custom_event_create(
        project_id=project.pk, kind="note.a", conversation_id=conversation
    )
    audit_custom_event_create(project_id=project.pk, kind="note.b")

    def kinds(query: str) -> list[str]:
        response = api.get(f"/api/v1/events/?{query}")
        assert response.status_code == 200, response.content
        return [e["kind"] for e in response.json()["results"]]

    assert kinds(f"task={task.pk}") == ["task.created"]
    assert kinds(f"conversation={conversation}") == ["note.a"]
    assert kinds("kind=note.a&kind=note.b") == ["note.a", "note.b"]
    assert kinds("kind=note.b,task.created") == ["task.created", "note.b"]
    for query, field in [("task=x", "task.0"), ("after=x", "after")]:
        bad = api.get(f"/api/v1/events/?{query}")
        assert field in _error(bad, 400, "validation_error")["fields"]


def test_event_list_pages_forward_with_next(api, project):
    for n in range(5):
        audit_custom_event_create(project_id=project.pk, kind=f"n.{n}")
    page = api.get("/api/v1/events/?page_size=2").json()
    assert [e["kind"] for e in page["results"]] == ["n.0", "n.1"]
    following = api.get(page["next"]).json()
    assert [e["kind"] for e in following["results"]] == ["n.2", "n.3"]


def test_event_list_shows_only_the_callers_project(api, other_project):
    audit_custom_event_create(project_id=other_project.pk, kind="secret.thing")
    kinds = [e["kind"] for e in api.get("/api/v1/events/").json()["results"]]
    assert "secret.thing" not in kinds


def test_custom_event_create_answers_201_with_the_event(api, task):
    body = {"kind": "tool.called", "task": str(task.pk), "payload": {"tool": "grep"}}
    response = api.post("/api/v1/events/", body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["kind"] == "tool.called"
    assert data["task"] == str(task.pk)
    assert data["position"] > 0
    assert data["actor"]["type"] == "api_key"
    assert data["actor"]["label"] == "tests"


@pytest.mark.parametrize(
    "kind", ["task.done", "message.created", "run.x", "agent.x", "conversation.x"]
)
def test_custom_event_create_refuses_reserved_kinds(api, kind):
    response = api.post("/api/v1/events/", {"kind": kind}, format="json")
    assert "kind" in _error(response, 400, "validation_error")["fields"]
    assert not Event.objects.filter(kind=kind).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "kind"),
        ({"kind": "x" * 101}, "kind"),
        ({"kind": "a.b", "payload": [1]}, "payload"),
        ({"kind": "a.b", "task": "nope"}, "task"),
        ({"kind": "a.b", "position": 3}, "position"),
        ({"kind": "a.b", "actor": {}}, "actor"),
    ],
)
def test_custom_event_create_refuses_bad_input_naming_the_field(api, body, field):
    response = api.post("/api/v1/events/", body, format="json")
    assert field in _error(response, 400, "validation_error")["fields"]


def test_custom_event_create_with_a_known_id_is_idempotent_or_a_conflict(
    api, other_project
):
    event_id = str(uuid.uuid4())
    body = {"id": event_id, "kind": "note.added", "payload": {"n": 1}}
    assert api.post("/api/v1/events/", body, format="json").status_code == 201
    again = api.post("/api/v1/events/", body, format="json")
    assert again.status_code == 200
    assert again.json()["id"] == event_id
    changed = {**body, "payload": {"n": 2}}
    _error(
        api.post("/api/v1/events/", changed, format="json"), 409, "idempotency_conflict"
    )
    assert Event.objects.filter(uuid=event_id).count() == 1
    other = _client(other_project, name="other")
    _error(
        other.post("/api/v1/events/", body, format="json"), 409, "idempotency_conflict"
    )


def test_a_read_only_key_cannot_append_events(project):
    reader = _client(project, scopes=("read",), name="reader")
    assert reader.get("/api/v1/events/").status_code == 200
    response = reader.post("/api/v1/events/", {"kind": "a.b"}, format="json")
    _error(response, 403, "permission_denied")


def test_event_list_needs_a_valid_key():
    _error(APIClient().get("/api/v1/events/"), 401, "not_authenticated")
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer ss_00000000_x")
    _error(bad.get("/api/v1/events/"), 401, "authentication_failed")


def test_event_list_query_count_does_not_grow_with_the_page(api, project):
    url = "/api/v1/events/?page_size=100"
    api.get(url)
    for n in range(5):
        audit_custom_event_create(project_id=project.pk, kind=f"n.{n}")
    with CaptureQueriesContext(connection) as small:
        api.get(url)
    for n in range(50):
        audit_custom_event_create(project_id=project.pk, kind=f"m.{n}")
    with CaptureQueriesContext(connection) as large:
        response = api.get(url)
    assert len(response.json()["results"]) == 55
    assert len(small.captured_queries) == len(large.captured_queries)
