import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import AuditLog, Event, EventKind
from conversations.services import conversation_create
from swarmsite.services import project_create
from tasks.models import (
    Agent,
    AgentHeartbeat,
    AgentRun,
    Task,
    TaskDependency,
    TaskStatus,
    Workflow,
)
from tasks.services import (
    agent_heartbeat,
    agent_register,
    run_create,
    task_create,
    task_dependency_add,
    task_transition,
    workflow_create,
)
from tests.conftest import count_queries
from tests.tasks.factories import (
    AgentFactory,
    AgentRunFactory,
    TaskFactory,
    WorkflowFactory,
)
from tests.utils import (
    add_inline_row,
    changeform_data,
    inline_prefix,
    messages_of,
)

pytestmark = pytest.mark.django_db

TASKS = reverse("admin:tasks_task_changelist")


def _change_url(obj) -> str:
    meta = obj._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])


def _events(kind: str, **filters):
    return Event.objects.filter(kind=kind, **filters)


# Task changelist ------------------------------------------------------------


def _make_tasks(project, agent, workflow, count: int) -> None:
    for n in range(count):
        TaskFactory(
            project=project, assigned_agent=agent, workflow=workflow if n % 2 else None
        )


def test_task_changelist_queries_do_not_grow_with_rows(
    staff_client, project, agent, django_assert_max_num_queries
):
    workflow = WorkflowFactory(project=project, name="nightly")
    _make_tasks(project, agent, workflow, 5)
    few = count_queries(staff_client, TASKS)
    _make_tasks(project, agent, workflow, 45)
    with django_assert_max_num_queries(few):
        response = staff_client.get(TASKS)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 50


def test_task_changelist_never_counts_the_whole_table(staff_client, task):
    with CaptureQueriesContext(connection) as queries:
        assert staff_client.get(TASKS).status_code == 200
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"]]
    assert counts
    assert all("LIMIT" in sql for sql in counts)
    assert not any("DISTINCT" in q["sql"] for q in queries.captured_queries)


def test_task_changelist_filters_and_searches(staff_client, project, task):
    other = TaskFactory(project=project, title="Review the report")
    task_transition(task=other, status=TaskStatus.CANCELLED)
    response = staff_client.get(TASKS, {"status__exact": "cancelled"})
    assert list(response.context["cl"].result_list) == [other]
    response = staff_client.get(TASKS, {"q": "write"})
    assert list(response.context["cl"].result_list) == [task]
    response = staff_client.get(TASKS, {"q": str(other.pk)})
    assert list(response.context["cl"].result_list) == [other]
    response = staff_client.get(TASKS, {"created_at__gte": "2000-01-01 00:00:00+00:00"})
    assert response.status_code == 200


# Task change page -------------------------------------------------------------


def test_task_change_page_shows_subtasks_runs_conversations_and_events(
    staff_client, project, agent, task
):
    TaskFactory(project=project, title="Collect sources", parent=task)
    run_create(project=project, task=task, agent=agent, model="gpt-x")
    conversation_create(project=project, task=task, title="Kick-off")
    task_transition(task=task, status=TaskStatus.RUNNING)
    response = staff_client.get(_change_url(task))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Collect sources" in html
    assert "gpt-x" in html
    assert "Kick-off" in html
    assert "task.status_changed" in html
    assert "latest 20 events" in html.lower()
    inlines = {i.formset.model for i in response.context["inline_admin_formsets"]}
    assert {Task, AgentRun, TaskDependency} <= inlines
    assert any(m._meta.model_name == "conversation" for m in inlines)


def test_task_change_page_lists_only_the_latest_events(staff_client, project, task):
    for n in range(25):
        task_create(project=project, title=f"noise {n}")
    response = staff_client.get(_change_url(task))
    assert response.content.decode().count("task.created") == 1


def test_task_add_goes_through_task_create(staff_client, project, agent):
    response = staff_client.get(reverse("admin:tasks_task_add"))
    data = changeform_data(
        response,
        project=str(project.pk),
        title="Summarise findings",
        priority="3",
        assigned_agent=str(agent.pk),
        metadata='{"source": "admin"}',
    )
    response = staff_client.post(reverse("admin:tasks_task_add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    task = Task.objects.get(title="Summarise findings")
    assert (task.status, task.version, task.priority) == ("pending", 1, 3)
    assert task.metadata == {"source": "admin"}
    assert list(task.agents.all()) == [agent]
    event = _events(EventKind.TASK_CREATED, task_id=task.pk).get()
    assert (event.actor_type, event.actor_label) == ("user", "admin")


def test_task_add_with_dependencies_from_the_inline(staff_client, project, task):
    response = staff_client.get(reverse("admin:tasks_task_add"))
    data = changeform_data(response, project=str(project.pk), title="Follow-up")
    add_inline_row(data, inline_prefix(response, TaskDependency), depends_on=task.pk)
    response = staff_client.post(reverse("admin:tasks_task_add"), data)
    assert response.status_code == 302
    follow_up = Task.objects.get(title="Follow-up")
    assert list(follow_up.depends_on.all()) == [task]


def test_task_change_goes_through_task_update(staff_client, task):
    url = _change_url(task)
    data = changeform_data(staff_client.get(url), title="Write the final report")
    response = staff_client.post(url, data)
    assert response.status_code == 302
    task.refresh_from_db()
    assert (task.title, task.version) == ("Write the final report", 2)
    event = _events(EventKind.TASK_UPDATED, task_id=task.pk).get()
    assert event.payload["changes"]["title"][1] == "Write the final report"
    assert event.actor_type == "user"
    assert AuditLog.objects.filter(action="task.updated", actor_label="admin").exists()


def test_task_status_and_version_cannot_be_posted(staff_client, task):
    url = _change_url(task)
    data = changeform_data(
        staff_client.get(url), status="completed", version="9", progress="100"
    )
    assert staff_client.post(url, data).status_code == 302
    task.refresh_from_db()
    assert (task.status, task.version, task.progress) == ("pending", 1, 0)


def test_task_change_over_a_newer_version_is_refused(staff_client, task):
    url = _change_url(task)
    data = changeform_data(staff_client.get(url), title="Mine")
    task_transition(task=task, status=TaskStatus.QUEUED)
    response = staff_client.post(url, data)
    assert response.status_code == 200
    assert "Reload the page" in str(response.context["adminform"].form.errors)
    task.refresh_from_db()
    assert (task.title, task.version) == ("Write the report", 2)


def test_task_change_service_error_is_shown_and_nothing_is_written(staff_client, task):
    other, _ = project_create(slug="other")
    stranger = AgentFactory(project=other, name="stranger")
    url = _change_url(task)
    data = changeform_data(
        staff_client.get(url), title="Changed", assigned_agent=str(stranger.pk)
    )
    response = staff_client.post(url, data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "in this project" in str(errors["assigned_agent"])
    assert response.context["adminform"].form["title"].value() == "Changed"
    task.refresh_from_db()
    assert (task.title, task.version) == ("Write the report", 1)
    assert not _events(EventKind.TASK_UPDATED).exists()


def test_task_dependency_inline_adds_and_removes_through_services(
    staff_client, project, task
):
    first = TaskFactory(project=project, title="First")
    second = TaskFactory(project=project, title="Second")
    task_dependency_add(task=task, depends_on=first)
    url = _change_url(task)
    response = staff_client.get(url)
    prefix = inline_prefix(response, TaskDependency)
    data = changeform_data(response, **{f"{prefix}-0-DELETE": "on"})
    add_inline_row(data, prefix, depends_on=second.pk)
    assert staff_client.post(url, data).status_code == 302
    assert list(task.depends_on.all()) == [second]
    assert _events(EventKind.TASK_DEPENDENCY_REMOVED, task_id=task.pk).exists()
    added = _events(EventKind.TASK_DEPENDENCY_ADDED, task_id=task.pk)
    assert added.filter(actor_type="user").count() == 1


def test_task_dependency_cycle_is_refused_with_a_message(staff_client, project, task):
    blocker = TaskFactory(project=project, title="Blocker", depends_on=[task.pk])
    url = _change_url(task)
    response = staff_client.get(url)
    data = changeform_data(response)
    add_inline_row(data, inline_prefix(response, TaskDependency), depends_on=blocker.pk)
    response = staff_client.post(url, data)
    assert response.status_code == 200
    assert "cycle" in str(response.context["adminform"].form.errors)
    assert not TaskDependency.objects.filter(task=task).exists()


@pytest.mark.parametrize(
    "field", ["project", "workflow", "parent", "assigned_agent", "agents"]
)
def test_task_foreign_keys_autocomplete(staff_client, project, agent, task, field):
    workflow_create(project=project, name="Writing")
    response = staff_client.get(
        reverse("admin:autocomplete"),
        {"app_label": "tasks", "model_name": "task", "field_name": field, "term": ""},
    )
    assert response.status_code == 200
    assert len(response.json()["results"]) == 1


def test_autocomplete_finds_an_agent_by_id(staff_client, project, agent):
    agent_register(project=project, name="other-agent")
    response = staff_client.get(
        reverse("admin:autocomplete"),
        {
            "app_label": "tasks",
            "model_name": "task",
            "field_name": "assigned_agent",
            "term": str(agent.pk),
        },
    )
    assert [r["text"] for r in response.json()["results"]] == ["worker-1"]


def test_task_cannot_be_deleted(staff_client, task):
    url = reverse("admin:tasks_task_delete", args=[task.pk])
    assert staff_client.post(url, {"post": "yes"}).status_code == 403
    assert Task.objects.filter(pk=task.pk).exists()


# Task actions -----------------------------------------------------------------


def _act(client, action: str, *tasks):
    return client.post(
        TASKS,
        {"action": action, "_selected_action": [str(t.pk) for t in tasks]},
        follow=True,
    )


def test_cancel_action_transitions_through_the_service(staff_client, project, task):
    done = TaskFactory(project=project, title="Done already")
    task_transition(task=done, status=TaskStatus.RUNNING)
    task_transition(task=done, status=TaskStatus.COMPLETED)
    response = _act(staff_client, "cancel_tasks", task, done)
    task.refresh_from_db()
    assert (task.status, task.version) == ("cancelled", 2)
    event = _events(EventKind.TASK_STATUS_CHANGED, task_id=task.pk).get()
    assert event.payload["from"] == "pending"
    assert event.payload["to"] == "cancelled"
    assert event.actor_label == "admin"
    shown = messages_of(response)
    assert "Cancelled 1 tasks." in shown
    assert any(
        "1 tasks could not be cancelled" in m and "'completed'" in m for m in shown
    )


def test_retry_action_queues_failed_tasks_only(staff_client, project, task):
    failed = TaskFactory(project=project, title="Broke")
    task_transition(task=failed, status=TaskStatus.RUNNING)
    task_transition(task=failed, status=TaskStatus.FAILED, error="boom")
    response = _act(staff_client, "retry_tasks", failed, task)
    failed.refresh_from_db()
    assert (failed.status, failed.version, failed.error) == ("queued", 4, "")
    assert _events(
        EventKind.TASK_STATUS_CHANGED, task_id=failed.pk, payload__to="queued"
    ).exists()
    task.refresh_from_db()
    assert task.status == "pending"
    shown = messages_of(response)
    assert "Queued 1 tasks again." in shown
    assert any("this one is pending" in m for m in shown)


# Agents -----------------------------------------------------------------------


def test_agent_add_goes_through_agent_register(staff_client, project, agent):
    url = reverse("admin:tasks_agent_add")
    data = changeform_data(
        staff_client.get(url),
        project=str(project.pk),
        name="reviewer-1",
        role="reviewer",
        parent=str(agent.pk),
        config='{"temperature": 0.2}',
    )
    response = staff_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    reviewer = Agent.objects.get(name="reviewer-1")
    assert (reviewer.parent, reviewer.config) == (agent, {"temperature": 0.2})
    assert _events(EventKind.AGENT_REGISTERED, actor_type="user").count() == 1


def test_agent_change_goes_through_agent_update(staff_client, agent):
    url = _change_url(agent)
    data = changeform_data(staff_client.get(url), status="offline", model="m-2")
    assert staff_client.post(url, data).status_code == 302
    agent.refresh_from_db()
    assert (agent.status, agent.model) == ("offline", "m-2")
    event = _events(EventKind.AGENT_UPDATED).get()
    assert set(event.payload["changes"]) == {"status", "model"}


def test_agent_change_page_shows_latest_heartbeats(staff_client, agent):
    agent_heartbeat(agent=agent, status="busy", details={"queue": 7})
    response = staff_client.get(_change_url(agent))
    assert "queue" in response.content.decode()


def test_agent_of_its_own_lineage_is_refused(staff_client, project, agent):
    child = AgentFactory(project=project, name="child", parent=agent)
    url = _change_url(agent)
    data = changeform_data(staff_client.get(url), parent=str(child.pk))
    response = staff_client.post(url, data)
    assert response.status_code == 200
    assert "ancestor" in str(response.context["adminform"].form.errors)
    agent.refresh_from_db()
    assert agent.parent is None


# Heartbeats are read-only -------------------------------------------------------


def test_heartbeats_refuse_add_change_and_delete(staff_client, agent):
    beat = agent_heartbeat(agent=agent, status="busy")
    assert (
        staff_client.get(reverse("admin:tasks_agentheartbeat_add")).status_code == 403
    )
    url = _change_url(beat)
    assert staff_client.get(url).status_code == 200
    assert staff_client.post(url, {"status": "error"}).status_code == 403
    delete = reverse("admin:tasks_agentheartbeat_delete", args=[beat.pk])
    assert staff_client.post(delete, {"post": "yes"}).status_code == 403
    beat.refresh_from_db()
    assert beat.status == "busy"


# Workflows, runs, dependencies ------------------------------------------------


def test_workflow_add_goes_through_workflow_create(staff_client, project):
    url = reverse("admin:tasks_workflow_add")
    data = changeform_data(
        staff_client.get(url), project=str(project.pk), name="weekly"
    )
    assert staff_client.post(url, data).status_code == 302
    assert Workflow.objects.filter(name="weekly").exists()
    assert _events(EventKind.WORKFLOW_CREATED, actor_type="user").exists()


def test_run_add_goes_through_run_create_and_rolls_up(
    staff_client, project, agent, task
):
    url = reverse("admin:tasks_agentrun_add")
    data = {
        "project": project.pk,
        "task": task.pk,
        "agent": agent.pk,
        "status": "started",
        "model": "m-1",
        "started_at_0": "2030-01-01",
        "started_at_1": "10:00:00",
        "output_summary": "",
        "prompt_tokens": "120",
        "completion_tokens": "30",
        "cached_tokens": "0",
        "cost": "0.5",
        "error": "",
        "metadata": "{}",
    }
    response = staff_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    run = AgentRun.objects.get()
    assert run.prompt_tokens == 120
    task.refresh_from_db()
    assert (task.prompt_tokens, task.completion_tokens) == (120, 30)
    assert _events(EventKind.RUN_STARTED, actor_type="user").exists()


def test_run_change_goes_through_run_update(staff_client, project, agent, task):
    run = AgentRunFactory(project=project, task=task, agent=agent, prompt_tokens=10)
    url = _change_url(run)
    data = changeform_data(
        staff_client.get(url),
        status="completed",
        prompt_tokens="25",
        started_at_0="2030-01-01",
        started_at_1="10:00:00",
    )
    response = staff_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    run.refresh_from_db()
    assert (run.status, run.prompt_tokens) == ("completed", 25)
    assert run.ended_at is not None
    task.refresh_from_db()
    assert task.prompt_tokens == 25


def test_dependency_admin_adds_and_removes_through_services(
    staff_client, project, task
):
    other = TaskFactory(project=project, title="Other")
    response = staff_client.post(
        reverse("admin:tasks_taskdependency_add"),
        {"task": task.pk, "depends_on": other.pk},
    )
    assert response.status_code == 302
    edge = TaskDependency.objects.get()
    assert _events(EventKind.TASK_DEPENDENCY_ADDED, actor_type="user").exists()
    delete = reverse("admin:tasks_taskdependency_delete", args=[edge.pk])
    assert staff_client.post(delete, {"post": "yes"}).status_code == 302
    assert not TaskDependency.objects.exists()
    assert _events(EventKind.TASK_DEPENDENCY_REMOVED, actor_type="user").exists()


def test_dependency_admin_refuses_a_cycle(staff_client, project, task):
    other = TaskFactory(project=project, title="Other", depends_on=[task.pk])
    response = staff_client.post(
        reverse("admin:tasks_taskdependency_add"),
        {"task": task.pk, "depends_on": other.pk},
    )
    assert response.status_code == 200
    assert "cycle" in str(response.context["adminform"].form.errors)
    assert TaskDependency.objects.count() == 1


def test_heartbeat_changelist_queries_do_not_grow_with_rows(
    staff_client, agent, django_assert_max_num_queries
):
    url = reverse("admin:tasks_agentheartbeat_changelist")
    for _ in range(3):
        agent_heartbeat(agent=agent)
    few = count_queries(staff_client, url)
    for _ in range(30):
        agent_heartbeat(agent=agent)
    with django_assert_max_num_queries(few):
        assert staff_client.get(url).status_code == 200
    assert AgentHeartbeat.objects.count() == 33
