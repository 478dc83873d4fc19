import uuid
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from audit.chain import audit_chain_verify
from audit.models import AuditLog, Event
from audit.services import audit_custom_event_create, audit_log_record
from swarmsite.actors import Actor
from tasks.models import TaskStatus
from tasks.services import task_transition
from tests.conftest import assert_error, count_queries

pytestmark = pytest.mark.django_db


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
        assert field in assert_error(bad, 400, "validation_error")["fields"]


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
    assert "kind" in assert_error(response, 400, "validation_error")["fields"]
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
    assert field in assert_error(response, 400, "validation_error")["fields"]


def test_custom_event_create_with_a_known_id_is_idempotent_or_a_conflict(
    api, other_project, make_api_client
):
    event_id = str(uuid.uuid4())
    body = {"id": event_id, "kind": "note.added", "payload": {"n": 1}}
    assert api.post("/api/v1/events/", body, format="json").status_code == 201
    again = api.post("/api/v1/events/", body, format="json")
    assert again.status_code == 200
    assert again.json()["id"] == event_id
    changed = {**body, "payload": {"n": 2}}
    assert_error(
        api.post("/api/v1/events/", changed, format="json"), 409, "idempotency_conflict"
    )
    assert Event.objects.filter(uuid=event_id).count() == 1
    other = make_api_client(other_project, name="other")
    assert_error(
        other.post("/api/v1/events/", body, format="json"), 409, "idempotency_conflict"
    )


def test_a_read_only_key_cannot_append_events(reader):
    assert reader.get("/api/v1/events/").status_code == 200
    response = reader.post("/api/v1/events/", {"kind": "a.b"}, format="json")
    assert_error(response, 403, "permission_denied")


def test_event_list_needs_a_valid_key():
    assert_error(APIClient().get("/api/v1/events/"), 401, "not_authenticated")
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer ss_00000000_x")
    assert_error(bad.get("/api/v1/events/"), 401, "authentication_failed")


def test_event_list_query_count_does_not_grow_with_the_page(api, project):
    url = "/api/v1/events/?page_size=100"
    api.get(url)
    for n in range(5):
        audit_custom_event_create(project_id=project.pk, kind=f"n.{n}")
    small = count_queries(api, url)
    for n in range(50):
        audit_custom_event_create(project_id=project.pk, kind=f"m.{n}")
    large = count_queries(api, url)
    assert len(api.get(url).json()["results"]) == 55
    assert small == large


# Audit log ----------------------------------------------------------------


def _record(project, **kwargs):
    return audit_log_record(
        project_id=project.pk, **{"action": "tool.invoke", **kwargs}
    )


def test_audit_log_create_answers_201_with_the_record_and_the_key_as_actor(api):
    body = {
        "action": "tool.invoke",
        "target": "grep",
        "success": False,
        "duration_ms": 12.5,
        "error": "exit status 2",
        "details": {"args": ["-r", "x"]},
    }
    response = api.post("/api/v1/audit-logs/", body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert {k: data[k] for k in body} == body
    assert data["actor"]["type"] == "api_key"
    assert data["actor"]["label"] == "tests"
    assert data["seq"] >= 1
    assert data["request_id"] == response["X-Request-ID"]
    stored = AuditLog.objects.get(uuid=data["id"])
    assert stored.hash == data["hash"]


def test_audit_log_create_with_a_known_id_is_idempotent_or_a_conflict(
    api, other_project, make_api_client
):
    body = {"id": str(uuid.uuid4()), "action": "file.write", "target": "/tmp/a"}
    assert api.post("/api/v1/audit-logs/", body, format="json").status_code == 201
    again = api.post("/api/v1/audit-logs/", body, format="json")
    assert again.status_code == 200, again.content
    assert again.json()["id"] == body["id"]
    changed = {**body, "target": "/tmp/b"}
    response = api.post("/api/v1/audit-logs/", changed, format="json")
    assert "target" in assert_error(response, 409, "idempotency_conflict")["message"]
    other = make_api_client(other_project, name="other")
    response = other.post("/api/v1/audit-logs/", body, format="json")
    assert_error(response, 409, "idempotency_conflict")
    assert AuditLog.objects.filter(uuid=body["id"]).count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "action"),
        ({"action": ""}, "action"),
        ({"action": "x" * 101}, "action"),
        ({"action": "api.request"}, "action"),
        ({"action": "task.created"}, "action"),
        ({"action": "a.b", "duration_ms": -1}, "duration_ms"),
        ({"action": "a.b", "duration_ms": "fast"}, "duration_ms"),
        ({"action": "a.b", "success": "perhaps"}, "success"),
        ({"action": "a.b", "details": [1]}, "details"),
        ({"action": "a.b", "id": "nope"}, "id"),
        ({"action": "a.b", "seq": 1}, "seq"),
        ({"action": "a.b", "hash": "0" * 64}, "hash"),
        ({"action": "a.b", "colour": "red"}, "colour"),
    ],
)
def test_audit_log_create_refuses_bad_input_naming_the_field(api, body, field):
    before = AuditLog.objects.count()
    response = api.post("/api/v1/audit-logs/", body, format="json")
    assert field in assert_error(response, 400, "validation_error")["fields"]
    assert AuditLog.objects.count() == before


def test_a_read_only_key_lists_but_cannot_record_audit_logs(reader):
    assert reader.get("/api/v1/audit-logs/").status_code == 200
    response = reader.post("/api/v1/audit-logs/", {"action": "a.b"}, format="json")
    assert_error(response, 403, "permission_denied")


def test_audit_log_endpoints_need_a_valid_key(project):
    entry = _record(project)
    for url in ("/api/v1/audit-logs/", f"/api/v1/audit-logs/{entry.uuid}/"):
        assert_error(APIClient().get(url), 401, "not_authenticated")


def test_audit_log_list_is_newest_first_and_pages_with_cursors(api, project):
    start = timezone.now() - timedelta(hours=1)
    for n in range(5):
        _record(project, target=f"t{n}", occurred_at=start + timedelta(minutes=n))
    page = api.get("/api/v1/audit-logs/?page_size=2").json()
    assert [e["target"] for e in page["results"]] == ["t4", "t3"]
    following = api.get(page["next"]).json()
    assert [e["target"] for e in following["results"]] == ["t2", "t1"]
    assert api.get(following["previous"]).json()["results"] == page["results"]


def test_audit_log_list_filters(api, project):
    start = timezone.now() - timedelta(hours=1)
    agent_id = str(uuid.uuid4())
    actor = Actor(type="agent", id=agent_id, label="worker-1")
    _record(project, target="a", occurred_at=start)
    _record(
        project,
        action="file.write",
        target="b",
        success=False,
        actor=actor,
        occurred_at=start + timedelta(minutes=10),
    )
    _record(
        project,
        action="file.read",
        target="c",
        actor=actor,
        occurred_at=start + timedelta(minutes=20),
    )

    def targets(query: str) -> list[str]:
        response = api.get(f"/api/v1/audit-logs/?{query}")
        assert response.status_code == 200, response.content
        return [e["target"] for e in response.json()["results"]]

    assert targets("action=file.write") == ["b"]
    assert targets("action=file.write&action=tool.invoke") == ["b", "a"]
    assert targets("action=file.read,tool.invoke") == ["c", "a"]
    assert targets(f"actor={agent_id}") == ["c", "b"]
    assert targets("actor_type=agent&success=true") == ["c"]
    assert targets("success=false") == ["b"]
    since = quote((start + timedelta(minutes=10)).isoformat())
    until = quote((start + timedelta(minutes=20)).isoformat())
    assert targets(f"since={since}") == ["c", "b"]
    assert targets(f"until={until}") == ["b", "a"]
    assert targets(f"since={since}&until={until}") == ["b"]
    assert targets("target=a") == ["a"]
    for query, field in [
        ("since=yesterday", "since"),
        ("success=perhaps", "success"),
        ("actor_type=robot", "actor_type"),
        ("cursor=bogus", "cursor"),
        ("action=" + ",".join(["x"] * 101), "action"),
    ]:
        bad = api.get(f"/api/v1/audit-logs/?{query}")
        assert field in assert_error(bad, 400, "validation_error")["fields"], query


def test_audit_log_list_and_detail_show_only_the_callers_project(
    api, project, other_project
):
    mine = _record(project, target="mine")
    theirs = _record(other_project, target="theirs")
    results = api.get("/api/v1/audit-logs/").json()["results"]
    assert [e["target"] for e in results] == ["mine"]
    detail = api.get(f"/api/v1/audit-logs/{mine.uuid}/")
    assert detail.status_code == 200
    assert detail.json()["id"] == str(mine.uuid)
    for bad in (theirs.uuid, uuid.uuid4(), "not-a-uuid"):
        assert_error(api.get(f"/api/v1/audit-logs/{bad}/"), 404, "not_found")


def test_audit_log_list_query_count_does_not_grow_with_the_page(api, project):
    url = "/api/v1/audit-logs/?page_size=100&success=true"
    api.get(url)
    for n in range(3):
        _record(project, target=f"n{n}")
    small = count_queries(api, url)
    for n in range(40):
        _record(project, target=f"m{n}")
    large = count_queries(api, url)
    assert len(api.get(url).json()["results"]) == 43
    assert small == large


def test_audit_log_records_written_over_the_api_keep_the_chain_intact(api, project):
    for n in range(3):
        body = {"action": "tool.invoke", "details": {"n": n, "f": 1e20}}
        assert api.post("/api/v1/audit-logs/", body, format="json").status_code == 201
    assert audit_chain_verify(project_id=project.pk).intact
