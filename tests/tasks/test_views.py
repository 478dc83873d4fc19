import uuid

import pytest
from rest_framework.test import APIClient

from audit.models import Event
from tasks.models import Task, TaskStatus
from tasks.services import (
    agent_register,
    run_create,
    task_create,
    task_transition,
)
from tests.conftest import assert_error, count_queries
from tests.tasks.factories import (
    AgentFactory,
    AgentRunFactory,
    TaskFactory,
    WorkflowFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def foreign(other_project):
    """An agent, a task and a run of another project."""
    agent = AgentFactory(project=other_project, name="spy")
    task = TaskFactory(project=other_project, title="Secret")
    run = AgentRunFactory(project=other_project, task=task, agent=agent)
    return {"agent": agent, "task": task, "run": run}


# Agents -------------------------------------------------------------------


def test_agent_register_answers_201_then_200_with_the_existing_agent(api):
    body = {"name": "planner", "role": "planner", "capabilities": ["plan"]}
    first = api.post("/api/v1/agents/", body, format="json")
    assert first.status_code == 201
    assert first.json()["role"] == "planner"
    again = api.post("/api/v1/agents/", {"name": "planner"}, format="json")
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]


def test_agent_register_records_the_api_key_as_actor(api):
    api.post(
        "/api/v1/agents/", {"name": "a1"}, format="json", HTTP_X_REQUEST_ID="req-7"
    )
    event = Event.objects.get(kind="agent.registered", payload__name="a1")
    assert event.actor_type == "api_key"
    assert event.actor_label == "tests"
    assert event.correlation_id == "req-7"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "a", "capabilities": {"not": "a list"}}, "capabilities"),
        ({"name": "a", "config": [1]}, "config"),
        ({"name": "a", "parent": "not-a-uuid"}, "parent"),
        ({"name": "a", "parent": str(uuid.uuid4())}, "parent"),
        ({"name": "a", "status": "busy"}, "status"),
        (
            {"name": "a", "last_heartbeat_at": "2024-01-01T00:00:00Z"},
            "last_heartbeat_at",
        ),
        ({"name": "a", "metadata": {"k": "nul\x00"}}, "metadata"),
    ],
)
def test_agent_register_refuses_bad_input_naming_the_field(api, body, field):
    response = api.post("/api/v1/agents/", body, format="json")
    assert field in assert_error(response, 400, "validation_error")["fields"]


def test_agent_register_refuses_a_parent_of_another_project(api, foreign):
    body = {"name": "child", "parent": str(foreign["agent"].pk)}
    response = api.post("/api/v1/agents/", body, format="json")
    assert "parent" in assert_error(response, 400, "validation_error")["fields"]


def test_agent_list_filters_by_role_status_and_parent(api, project, agent):
    boss = AgentFactory(project=project, name="boss", role="planner")
    agent_register(project=project, name="kid", role="worker", parent=boss)

    def names(query: str) -> set[str]:
        response = api.get(f"/api/v1/agents/?{query}")
        return {a["name"] for a in response.json()["results"]}

    assert names("role=worker") == {"worker-1", "kid"}
    assert names(f"parent={boss.pk}") == {"kid"}
    assert names("status=idle") == {"worker-1", "boss", "kid"}
    assert names("status=busy") == set()
    bad = api.get("/api/v1/agents/?parent=nope")
    assert "parent" in assert_error(bad, 400, "validation_error")["fields"]


def test_agent_patch_changes_fields_and_refuses_read_only_ones(api, agent):
    url = f"/api/v1/agents/{agent.pk}/"
    response = api.patch(url, {"role": "reviewer", "status": "busy"}, format="json")
    assert response.status_code == 200
    assert response.json()["role"] == "reviewer"
    assert response.json()["status"] == "busy"
    refused = api.patch(url, {"last_heartbeat_at": None, "id": "x"}, format="json")
    fields = assert_error(refused, 400, "validation_error")["fields"]
    assert set(fields) == {"last_heartbeat_at", "id"}


def test_agent_patch_refuses_a_taken_name(api, project, agent):
    agent_register(project=project, name="other")
    response = api.patch(
        f"/api/v1/agents/{agent.pk}/", {"name": "other"}, format="json"
    )
    assert "name" in assert_error(response, 400, "validation_error")["fields"]


def test_agent_heartbeat_sets_status_and_time(api, agent):
    url = f"/api/v1/agents/{agent.pk}/heartbeat/"
    response = api.post(url, {"status": "busy", "details": {"load": 1}}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "busy"
    assert response.json()["last_heartbeat_at"] is not None
    bad = api.post(url, {"status": "sleeping"}, format="json")
    assert "status" in assert_error(bad, 400, "validation_error")["fields"]


# Tasks --------------------------------------------------------------------


def test_task_create_answers_201_pending_version_1(api, agent):
    body = {
        "title": "Summarise",
        "description": "long text",
        "priority": 3,
        "assigned_agent": str(agent.pk),
        "input": {"doc": 1},
        "metadata": {"k": "v"},
    }
    response = api.post("/api/v1/tasks/", body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["status"], data["progress"], data["version"]) == ("pending", 0, 1)
    assert data["agents"] == [str(agent.pk)]
    assert data["input"] == {"doc": 1}
    event = Event.objects.get(kind="task.created", task_id=data["id"])
    assert event.actor_type == "api_key"


def test_task_create_with_a_known_id_is_idempotent_or_a_conflict(api):
    task_id = str(uuid.uuid4())
    body = {"id": task_id, "title": "Once", "priority": 1}
    assert api.post("/api/v1/tasks/", body, format="json").status_code == 201
    again = api.post("/api/v1/tasks/", body, format="json")
    assert again.status_code == 200
    assert again.json()["id"] == task_id
    different = api.post("/api/v1/tasks/", {**body, "title": "Twice"}, format="json")
    assert_error(different, 409, "idempotency_conflict")
    assert Task.objects.filter(pk=task_id).count() == 1


def test_task_create_with_another_projects_id_is_a_conflict(api, foreign):
    body = {"id": str(foreign["task"].pk), "title": "Secret"}
    assert_error(
        api.post("/api/v1/tasks/", body, format="json"), 409, "idempotency_conflict"
    )


@pytest.mark.parametrize(
    "field",
    [
        "status",
        "version",
        "progress",
        "result",
        "result_summary",
        "error",
        "prompt_tokens",
        "cost",
        "created_at",
        "completed_at",
        "project",
    ],
)
def test_task_create_refuses_read_only_fields(api, field):
    response = api.post("/api/v1/tasks/", {"title": "t", field: 7}, format="json")
    fields = assert_error(response, 400, "validation_error")["fields"]
    assert fields == {field: ["This field is read-only."]}
    assert not Task.objects.filter(title="t").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "t", "priority": "high"}, "priority"),
        ({"title": "t", "priority": 2**40}, "priority"),
        ({"title": "t", "agents": ["nope"]}, "agents.0"),
        ({"title": "t", "agents": [str(uuid.uuid4())]}, "agents"),
        ({"title": "t", "depends_on": "x"}, "depends_on"),
        ({"title": "t", "parent": str(uuid.uuid4())}, "parent"),
        ({"title": "t", "workflow": str(uuid.uuid4())}, "workflow"),
        ({"title": "t", "metadata": [1]}, "metadata"),
        ({"title": "t", "input": {"a": "\x00"}}, "input"),
        ({"title": "t\x00"}, "title"),
        ({"title": "t", "bogus": 1}, "bogus"),
    ],
)
def test_task_create_refuses_bad_input_naming_the_field(api, body, field):
    response = api.post("/api/v1/tasks/", body, format="json")
    assert field in assert_error(response, 400, "validation_error")["fields"]


def test_task_create_refuses_another_projects_agent(api, foreign):
    body = {"title": "t", "assigned_agent": str(foreign["agent"].pk)}
    response = api.post("/api/v1/tasks/", body, format="json")
    assert "assigned_agent" in assert_error(response, 400, "validation_error")["fields"]


def test_task_create_refuses_a_body_that_is_not_an_object(api):
    response = api.post("/api/v1/tasks/", [{"title": "t"}], format="json")
    assert_error(response, 400, "validation_error")


def test_task_list_leaves_out_big_fields_unless_full(api, task):
    row = api.get("/api/v1/tasks/").json()["results"][0]
    assert not {"description", "input", "result", "depends_on"} & set(row)
    full = api.get("/api/v1/tasks/?fields=full").json()["results"][0]
    assert {"description", "input", "result", "depends_on"} <= set(full)
    bad = api.get("/api/v1/tasks/?fields=everything")
    assert "fields" in assert_error(bad, 400, "validation_error")["fields"]


def test_task_list_filters(api, project, agent, task):
    helper = AgentFactory(project=project, name="helper")
    flow = WorkflowFactory(project=project, name="flow")
    child = TaskFactory(
        project=project,
        title="Child step",
        description="needle inside",
        parent=task,
        workflow=flow,
        session_id="s-1",
        agents=[helper],
    )
    task_transition(task=child, status=TaskStatus.RUNNING)

    def ids(query: str) -> set[str]:
        response = api.get(f"/api/v1/tasks/?{query}")
        assert response.status_code == 200, response.content
        return {t["id"] for t in response.json()["results"]}

    both = {str(task.pk), str(child.pk)}
    assert ids("status=running") == {str(child.pk)}
    assert ids("status=running&status=pending") == both
    assert ids(f"assigned_agent={agent.pk}") == {str(task.pk)}
    assert ids(f"agent={helper.pk}") == {str(child.pk)}
    assert ids(f"workflow={flow.pk}") == {str(child.pk)}
    assert ids("session_id=s-1") == {str(child.pk)}
    assert ids(f"parent={task.pk}") == {str(child.pk)}
    assert ids("search=NEEDLE") == {str(child.pk)}
    assert ids("search=report") == {str(task.pk)}
    assert ids("created_after=2000-01-01T00:00:00Z") == both
    assert ids("created_before=2000-01-01T00:00:00Z") == set()
    for query, field in [
        ("status=done", "status"),
        ("assigned_agent=x", "assigned_agent"),
        ("created_after=yesterday", "created_after"),
    ]:
        bad = api.get(f"/api/v1/tasks/?{query}")
        assert field in assert_error(bad, 400, "validation_error")["fields"]


def test_task_list_pages_with_cursors_and_clamps_page_size(api, project):
    for n in range(5):
        task_create(project=project, title=f"t{n}")
    first = api.get("/api/v1/tasks/?page_size=2").json()
    assert [t["title"] for t in first["results"]] == ["t4", "t3"]
    second = api.get(first["next"]).json()
    assert [t["title"] for t in second["results"]] == ["t2", "t1"]
    huge = api.get("/api/v1/tasks/?page_size=100000")
    assert huge.status_code == 200
    assert len(huge.json()["results"]) == 5
    bad_cursor = api.get("/api/v1/tasks/?cursor=garbage")
    assert "cursor" in assert_error(bad_cursor, 400, "validation_error")["fields"]


def test_task_patch_changes_descriptive_fields_and_bumps_version(api, task):
    url = f"/api/v1/tasks/{task.pk}/"
    response = api.patch(url, {"title": "New", "priority": 5}, format="json")
    assert response.status_code == 200
    assert response.json()["title"] == "New"
    assert response.json()["version"] == 2


@pytest.mark.parametrize("field", ["status", "version", "progress", "parent", "cost"])
def test_task_patch_refuses_read_only_fields(api, task, field):
    response = api.patch(f"/api/v1/tasks/{task.pk}/", {field: 1}, format="json")
    assert field in assert_error(response, 400, "validation_error")["fields"]
    task.refresh_from_db()
    assert task.version == 1


def test_task_patch_with_a_stale_expected_version_is_a_conflict(api, task):
    body = {"title": "New", "expected_version": 7}
    response = api.patch(f"/api/v1/tasks/{task.pk}/", body, format="json")
    assert_error(response, 409, "version_conflict")


def test_task_transition_answers_with_version_plus_one(api, task):
    url = f"/api/v1/tasks/{task.pk}/transition/"
    response = api.post(
        url, {"status": "running", "expected_version": 1}, format="json"
    )
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["version"]) == ("running", 2)
    done = api.post(
        url,
        {"status": "completed", "result": {"ok": True}, "result_summary": "Done."},
        format="json",
    )
    assert done.json()["result"] == {"ok": True}
    assert done.json()["progress"] == 100


def test_task_transition_conflicts_carry_their_codes(api, task):
    url = f"/api/v1/tasks/{task.pk}/transition/"
    illegal = assert_error(
        api.post(url, {"status": "completed"}, format="json"),
        409,
        "illegal_transition",
    )
    assert "pending" in illegal["message"]
    stale = api.post(url, {"status": "running", "expected_version": 9}, format="json")
    assert_error(stale, 409, "version_conflict")
    missing = api.post(url, {}, format="json")
    assert "status" in assert_error(missing, 400, "validation_error")["fields"]
    unknown = api.post(url, {"status": "done"}, format="json")
    assert "status" in assert_error(unknown, 400, "validation_error")["fields"]


def test_task_progress_is_set_and_bounded(api, task):
    url = f"/api/v1/tasks/{task.pk}/progress/"
    assert api.post(url, {"progress": 40}, format="json").json()["progress"] == 40
    for bad in (101, -1, "half", None):
        response = api.post(url, {"progress": bad}, format="json")
        assert "progress" in assert_error(response, 400, "validation_error")["fields"]
    task_transition(task=task, status=TaskStatus.CANCELLED)
    assert_error(api.post(url, {"progress": 50}, format="json"), 409, "conflict")


def test_task_events_are_that_tasks_after_a_position(api, project, task):
    other = TaskFactory(project=project, title="Other")
    task_transition(task=task, status=TaskStatus.RUNNING)
    url = f"/api/v1/tasks/{task.pk}/events/"
    page = api.get(url).json()
    assert [e["kind"] for e in page["results"]] == [
        "task.created",
        "task.status_changed",
    ]
    assert {e["task"] for e in page["results"]} == {str(task.pk)}
    assert page["next_after"] == page["results"][-1]["position"]
    first = page["results"][0]["position"]
    later = api.get(f"{url}?after={first}").json()
    assert [e["kind"] for e in later["results"]] == ["task.status_changed"]
    assert str(other.pk) not in {e["task"] for e in later["results"]}
    small = api.get(f"{url}?page_size=1").json()
    assert len(small["results"]) == 1
    assert f"after={small['next_after']}" in small["next"]
    bad = api.get(f"{url}?after=-3")
    assert "after" in assert_error(bad, 400, "validation_error")["fields"]


# Runs ---------------------------------------------------------------------


def test_run_create_then_update_rolls_usage_into_the_task(api, task, agent):
    body = {"task": str(task.pk), "agent": str(agent.pk), "prompt_tokens": 10}
    created = api.post("/api/v1/runs/", body, format="json")
    assert created.status_code == 201, created.content
    run_id = created.json()["id"]
    again = api.post("/api/v1/runs/", {**body, "id": run_id}, format="json")
    assert again.status_code == 200
    url = f"/api/v1/runs/{run_id}/"
    done = api.patch(
        url, {"status": "completed", "prompt_tokens": 25, "cost": "0.5"}, format="json"
    )
    assert done.status_code == 200, done.content
    assert done.json()["ended_at"] is not None
    task.refresh_from_db()
    assert task.prompt_tokens == 25
    reopen = api.patch(url, {"status": "running"}, format="json")
    assert_error(reopen, 409, "illegal_transition")
    refused = api.patch(url, {"task": str(task.pk)}, format="json")
    assert "task" in assert_error(refused, 400, "validation_error")["fields"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "task"),
        ({"task": "nope"}, "task"),
        ({"task": str(uuid.uuid4())}, "task"),
        ({"task": None}, "task"),
        ("TASK", "prompt_tokens"),
        ("TASK", "cost"),
        ("TASK", "status"),
    ],
)
def test_run_create_refuses_bad_input_naming_the_field(api, task, body, field):
    if body == "TASK":
        body = {"task": str(task.pk), field: -1}
    response = api.post("/api/v1/runs/", body, format="json")
    assert field in assert_error(response, 400, "validation_error")["fields"]


def test_run_create_refuses_another_projects_task(api, foreign):
    response = api.post(
        "/api/v1/runs/", {"task": str(foreign["task"].pk)}, format="json"
    )
    assert "task" in assert_error(response, 400, "validation_error")["fields"]


# Scoping, auth and scopes -------------------------------------------------


def _detail_routes(objs) -> list[tuple[str, str, dict]]:
    agent, task, run = objs["agent"].pk, objs["task"].pk, objs["run"].pk
    return [
        ("get", f"/api/v1/agents/{agent}/", {}),
        ("patch", f"/api/v1/agents/{agent}/", {"role": "x"}),
        ("post", f"/api/v1/agents/{agent}/heartbeat/", {}),
        ("get", f"/api/v1/tasks/{task}/", {}),
        ("patch", f"/api/v1/tasks/{task}/", {"title": "x"}),
        ("post", f"/api/v1/tasks/{task}/transition/", {"status": "running"}),
        ("post", f"/api/v1/tasks/{task}/progress/", {"progress": 1}),
        ("get", f"/api/v1/tasks/{task}/events/", {}),
        ("get", f"/api/v1/runs/{run}/", {}),
        ("patch", f"/api/v1/runs/{run}/", {"status": "running"}),
    ]


def test_every_detail_route_answers_404_for_another_projects_object(api, foreign):
    for method, url, body in _detail_routes(foreign):
        response = getattr(api, method)(url, body, format="json")
        assert response.status_code == 404, (method, url, response.content)
        assert response.json()["error"]["code"] == "not_found"
    foreign["task"].refresh_from_db()
    assert foreign["task"].version == 1


def test_every_detail_route_answers_404_for_unknown_and_malformed_ids(api):
    missing = {"agent": uuid.uuid4(), "task": uuid.uuid4(), "run": uuid.uuid4()}
    malformed = dict.fromkeys(("agent", "task", "run"), "not-a-uuid")
    for ids in (missing, malformed):
        objs = {k: type("Obj", (), {"pk": v}) for k, v in ids.items()}
        for method, url, body in _detail_routes(objs):
            response = getattr(api, method)(url, body, format="json")
            assert_error(response, 404, "not_found")


def test_a_read_only_key_reads_but_cannot_write(reader, agent, task):
    assert reader.get("/api/v1/tasks/").status_code == 200
    assert reader.get(f"/api/v1/agents/{agent.pk}/").status_code == 200
    writes = [
        ("post", "/api/v1/agents/", {"name": "n"}),
        ("post", "/api/v1/tasks/", {"title": "t"}),
        ("post", "/api/v1/runs/", {"task": str(task.pk)}),
        *[
            r
            for r in _detail_routes({"agent": agent, "task": task, "run": task})
            if r[0] != "get"
        ],
    ]
    for method, url, body in writes:
        response = getattr(reader, method)(url, body, format="json")
        assert_error(response, 403, "permission_denied")
    assert not Task.objects.filter(title="t").exists()


@pytest.mark.parametrize(
    "url", ["/api/v1/agents/", "/api/v1/tasks/", "/api/v1/runs/", "/api/v1/events/"]
)
def test_lists_need_a_key(url):
    response = APIClient().get(url)
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_unsupported_methods_answer_405(api, task):
    response = api.delete(f"/api/v1/tasks/{task.pk}/")
    assert_error(response, 405, "method_not_allowed")
    assert_error(
        api.put(f"/api/v1/tasks/{task.pk}/", {}, format="json"),
        405,
        "method_not_allowed",
    )


# Query counts -------------------------------------------------------------


def test_list_query_counts_do_not_grow_with_the_page(api, project, agent):
    def fill(count: int) -> None:
        for n in range(count):
            t = TaskFactory(
                project=project,
                title=f"t{n}",
                assigned_agent=agent,
                agents=[agent],
                depends_on=[],
            )
            agent_register(project=project, name=f"a{n}", parent=agent)
            run_create(project=project, task=t, agent=agent)
            task_transition(task=t, status=TaskStatus.RUNNING)

    urls = [
        "/api/v1/agents/?page_size=100",
        "/api/v1/tasks/?page_size=100",
        "/api/v1/tasks/?page_size=100&fields=full",
        "/api/v1/runs/?page_size=100",
        "/api/v1/events/?page_size=100",
    ]
    api.get("/api/v1/agents/")  # the key's last-used time is written once
    fill(5)
    small = {url: count_queries(api, url) for url in urls}
    fill(45)
    large = {url: count_queries(api, url) for url in urls}
    assert small == large
    assert max(large.values()) <= 6


def test_task_events_query_count_does_not_grow_with_the_page(api, task):
    url = f"/api/v1/tasks/{task.pk}/events/?page_size=100"
    api.get(url)
    small = count_queries(api, url)
    for n in range(40):
        api.post(f"/api/v1/tasks/{task.pk}/progress/", {"progress": n}, format="json")
    assert count_queries(api, url) == small
