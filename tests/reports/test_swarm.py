"""The swarm view's pages and JSON snapshots (browser tests: tests/browser/)."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations.services import conversation_create, message_append
from reports.swarm_selectors import swarm_board, swarm_task_snapshot
from tasks.models import AgentRun, Task, TaskDependency, TaskStatus
from tasks.services import (
    agent_register,
    run_create,
    task_create,
    task_transition,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def swarm(project):
    """A planner delegating a goal's three steps to two workers."""
    planner = agent_register(project=project, name="planner", role="planner")[0]
    workers = [
        agent_register(project=project, name=f"w{n}", role="worker", parent=planner)[0]
        for n in (1, 2)
    ]
    goal = task_create(project=project, title="Goal", assigned_agent=planner)[0]
    collect = task_create(
        project=project, title="Collect", parent=goal, assigned_agent=workers[0]
    )[0]
    analyse = task_create(
        project=project,
        title="Analyse",
        parent=goal,
        assigned_agent=workers[1],
        depends_on=[collect.pk],
    )[0]
    deep = task_create(project=project, title="Deep step", parent=analyse)[0]
    task_transition(task=collect, status=TaskStatus.RUNNING)
    run_create(
        project=project,
        task=collect,
        agent=workers[0],
        status="running",
        prompt_tokens=100,
        completion_tokens=10,
        cost="0.5",
    )
    conversation = conversation_create(
        project=project,
        task=collect,
        title="w1 on collect",
        participants=[workers[0].pk, planner.pk],
    )[0]
    message_append(
        conversation=conversation,
        messages=[
            {"role": "user", "sender": planner.pk, "content": "Please collect."},
            {
                "role": "assistant",
                "sender": workers[0].pk,
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "web.search", "arguments": "{}"},
                    }
                ],
                "prompt_tokens": 40,
                "completion_tokens": 4,
                "cost": "0.25",
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "3 results"},
        ],
    )
    return {
        "planner": planner,
        "workers": workers,
        "goal": goal,
        "collect": collect,
        "analyse": analyse,
        "deep": deep,
        "conversation": conversation,
    }


def test_task_snapshot_holds_the_subtree_with_blocked_dependency_edges(swarm):
    snapshot = swarm_task_snapshot(task_id=swarm["goal"].pk)
    nodes = {n["id"]: n for n in snapshot["nodes"]}
    assert set(nodes) == {
        swarm[name].pk for name in ("goal", "collect", "analyse", "deep")
    }
    assert snapshot["task"]["id"] == swarm["goal"].pk
    assert nodes[swarm["deep"].pk]["parent"] == swarm["analyse"].pk
    assert snapshot["dependencies"] == [
        {
            "task": swarm["analyse"].pk,
            "depends_on": swarm["collect"].pk,
            "blocked": True,
        }
    ]
    assert nodes[swarm["analyse"].pk]["blocked"] is True
    assert nodes[swarm["collect"].pk]["blocked"] is False
    assert snapshot["position"] >= max(e["position"] for e in snapshot["events"])


def test_a_completed_dependency_no_longer_blocks(swarm):
    collect = task_transition(task=swarm["collect"], status=TaskStatus.COMPLETED)
    snapshot = swarm_task_snapshot(task_id=swarm["goal"].pk)
    assert collect.status == "completed"
    assert [d["blocked"] for d in snapshot["dependencies"]] == [False]
    nodes = {n["id"]: n for n in snapshot["nodes"]}
    assert nodes[swarm["analyse"].pk]["blocked"] is False


def test_task_snapshot_names_who_delegated_to_whom_with_usage_per_agent(swarm):
    snapshot = swarm_task_snapshot(task_id=swarm["goal"].pk)
    agents = {a["name"]: a for a in snapshot["agents"]}
    planner, (w1, w2) = swarm["planner"], swarm["workers"]
    assert agents["w1"]["parent"] == planner.pk
    assert sorted(
        (d["from"], d["to"], d["tasks"]) for d in snapshot["delegations"]
    ) == sorted([(planner.pk, w1.pk, 1), (planner.pk, w2.pk, 1)])
    # A run's usage plus the messages the agent sent.
    assert agents["w1"]["runs"] == 1
    assert agents["w1"]["messages"] == 1
    assert agents["w1"]["prompt_tokens"] == 140
    assert agents["w1"]["completion_tokens"] == 14
    assert str(agents["w1"]["cost"]) == "0.750000"
    assert agents["planner"]["messages"] == 1
    assert agents["w2"]["tasks_assigned"] == 1


def test_task_snapshot_transcripts_name_sender_recipient_and_tool_calls(swarm):
    snapshot = swarm_task_snapshot(task_id=swarm["goal"].pk)
    (conversation,) = snapshot["conversations"]
    planner, w1 = swarm["planner"].pk, swarm["workers"][0].pk
    assert set(conversation["participants"]) == {planner, w1}
    request, call, result = conversation["messages"]
    assert (request["seq"], request["sender"], request["recipients"]) == (
        1,
        planner,
        [w1],
    )
    assert call["tool_calls"][0]["function"]["name"] == "web.search"
    assert call["recipients"] == [planner]
    # A tool result goes back to the agent that called the tool.
    assert (result["role"], result["sender"], result["recipients"]) == (
        "tool",
        None,
        [w1],
    )


def test_recipients_a_message_names_are_shown_as_they_are(swarm):
    planner, (w1, w2) = swarm["planner"], swarm["workers"]
    message_append(
        conversation=swarm["conversation"],
        messages=[
            {
                "role": "assistant",
                "sender": w1.pk,
                "content": "Both of you: done.",
                "recipients": [planner.pk, w2.pk],
            }
        ],
    )
    snapshot = swarm_task_snapshot(task_id=swarm["goal"].pk)
    last = snapshot["conversations"][0]["messages"][-1]
    assert last["content"] == "Both of you: done."
    assert sorted(last["recipients"]) == sorted([planner.pk, w2.pk])


def test_a_subtask_snapshot_names_its_parent(swarm):
    snapshot = swarm_task_snapshot(task_id=swarm["analyse"].pk)
    assert snapshot["parent"] == {"id": swarm["goal"].pk, "title": "Goal"}
    # The dependency on a task outside the subtree shows that task too.
    external = [n for n in snapshot["nodes"] if n.get("external")]
    assert [n["id"] for n in external] == [swarm["collect"].pk]


def _wide_task(project, subtasks: int, runs: int, conversations: int = 0):
    """A root task with many subtasks, every third waiting for the two before.

    The subtasks, edges and runs are placed as rows (bulk INSERTs): this is
    about reading them, and a thousand service calls would be most of the
    test's time.
    """
    agent = agent_register(project=project, name="bulk", role="worker")[0]
    root = task_create(project=project, title="Root", assigned_agent=agent)[0]
    created = Task.objects.bulk_create(
        [
            Task(project=project, title=f"Step {n}", parent=root, assigned_agent=agent)
            for n in range(subtasks)
        ]
    )
    TaskDependency.objects.bulk_create(
        [
            TaskDependency(task=created[n], depends_on=created[n - back])
            for n in range(2, subtasks, 3)
            for back in (1, 2)
        ]
    )
    AgentRun.objects.bulk_create(
        [
            AgentRun(project=project, task=created[n % subtasks], agent=agent)
            for n in range(runs)
        ]
    )
    for n in range(conversations):
        conversation = conversation_create(
            project=project, task=created[n % len(created)], participants=[agent.pk]
        )[0]
        message_append(
            conversation=conversation,
            messages=[{"role": "assistant", "sender": agent.pk, "content": "hi"}] * 3,
        )
    return root


SNAPSHOT_QUERIES = 14


def test_task_snapshot_queries_do_not_grow_with_the_subtasks(
    project, other_project, django_assert_max_num_queries
):
    small = _wide_task(project, subtasks=6, runs=2, conversations=1)
    large = _wide_task(other_project, subtasks=1000, runs=100, conversations=8)
    with CaptureQueriesContext(connection) as few:
        swarm_task_snapshot(task_id=small.pk)
    with django_assert_max_num_queries(SNAPSHOT_QUERIES) as many:
        snapshot = swarm_task_snapshot(task_id=large.pk)
    assert len(snapshot["nodes"]) == 1001
    assert len(snapshot["dependencies"]) == 666
    assert len(snapshot["runs"]) == 100
    assert len(snapshot["conversations"]) == 8
    assert len(few.captured_queries) == len(many.captured_queries)
    print(
        f"task snapshot, 1,000 subtasks and 100 runs: "
        f"{len(many.captured_queries)} queries"
    )


def test_board_lists_running_waiting_blocked_and_failed_tasks(swarm, project):
    failed = task_create(project=project, title="Broken")[0]
    task_transition(task=failed, status=TaskStatus.RUNNING)
    task_transition(task=failed, status=TaskStatus.FAILED, error="Tool timed out")
    board = swarm_board(project=project)
    titles = {
        name: [t["title"] for t in column["tasks"]]
        for name, column in board["columns"].items()
    }
    assert titles["running"] == ["Collect"]
    assert titles["blocked"] == ["Analyse"]
    assert sorted(titles["waiting"]) == ["Deep step", "Goal"]
    assert titles["failed"] == ["Broken"]
    assert board["columns"]["failed"]["tasks"][0]["error"] == "Tool timed out"
    assert board["columns"]["blocked"]["tasks"][0]["unmet"] == 1
    assert board["columns"]["running"]["tasks"][0]["agent_name"] == "w1"
    roots = {r["title"]: r for r in board["roots"]}
    assert roots["Goal"]["subtasks"] == {"running": 1, "pending": 1}
    assert {a["name"] for a in board["agents"]} == {"planner", "w1", "w2"}


def test_board_queries_do_not_grow_with_the_tasks(project, other_project):
    _wide_task(project, subtasks=4, runs=1)
    _wide_task(other_project, subtasks=90, runs=3)
    with CaptureQueriesContext(connection) as few:
        swarm_board(project=project)
    with CaptureQueriesContext(connection) as many:
        swarm_board(project=other_project)
    assert len(few.captured_queries) == len(many.captured_queries)


# Pages and JSON ------------------------------------------------------------------

# The JSON views read on threads of their own, with connections of their own:
# only committed rows are theirs to see.
json_db = pytest.mark.django_db(transaction=True)


def test_board_and_task_pages_send_anonymous_visitors_to_the_login(client, swarm):
    for url in ("/admin/swarm/", f"/admin/swarm/tasks/{swarm['goal'].pk}/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/?next=/admin/swarm/")


@json_db
def test_snapshots_answer_anonymous_and_non_staff_users_in_the_error_shape(
    client, swarm, django_user_model
):
    url = f"/admin/swarm/tasks/{swarm['goal'].pk}/snapshot/"
    response = client.get(url)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    user = django_user_model.objects.create_user(username="u", password="pw")
    client.force_login(user)
    assert client.get(url).status_code == 403
    assert client.get("/admin/swarm/snapshot/").status_code == 403
    assert client.get("/admin/swarm/events/?after=0").status_code == 403


def test_task_page_loads_its_snapshot_and_links_back(staff_client, swarm):
    goal = swarm["goal"]
    response = staff_client.get(f"/admin/swarm/tasks/{goal.pk}/")
    assert response.status_code == 200
    body = response.content.decode()
    assert f"/admin/swarm/tasks/{goal.pk}/snapshot/" in body
    assert "reports/swarm/task.js" in body
    assert 'href="/admin/swarm/?project=default"' in body


@json_db
def test_task_snapshot_endpoint_answers_json(staff_client, swarm):
    response = staff_client.get(f"/admin/swarm/tasks/{swarm['goal'].pk}/snapshot/")
    assert response.status_code == 200
    data = response.json()
    assert data["task"]["title"] == "Goal"
    assert len(data["nodes"]) == 4
    assert data["agents"][0]["cost"] == "0.000000"


@json_db
def test_unknown_task_answers_404(staff_client, project):
    missing = uuid.uuid4()
    assert staff_client.get(f"/admin/swarm/tasks/{missing}/").status_code == 404
    response = staff_client.get(f"/admin/swarm/tasks/{missing}/snapshot/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@json_db
def test_board_page_names_its_project_and_streams_only_the_default(
    staff_client, project, other_project
):
    response = staff_client.get("/admin/swarm/")
    assert response.status_code == 200
    assert '"stream": true' in response.content.decode()
    other = staff_client.get("/admin/swarm/?project=other").content.decode()
    assert '"stream": false' in other
    assert "/admin/swarm/snapshot/?project=other" in other
    assert staff_client.get("/admin/swarm/?project=nope").status_code == 404
    data = staff_client.get("/admin/swarm/snapshot/?project=other").json()
    assert data["project"]["slug"] == "other"


@json_db
def test_event_feed_pages_events_after_a_position(staff_client, swarm, project):
    position = staff_client.get("/admin/swarm/snapshot/").json()["position"]
    task_transition(task=swarm["collect"], status=TaskStatus.WAITING)
    data = staff_client.get(f"/admin/swarm/events/?after={position}").json()
    assert [e["kind"] for e in data["events"]] == ["task.status_changed"]
    assert data["events"][0]["payload"]["to"] == "waiting"
    assert data["position"] == data["events"][0]["position"]
    response = staff_client.get("/admin/swarm/events/?after=x")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "after": ["Must be a position, 0 or more."]
    }


def test_task_admin_page_links_to_the_swarm_view(staff_client, swarm):
    goal = swarm["goal"]
    body = staff_client.get(f"/admin/tasks/task/{goal.pk}/change/").content.decode()
    assert f'href="/admin/swarm/tasks/{goal.pk}/"' in body
