"""HTTP API of the work queue, dependencies, workflows and agent roll-ups."""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tasks.models import Task
from tasks.services import agent_heartbeat, task_create, task_transition

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(project, make_api_client):
    return make_api_client(project)


def post(client, url, body=None):
    return client.post(url, body or {}, format="json")


def error_code(response, status):
    assert response.status_code == status, response.content
    return response.json()["error"]["code"]


def queued(project, title, **fields):
    task, _ = task_create(project=project, title=title, **fields)
    return task_transition(task=task, status="queued")


def test_claim_answers_the_task_running_with_a_lease(client, project, agent):
    queued(project, "low", priority=1)
    best = queued(project, "high", priority=7)

    response = post(client, "/api/v1/tasks/claim/", {"agent": str(agent.pk)})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == str(best.pk)
    assert body["status"] == "running"
    assert body["assigned_agent"] == str(agent.pk)
    assert body["attempts"] == 1
    assert body["lease_expires_at"]
    assert body["blocked"] is False


def test_claim_answers_204_when_nothing_is_claimable(client, agent):
    response = post(client, "/api/v1/tasks/claim/", {"agent": str(agent.pk)})
    assert response.status_code == 204
    assert response.content == b""


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "agent"),
        ({"lease_seconds": 86_401}, "lease_seconds"),
        ({"lease_seconds": 0}, "lease_seconds"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_claim_refuses_bad_bodies(client, agent, body, field):
    body = {"agent": str(agent.pk), **body} if field != "agent" else body
    response = post(client, "/api/v1/tasks/claim/", body)
    assert error_code(response, 400) == "validation_error"
    assert field in response.json()["error"]["fields"]


def test_claim_of_another_projects_agent_is_refused(
    client, other_project, make_api_client
):
    from tasks.services import agent_register

    spy, _ = agent_register(project=other_project, name="spy")
    response = post(client, "/api/v1/tasks/claim/", {"agent": str(spy.pk)})
    assert error_code(response, 400) == "validation_error"


def test_a_retried_claim_with_its_id_answers_the_same_task(client, project, agent):
    queued(project, "a")
    queued(project, "b")
    body = {"agent": str(agent.pk), "id": str(uuid.uuid4())}

    first = post(client, "/api/v1/tasks/claim/", body)
    again = post(client, "/api/v1/tasks/claim/", body)

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["id"] == first.json()["id"]
    assert Task.objects.filter(status="running").count() == 1


def test_heartbeat_extends_the_lease(client, project, agent):
    task = queued(project, "a")
    claimed = post(
        client, "/api/v1/tasks/claim/", {"agent": str(agent.pk), "lease_seconds": 5}
    ).json()

    response = post(
        client, f"/api/v1/tasks/{task.pk}/heartbeat/", {"lease_seconds": 3600}
    )

    assert response.status_code == 200, response.content
    assert response.json()["lease_expires_at"] > claimed["lease_expires_at"]


def test_heartbeat_of_a_task_that_is_not_running_is_409(client, project):
    task = queued(project, "a")
    response = post(client, f"/api/v1/tasks/{task.pk}/heartbeat/")
    assert error_code(response, 409) == "conflict"


def test_dependencies_are_added_and_removed_and_show_blocked(client, project):
    a, _ = task_create(project=project, title="a")
    b, _ = task_create(project=project, title="b")
    c, _ = task_create(project=project, title="c")

    response = post(
        client,
        f"/api/v1/tasks/{a.pk}/dependencies/",
        {"depends_on": [str(b.pk), str(c.pk)]},
    )
    assert response.status_code == 200, response.content
    assert sorted(response.json()["depends_on"]) == sorted([str(b.pk), str(c.pk)])
    assert response.json()["blocked"] is True

    blocked = client.get("/api/v1/tasks/", {"blocked": "true"}).json()["results"]
    assert [t["id"] for t in blocked] == [str(a.pk)]
    free = client.get("/api/v1/tasks/", {"blocked": "false"}).json()["results"]
    assert {t["id"] for t in free} == {str(b.pk), str(c.pk)}

    gone = client.delete(f"/api/v1/tasks/{a.pk}/dependencies/{b.pk}/")
    assert gone.status_code == 204
    detail = client.get(f"/api/v1/tasks/{a.pk}/").json()
    assert detail["depends_on"] == [str(c.pk)]


def test_a_dependency_cycle_answers_409_dependency_cycle(client, project):
    a, _ = task_create(project=project, title="a")
    b, _ = task_create(project=project, title="b", depends_on=[a.pk])
    response = post(
        client, f"/api/v1/tasks/{a.pk}/dependencies/", {"depends_on": [str(b.pk)]}
    )
    assert error_code(response, 409) == "dependency_cycle"


def test_tasks_filter_by_key_and_a_repeated_key_answers_200(client):
    first = post(client, "/api/v1/tasks/", {"title": "x", "key": "job-7"})
    again = post(client, "/api/v1/tasks/", {"title": "x", "key": "job-7"})
    other = post(client, "/api/v1/tasks/", {"title": "y", "key": "job-7"})

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert error_code(other, 409) == "idempotency_conflict"
    found = client.get("/api/v1/tasks/", {"key": "job-7"}).json()["results"]
    assert [t["key"] for t in found] == ["job-7"]


def test_workflow_api_creates_lists_patches_and_cancels(client, project, agent):
    created = post(client, "/api/v1/workflows/", {"name": "etl", "metadata": {"a": 1}})
    assert created.status_code == 201, created.content
    workflow = created.json()
    assert workflow["status"] == "open"
    assert workflow["task_counts"]["pending"] == 0

    for title in ("one", "two"):
        post(client, "/api/v1/tasks/", {"title": title, "workflow": workflow["id"]})
    listed = client.get("/api/v1/workflows/").json()["results"]
    assert [w["name"] for w in listed] == ["etl"]
    assert listed[0]["task_counts"]["pending"] == 2
    assert listed[0]["tasks_total"] == 2

    patched = client.patch(
        f"/api/v1/workflows/{workflow['id']}/",
        {"description": "nightly"},
        format="json",
    )
    assert patched.json()["description"] == "nightly"

    cancelled = post(client, f"/api/v1/workflows/{workflow['id']}/cancel/")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["task_counts"]["cancelled"] == 2
    tasks = client.get("/api/v1/tasks/", {"workflow": workflow["id"]}).json()
    assert {t["status"] for t in tasks["results"]} == {"cancelled"}


def test_workflow_create_with_an_existing_id_and_another_body_is_409(client):
    body = {"id": str(uuid.uuid4()), "name": "etl"}
    assert post(client, "/api/v1/workflows/", body).status_code == 201
    assert post(client, "/api/v1/workflows/", body).status_code == 200
    changed = post(client, "/api/v1/workflows/", {**body, "description": "x"})
    assert error_code(changed, 409) == "idempotency_conflict"


def test_workflow_rollups_are_read_only(client):
    response = post(client, "/api/v1/workflows/", {"name": "w", "cost": "1"})
    assert error_code(response, 400) == "validation_error"


def test_agent_bodies_carry_their_rollups(client, project, agent):
    task = queued(project, "a")
    post(client, "/api/v1/tasks/claim/", {"agent": str(agent.pk)})
    task_transition(task=task, status="completed")

    body = client.get(f"/api/v1/agents/{agent.pk}/").json()

    assert body["tasks_completed"] == 1
    assert body["tasks_failed"] == 0
    assert body["runs"] == 0
    assert body["messages_sent"] == 0
    assert body["last_active_at"]
    assert body["avg_latency_ms"] is None


def test_heartbeat_history_pages_newest_first_in_constant_queries(
    client, project, agent
):
    for n in range(3):
        agent_heartbeat(agent=agent, details={"n": n})
    url = f"/api/v1/agents/{agent.pk}/heartbeats/"
    with CaptureQueriesContext(connection) as few:
        first = client.get(url, {"page_size": 2})
    for n in range(3, 30):
        agent_heartbeat(agent=agent, details={"n": n})
    with CaptureQueriesContext(connection) as many:
        page = client.get(url, {"page_size": 20})

    assert first.status_code == 200
    assert [b["details"]["n"] for b in first.json()["results"]] == [2, 1]
    assert first.json()["next"]
    assert len(page.json()["results"]) == 20
    assert len(many.captured_queries) <= len(few.captured_queries)
    following = client.get(page.json()["next"]).json()["results"]
    assert [b["details"]["n"] for b in following] == list(range(9, -1, -1))


def test_claim_and_workflow_endpoints_are_in_the_schema(client):
    schema = client.get("/api/schema/", {"format": "json"}).json()
    paths = schema["paths"]
    assert "/api/v1/tasks/claim/" in paths
    assert "/api/v1/tasks/{id}/heartbeat/" in paths
    assert "/api/v1/workflows/{id}/cancel/" in paths
    assert "/api/v1/agents/{id}/heartbeats/" in paths


def test_admin_queue_filter_shows_claimable_leased_and_expired(
    staff_client, project, agent
):
    from datetime import timedelta

    from django.utils import timezone

    from tasks.services import task_claim

    dep = queued(project, "dependency")
    queued(project, "blocked", depends_on=[dep.pk])
    free = queued(project, "free", priority=-1)
    leased = task_claim(project=project, agent=agent)
    assert leased.pk == dep.pk
    expired = task_claim(project=project, agent=agent)
    Task.objects.filter(pk=expired.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=5)
    )

    def titles(queue):
        response = staff_client.get("/admin/tasks/task/", {"queue": queue})
        assert response.status_code == 200
        return {t.title for t in response.context["cl"].result_list}

    assert titles("leased") == {"dependency"}
    assert titles("expired") == {expired.title}
    assert free.title not in titles("leased")
    assert "blocked" not in titles("claimable")


def test_admin_workflow_list_shows_rollups_and_status(staff_client, project):
    from tasks.services import workflow_create

    flow, _ = workflow_create(project=project, name="etl")
    task, _ = task_create(project=project, title="a", workflow=flow.pk)
    task_transition(task=task, status="cancelled")

    response = staff_client.get("/admin/tasks/workflow/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "etl" in content and "cancelled" in content
    detail = staff_client.get(f"/admin/tasks/workflow/{flow.pk}/change/")
    assert detail.status_code == 200


def test_stats_by_agent_read_the_rollups_and_count_usage_once(
    client, project, agent, task
):
    from conversations.services import conversation_create, message_append
    from tasks.services import run_create

    run, _ = run_create(project=project, task=task, agent=agent, prompt_tokens=40)
    conversation, _ = conversation_create(project=project, task=task)
    message_append(
        conversation=conversation,
        messages=[
            {
                "role": "assistant",
                "sender": str(agent.pk),
                "prompt_tokens": 40,
                "metadata": {"run": str(run.pk)},
            },
        ],
    )

    stats = client.get("/api/v1/stats/").json()

    assert stats["usage"]["prompt_tokens"] == 40
    (mine,) = [a for a in stats["by_agent"] if a["agent"] == str(agent.pk)]
    assert (mine["prompt_tokens"], mine["messages"], mine["runs"]) == (40, 1, 1)
