import uuid
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from audit.journal import journaled
from audit.models import AuditLog, Event
from swarmsite.errors import (
    Conflict,
    DependencyCycle,
    IdempotencyConflict,
    IllegalTransition,
    NotFound,
    ValidationError,
    VersionConflict,
)
from tasks.models import (
    TASK_TRANSITIONS,
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
    agent_update,
    run_create,
    run_metadata_fill,
    run_update,
    task_create,
    task_dependency_add,
    task_dependency_remove,
    task_progress_set,
    task_transition,
    task_transition_many,
    task_update,
    workflow_create,
)
from tests.audit.factories import (
    audit_actions,
    doorbell,
    event_kinds,
    last_position,
    table_counts,
)

pytestmark = pytest.mark.django_db


class Boom(Exception):
    pass


def new_events(project, start: int) -> list[Event]:
    return list(
        Event.objects.filter(project=project, position__gt=start).order_by("position")
    )


def task_row(task: Task) -> dict:
    return Task.objects.filter(pk=task.pk).values().get()


# Steps that bring a new task to each status along legal edges.
PATH_TO = {
    TaskStatus.PENDING: [],
    TaskStatus.QUEUED: [TaskStatus.QUEUED],
    TaskStatus.RUNNING: [TaskStatus.RUNNING],
    TaskStatus.WAITING: [TaskStatus.RUNNING, TaskStatus.WAITING],
    TaskStatus.COMPLETED: [TaskStatus.RUNNING, TaskStatus.COMPLETED],
    TaskStatus.FAILED: [TaskStatus.RUNNING, TaskStatus.FAILED],
    TaskStatus.CANCELLED: [TaskStatus.CANCELLED],
}
LEGAL = [(s, t) for s, targets in TASK_TRANSITIONS.items() for t in sorted(targets)]
ILLEGAL = [
    (s, t)
    for s in TaskStatus.values
    for t in TaskStatus.values
    if t not in TASK_TRANSITIONS[s]
]


def task_in(project, status: str) -> Task:
    task, _ = task_create(project=project, title=f"a {status} task")
    for step in PATH_TO[status]:
        task_transition(task=task, status=step)
    assert Task.objects.get(pk=task.pk).status == status
    return task


# Every service appends its events and rings after commit ----------------------


@pytest.fixture
def world(project, other_project, agent, task):
    """Rows every service below can act on, and rows of another project."""
    blocked, _ = task_create(project=project, title="blocked")
    blocker, _ = task_create(project=project, title="blocker")
    task_dependency_add(task=blocked, depends_on=blocker)
    run, _ = run_create(project=project, task=task, agent=agent, prompt_tokens=1)
    foreign_agent, _ = agent_register(project=other_project, name="stranger")
    return SimpleNamespace(
        project=project,
        agent=agent,
        task=task,
        blocked=blocked,
        blocker=blocker,
        run=run,
        foreign_agent=foreign_agent,
        foreign_task=task_create(project=other_project, title="theirs")[0],
        foreign_workflow=workflow_create(project=other_project, name="theirs")[0],
    )


# name: (call, event kinds, audit actions, concerns the world's task)
SERVICES = {
    "agent_register": (
        lambda w: agent_register(project=w.project, name="planner", role="planner"),
        ["agent.registered"],
        ["agent.registered"],
        False,
    ),
    "agent_update": (
        lambda w: agent_update(agent=w.agent, role="reviewer"),
        ["agent.updated"],
        ["agent.updated"],
        False,
    ),
    "agent_heartbeat": (
        lambda w: agent_heartbeat(agent=w.agent, status="busy"),
        ["agent.heartbeat"],
        [],
        False,
    ),
    "workflow_create": (
        lambda w: workflow_create(project=w.project, name="nightly"),
        ["workflow.created"],
        [],
        False,
    ),
    "task_create": (
        lambda w: task_create(project=w.project, title="new", parent=w.task),
        ["task.created"],
        ["task.created"],
        False,
    ),
    "task_update": (
        lambda w: task_update(task=w.task, title="renamed"),
        ["task.updated"],
        ["task.updated"],
        True,
    ),
    "task_transition": (
        lambda w: task_transition(task=w.task, status="running"),
        ["task.status_changed"],
        ["task.status_changed"],
        True,
    ),
    "task_progress_set": (
        lambda w: task_progress_set(task=w.task, progress=40),
        ["task.progress"],
        [],
        True,
    ),
    "task_dependency_add": (
        lambda w: task_dependency_add(task=w.task, depends_on=w.blocker),
        ["task.dependency_added"],
        [],
        True,
    ),
    "task_dependency_remove": (
        lambda w: task_dependency_remove(task=w.blocked, depends_on=w.blocker),
        ["task.dependency_removed"],
        [],
        False,
    ),
    "run_create": (
        lambda w: run_create(project=w.project, task=w.task, completion_tokens=3),
        ["run.started"],
        [],
        True,
    ),
    "run_update": (
        lambda w: run_update(run=w.run, status="completed", prompt_tokens=9),
        ["run.updated"],
        [],
        True,
    ),
    "run_metadata_fill": (
        lambda w: run_metadata_fill(run=w.run, metadata={"by": "planner"}),
        ["run.updated"],
        [],
        True,
    ),
}


@pytest.mark.parametrize("name", SERVICES)
def test_service_appends_its_events_and_audit_and_rings_after_commit(
    world, name, django_capture_on_commit_callbacks
):
    call, kinds, actions, about_task = SERVICES[name]
    start = last_position(world.project)
    audits_before = len(audit_actions(world.project))

    with doorbell(world.project) as bell:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            call(world)
            # Written in the service's transaction, rung only after commit.
            in_transaction = [e.kind for e in new_events(world.project, start)]
            assert bell.rings(timeout=0.01) == []
        rings = bell.rings()

    events = new_events(world.project, start)
    assert [e.kind for e in events] == in_transaction == kinds
    assert [e.position for e in events] == list(
        range(start + 1, start + 1 + len(kinds))
    )
    assert audit_actions(world.project)[audits_before:] == actions
    assert len(callbacks) == 1
    assert len(rings) == 1
    assert rings[0]["type"] == "events_appended"
    assert rings[0]["position"] == last_position(world.project) == events[-1].position
    if about_task:
        assert events[-1].task_id == world.task.pk
        assert rings[0]["tasks"] == [str(world.task.pk)]


@pytest.mark.parametrize("name", SERVICES)
def test_service_rolled_back_leaves_no_row_event_audit_or_ring(
    world, name, django_capture_on_commit_callbacks
):
    call = SERVICES[name][0]
    before = table_counts()

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(Boom),
        journaled(),
    ):
        call(world)
        raise Boom

    assert callbacks == []
    assert table_counts() == before


FAILING = {
    "agent_register": lambda w: agent_register(
        project=w.project, name="x", parent=w.foreign_agent
    ),
    "agent_update": lambda w: agent_update(agent=w.agent, status="sleeping"),
    "agent_heartbeat": lambda w: agent_heartbeat(agent=w.agent, status="dead"),
    "workflow_create": lambda w: workflow_create(project=w.project, name=""),
    "task_create": lambda w: task_create(
        project=w.project, title="x", depends_on=[w.task.pk, w.foreign_task.pk]
    ),
    "task_update": lambda w: task_update(task=w.task, workflow=w.foreign_workflow),
    "task_transition": lambda w: task_transition(task=w.task, status="done"),
    "task_progress_set": lambda w: task_progress_set(task=w.task, progress=101),
    "task_dependency_add": lambda w: task_dependency_add(
        task=w.blocker, depends_on=w.blocked
    ),
    "task_dependency_remove": lambda w: task_dependency_remove(
        task=w.blocked, depends_on=w.foreign_task
    ),
    "run_create": lambda w: run_create(
        project=w.project, task=w.task, prompt_tokens=-1
    ),
    "run_update": lambda w: run_update(run=w.run, cost="lots"),
    "run_metadata_fill": lambda w: run_metadata_fill(run=w.run, metadata=["x"]),
}


@pytest.mark.parametrize("name", FAILING)
def test_service_refusing_bad_input_writes_nothing_and_rings_nothing(
    world, name, django_capture_on_commit_callbacks
):
    before = table_counts()

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        # A cycle is refused as a conflict (409 dependency_cycle).
        pytest.raises((ValidationError, DependencyCycle)),
    ):
        FAILING[name](world)

    assert callbacks == []
    assert table_counts() == before


def test_a_batch_with_per_item_savepoints_records_only_the_items_it_kept(project):
    start = last_position(project)
    results = []

    with journaled():
        for title in ["kept", "", "also kept"]:
            try:
                with transaction.atomic():
                    task, _ = task_create(project=project, title=title or "doomed")
                    if not title:
                        raise ValidationError({"title": "Refused after the write."})
                results.append(task.pk)
            except ValidationError:
                results.append(None)

    assert results[1] is None
    assert not Task.objects.filter(title="doomed").exists()
    created = [e.task_id for e in new_events(project, start)]
    assert created == [results[0], results[2]]
    assert AuditLog.objects.filter(action="task.created").count() == 2


# Agents -------------------------------------------------------------------------


def test_agent_register_stores_the_agent_and_records_it(project):
    parent, _ = agent_register(project=project, name="lead")

    agent, created = agent_register(
        project=project,
        name="coder",
        role="worker",
        model="gpt-x",
        parent=str(parent.pk),
        capabilities=["python"],
        config={"temperature": 0.2},
    )

    assert created is True
    stored = type(agent).objects.get(pk=agent.pk)
    assert (stored.role, stored.model, stored.parent) == ("worker", "gpt-x", parent)
    assert (stored.capabilities, stored.config) == (["python"], {"temperature": 0.2})
    event = Event.objects.get(kind="agent.registered", payload__agent=str(agent.pk))
    assert event.payload["parent"] == str(parent.pk)
    assert AuditLog.objects.get(action="agent.registered", object_id=str(agent.pk))


def test_agent_register_is_idempotent_by_name(project):
    first, _ = agent_register(project=project, name="coder", role="worker")
    start = last_position(project)

    again, created = agent_register(project=project, name="coder", role="other")

    assert created is False
    assert again.pk == first.pk
    assert again.role == "worker"
    assert last_position(project) == start


def test_agent_register_same_name_in_another_project_is_another_agent(
    project, other_project
):
    mine, _ = agent_register(project=project, name="coder")

    theirs, created = agent_register(project=other_project, name="coder")

    assert created is True
    assert theirs.pk != mine.pk


def test_agent_register_refuses_an_id_taken_under_another_name(project, agent):
    with pytest.raises(IdempotencyConflict):
        agent_register(project=project, name="impostor", agent_id=agent.pk)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"capabilities": {"not": "a list"}}, "capabilities"),
        ({"config": ["not", "an", "object"]}, "config"),
        ({"metadata": "text"}, "metadata"),
        ({"parent": uuid.uuid4()}, "parent"),
        ({"parent": "not-a-uuid"}, "parent"),
        ({"agent_id": "not-a-uuid"}, "id"),
    ],
    ids=lambda v: v if isinstance(v, str) else next(iter(v)),
)
def test_agent_register_refuses_bad_input_by_field(project, kwargs, field):
    before = table_counts()

    with pytest.raises(ValidationError) as exc:
        agent_register(project=project, **({"name": "x"} | kwargs))

    assert field in exc.value.fields
    assert table_counts() == before


def test_agent_register_refuses_a_parent_of_another_project(project, other_project):
    stranger, _ = agent_register(project=other_project, name="stranger")

    with pytest.raises(ValidationError) as exc:
        agent_register(project=project, name="child", parent=stranger)

    assert list(exc.value.fields) == ["parent"]


def test_agent_update_changes_fields_and_records_the_changes(project, agent):
    start = last_position(project)

    agent_update(agent=agent, role="reviewer", capabilities=["review"])

    agent.refresh_from_db()
    assert (agent.role, agent.capabilities) == ("reviewer", ["review"])
    (event,) = new_events(project, start)
    assert event.kind == "agent.updated"
    assert event.payload["changes"] == {
        "role": ["worker", "reviewer"],
        "capabilities": [[], ["review"]],
    }
    audit = AuditLog.objects.get(action="agent.updated")
    assert audit.changes == event.payload["changes"]


def test_agent_update_without_a_change_records_nothing(project, agent):
    start = last_position(project)

    agent_update(agent=agent, role=agent.role)

    assert last_position(project) == start


def test_agent_update_refuses_a_parent_cycle(project):
    root, _ = agent_register(project=project, name="root")
    middle, _ = agent_register(project=project, name="middle", parent=root)
    leaf, _ = agent_register(project=project, name="leaf", parent=middle)
    before = table_counts()

    with pytest.raises(ValidationError) as exc:
        agent_update(agent=root, parent=leaf)

    assert list(exc.value.fields) == ["parent"]
    assert table_counts() == before
    root.refresh_from_db()
    assert root.parent is None


def test_agent_update_refuses_the_agent_as_its_own_parent(agent):
    with pytest.raises(ValidationError) as exc:
        agent_update(agent=agent, parent=agent.pk)

    assert list(exc.value.fields) == ["parent"]
    agent.refresh_from_db()
    assert agent.parent is None


def test_agent_update_can_move_and_clear_the_parent(project, agent):
    lead, _ = agent_register(project=project, name="lead")

    agent_update(agent=agent, parent=lead)
    assert type(agent).objects.get(pk=agent.pk).parent == lead
    agent_update(agent=agent, parent=None)
    assert type(agent).objects.get(pk=agent.pk).parent is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"project": None}, "project"),
        ({"status": "sleeping"}, "status"),
        ({"name": "taken"}, "name"),
        ({"config": []}, "config"),
    ],
    ids=lambda v: v if isinstance(v, str) else next(iter(v)),
)
def test_agent_update_refuses_bad_input_by_field(project, agent, kwargs, field):
    agent_register(project=project, name="taken")
    before = table_counts()

    with pytest.raises(ValidationError) as exc:
        agent_update(agent=agent, **kwargs)

    assert field in exc.value.fields
    assert table_counts() == before


def test_agent_update_refuses_a_parent_of_another_project(agent, other_project):
    stranger, _ = agent_register(project=other_project, name="stranger")

    with pytest.raises(ValidationError) as exc:
        agent_update(agent=agent, parent=stranger)

    assert list(exc.value.fields) == ["parent"]


def test_agent_heartbeat_records_a_beat_and_updates_the_agent(project, agent):
    beat = agent_heartbeat(agent=agent, status="busy", details={"load": 0.5})

    stored = type(agent).objects.get(pk=agent.pk)
    assert stored.status == "busy"
    assert stored.last_heartbeat_at == beat.created_at
    assert AgentHeartbeat.objects.get().details == {"load": 0.5}
    event = Event.objects.get(kind="agent.heartbeat")
    assert (event.actor_type, event.actor_id) == ("agent", str(agent.pk))
    assert event.payload["status"] == "busy"


def test_agent_heartbeat_without_a_status_keeps_the_agents(agent):
    agent_update(agent=agent, status="waiting")

    beat = agent_heartbeat(agent=agent)

    assert beat.status == "waiting"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"status": "dead"}, "status"), ({"details": ["x"]}, "details")],
)
def test_agent_heartbeat_refuses_bad_input(agent, kwargs, field):
    before = table_counts()

    with pytest.raises(ValidationError) as exc:
        agent_heartbeat(agent=agent, **kwargs)

    assert field in exc.value.fields
    assert table_counts() == before


# Workflows --------------------------------------------------------------------


def test_workflow_create_is_idempotent_by_name(project):
    workflow, created = workflow_create(
        project=project, name="nightly", metadata={"cron": "0 3 * * *"}
    )
    start = last_position(project)

    again, created_again = workflow_create(project=project, name="nightly")

    assert (created, created_again) == (True, False)
    assert again.pk == workflow.pk
    assert Workflow.objects.get().metadata == {"cron": "0 3 * * *"}
    assert last_position(project) == start
    assert event_kinds(project, payload__workflow=str(workflow.pk)) == [
        "workflow.created"
    ]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"metadata": []}, "metadata"),
        ({"workflow_id": "nope"}, "id"),
    ],
    ids=["blank", "long", "metadata", "id"],
)
def test_workflow_create_refuses_bad_input(project, kwargs, field):
    with pytest.raises(ValidationError) as exc:
        workflow_create(project=project, **({"name": "w"} | kwargs))

    assert field in exc.value.fields
    assert not Workflow.objects.exists()


# Tasks: create --------------------------------------------------------------------


def test_task_create_stores_a_pending_task_and_records_it(project, agent):
    workflow, _ = workflow_create(project=project, name="nightly")
    parent, _ = task_create(project=project, title="parent")
    helper, _ = agent_register(project=project, name="helper")
    start = last_position(project)

    task, created = task_create(
        project=project,
        title="child",
        description="long text",
        session_id="s-1",
        workflow=workflow.pk,
        parent=str(parent.pk),
        priority=5,
        assigned_agent=agent,
        agents=[helper.pk],
        depends_on=[parent.pk],
        input={"q": 1},
        metadata={"k": "v"},
        files_touched=["a.py"],
    )

    assert created is True
    stored = Task.objects.get(pk=task.pk)
    assert (stored.status, stored.version, stored.progress) == ("pending", 1, 0)
    assert (stored.workflow, stored.parent, stored.priority) == (workflow, parent, 5)
    assert set(stored.agents.all()) == {agent, helper}
    assert list(stored.depends_on.all()) == [parent]
    (event,) = new_events(project, start)
    assert (event.kind, event.task_id) == ("task.created", task.pk)
    assert event.payload["status"] == "pending"
    assert event.payload["assigned_agent"] == str(agent.pk)
    assert "input" not in event.payload
    assert AuditLog.objects.get(action="task.created", object_id=str(task.pk))


def test_task_create_with_a_known_id_and_the_same_body_returns_the_stored(
    project, agent
):
    task_id = uuid.uuid4()
    body = {
        "title": "t",
        "assigned_agent": agent,
        "metadata": {"a": 1},
        "input": [1, 2],
    }
    first, _ = task_create(project=project, task_id=task_id, **body)
    before = table_counts()

    again, created = task_create(project=project, task_id=str(task_id), **body)

    assert created is False
    assert again.pk == first.pk
    assert table_counts() == before


@pytest.mark.parametrize(
    "change",
    [{"title": "other"}, {"priority": 3}, {"metadata": {"a": 2}}, {"input": None}],
    ids=lambda v: next(iter(v)),
)
def test_task_create_with_a_known_id_and_another_body_is_a_conflict(project, change):
    task_id = uuid.uuid4()
    body = {"title": "t", "metadata": {"a": 1}, "input": [1]}
    task_create(project=project, task_id=task_id, **body)
    before = table_counts()

    with pytest.raises(IdempotencyConflict, match=next(iter(change))):
        task_create(project=project, task_id=task_id, **(body | change))

    assert table_counts() == before


def test_task_create_with_an_id_taken_in_another_project_is_a_conflict(
    project, other_project
):
    theirs, _ = task_create(project=other_project, title="t")

    with pytest.raises(IdempotencyConflict):
        task_create(project=project, title="t", task_id=theirs.pk)


@pytest.mark.parametrize(
    "field", ["workflow", "parent", "assigned_agent", "agents", "depends_on"]
)
def test_task_create_refuses_ids_of_another_project_naming_the_field(
    project, other_project, field
):
    foreign = {
        "workflow": lambda: workflow_create(project=other_project, name="w")[0],
        "parent": lambda: task_create(project=other_project, title="t")[0],
        "assigned_agent": lambda: agent_register(project=other_project, name="a")[0],
        "agents": lambda: [agent_register(project=other_project, name="a")[0].pk],
        "depends_on": lambda: [task_create(project=other_project, title="t")[0].pk],
    }[field]()
    before = table_counts()

    with pytest.raises(ValidationError) as exc:
        task_create(project=project, title="mine", **{field: foreign})

    assert list(exc.value.fields) == [field]
    assert table_counts() == before


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "x" * 501}, "title"),
        ({"priority": "high"}, "priority"),
        ({"priority": True}, "priority"),
        ({"metadata": [1]}, "metadata"),
        ({"files_touched": {"a": 1}}, "files_touched"),
        ({"task_id": "not-a-uuid"}, "id"),
        ({"agents": "not-a-list"}, "agents"),
        ({"agents": ["not-a-uuid"]}, "agents"),
        ({"workflow": "not-a-uuid"}, "workflow"),
        ({"depends_on": [uuid.uuid4()]}, "depends_on"),
    ],
    ids=lambda v: v if isinstance(v, str) else next(iter(v)),
)
def test_task_create_refuses_bad_input_by_field(project, kwargs, field):
    before = table_counts()

    with pytest.raises(ValidationError) as exc:
        task_create(project=project, **({"title": "t"} | kwargs))

    assert field in exc.value.fields
    assert table_counts() == before


def test_task_create_refuses_a_task_depending_on_itself(project):
    task_id = uuid.uuid4()

    with pytest.raises(ValidationError) as exc:
        task_create(project=project, title="t", task_id=task_id, depends_on=[task_id])

    assert list(exc.value.fields) == ["depends_on"]
    assert not Task.objects.filter(pk=task_id).exists()


# Tasks: update ------------------------------------------------------------------


def test_task_update_changes_fields_bumps_the_version_and_records(project, task):
    workflow, _ = workflow_create(project=project, name="nightly")
    start = last_position(project)

    task_update(task=task, title="renamed", priority=2, workflow=workflow.pk)

    stored = Task.objects.get(pk=task.pk)
    assert (stored.title, stored.priority, stored.workflow) == ("renamed", 2, workflow)
    assert stored.version == task.version == 2
    (event,) = new_events(project, start)
    assert event.kind == "task.updated"
    assert event.payload["version"] == 2
    assert event.payload["changes"]["title"] == ["Write the report", "renamed"]
    assert (
        AuditLog.objects.get(action="task.updated").changes
        == (event.payload["changes"])
    )


def test_task_update_of_the_involved_agents_bumps_the_version(project, task, agent):
    helper, _ = agent_register(project=project, name="helper")

    task_update(task=task, agents=[helper.pk])

    stored = Task.objects.get(pk=task.pk)
    assert stored.version == 2
    assert set(stored.agents.all()) == {helper, agent}


def test_task_update_without_a_change_keeps_the_version_and_records_nothing(
    project, task
):
    start = last_position(project)

    task_update(task=task, title=task.title)

    assert Task.objects.get(pk=task.pk).version == 1
    assert last_position(project) == start


def test_task_update_expecting_an_older_version_is_a_version_conflict(project, task):
    stale = Task.objects.get(pk=task.pk)
    task_update(task=task, title="first writer")
    before = table_counts()
    row = task_row(task)

    with pytest.raises(VersionConflict) as exc:
        task_update(task=stale, expected_version=stale.version, title="second writer")

    assert (exc.value.expected, exc.value.actual) == (1, 2)
    assert task_row(task) == row
    assert table_counts() == before


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"status": "running"}, "status"),
        ({"version": 7}, "version"),
        ({"priority": "high"}, "priority"),
        ({"title": ""}, "title"),
        ({"assigned_agent": uuid.uuid4()}, "assigned_agent"),
        ({"metadata": "text"}, "metadata"),
    ],
    ids=lambda v: v if isinstance(v, str) else next(iter(v)),
)
def test_task_update_refuses_bad_input_by_field(task, kwargs, field):
    row = task_row(task)
    before = table_counts()

    with pytest.raises(ValidationError) as exc:
        task_update(task=task, **kwargs)

    assert field in exc.value.fields
    assert task_row(task) == row
    assert table_counts() == before


@pytest.mark.parametrize("field", ["workflow", "assigned_agent", "agents"])
def test_task_update_refuses_ids_of_another_project(task, other_project, field):
    value = {
        "workflow": lambda: workflow_create(project=other_project, name="w")[0],
        "assigned_agent": lambda: agent_register(project=other_project, name="a")[0],
        "agents": lambda: [agent_register(project=other_project, name="a")[0]],
    }[field]()
    row = task_row(task)

    with pytest.raises(ValidationError) as exc:
        task_update(task=task, **{field: value})

    assert list(exc.value.fields) == [field]
    assert task_row(task) == row


# Tasks: transitions ----------------------------------------------------------------


@pytest.mark.parametrize(("current", "requested"), LEGAL, ids=lambda v: str(v))
def test_every_legal_transition_is_applied_and_recorded(project, current, requested):
    task = task_in(project, current)
    version = Task.objects.get(pk=task.pk).version
    start = last_position(project)

    task_transition(task=task, status=requested, expected_version=version)

    stored = Task.objects.get(pk=task.pk)
    assert (stored.status, stored.version) == (requested, version + 1)
    assert task.version == version + 1
    (event,) = new_events(project, start)
    assert (event.kind, event.task_id) == ("task.status_changed", task.pk)
    assert event.payload == {
        "task": str(task.pk),
        "from": current,
        "to": requested,
        "version": version + 1,
    }
    audit = AuditLog.objects.filter(action="task.status_changed").order_by("seq")
    assert audit.last().changes == {"status": [current, requested]}


@pytest.mark.parametrize(("current", "requested"), ILLEGAL, ids=lambda v: str(v))
def test_every_illegal_transition_is_refused_and_changes_nothing(
    project, current, requested, django_capture_on_commit_callbacks
):
    task = task_in(project, current)
    row = task_row(task)
    before = table_counts()

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(IllegalTransition) as exc,
    ):
        task_transition(task=task, status=requested)

    assert (exc.value.current, exc.value.requested) == (current, requested)
    assert f"'{current}'" in exc.value.message
    assert f"'{requested}'" in exc.value.message
    assert task_row(task) == row
    assert table_counts() == before
    assert callbacks == []


def test_every_status_has_a_transition_rule():
    assert set(TASK_TRANSITIONS) == set(TaskStatus.values)
    assert len(LEGAL) + len(ILLEGAL) == len(TaskStatus.values) ** 2


def test_a_stale_expected_version_is_a_conflict_that_changes_nothing(
    project, task, django_capture_on_commit_callbacks
):
    task_transition(task=task, status="queued")
    row = task_row(task)
    before = table_counts()

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(VersionConflict) as exc,
    ):
        task_transition(task=task, status="running", expected_version=1)

    assert (exc.value.expected, exc.value.actual) == (1, 2)
    assert task_row(task) == row
    assert table_counts() == before
    assert callbacks == []


def test_running_sets_started_at_and_completing_sets_completed_at_and_progress(
    project, task
):
    task_progress_set(task=task, progress=30)
    task_transition(task=task, status="running")
    started = Task.objects.get(pk=task.pk)
    assert started.started_at is not None
    assert started.completed_at is None
    assert started.progress == 30

    task_transition(
        task=task, status="completed", result={"pages": 3}, result_summary="done"
    )

    done = Task.objects.get(pk=task.pk)
    assert done.completed_at is not None
    assert done.completed_at >= done.started_at == started.started_at
    assert (done.progress, done.result, done.result_summary) == (
        100,
        {"pages": 3},
        "done",
    )
    last = Event.objects.filter(kind="task.status_changed").order_by("position")
    assert last.last().payload["result_summary"] == "done"


@pytest.mark.parametrize("terminal", ["failed", "cancelled"])
def test_retry_from_failed_or_cancelled_goes_back_to_queued(project, terminal):
    task = task_in(project, "running")
    task_transition(task=task, status=terminal, error="it broke")
    ended = Task.objects.get(pk=task.pk)
    assert ended.completed_at is not None
    assert ended.error == "it broke"

    task_transition(task=task, status="queued")
    task_transition(task=task, status="running")

    retried = Task.objects.get(pk=task.pk)
    assert retried.status == "running"
    assert (retried.completed_at, retried.error) == (None, "")
    assert retried.started_at == ended.started_at


def test_retry_keeps_the_first_start_even_through_a_stale_copy(project):
    task, _ = task_create(project=project, title="t")
    stale = Task.objects.get(pk=task.pk)
    task_transition(task=task, status="running")
    first_start = Task.objects.get(pk=task.pk).started_at
    task_transition(task=task, status="failed")
    task_transition(task=task, status="queued")

    task_transition(task=stale, status="running")

    assert Task.objects.get(pk=task.pk).started_at == first_start


def test_a_stale_copy_without_expected_version_moves_from_the_stored_status(
    project, task
):
    stale = Task.objects.get(pk=task.pk)
    task_transition(task=task, status="running")

    with pytest.raises(IllegalTransition) as exc:
        task_transition(task=stale, status="running")
    task_transition(task=stale, status="completed")

    assert exc.value.current == "running"
    assert Task.objects.get(pk=task.pk).status == "completed"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"status": "done"}, "status"),
        ({"status": "running", "expected_version": "1"}, "expected_version"),
        ({"status": "running", "expected_version": True}, "expected_version"),
    ],
    ids=["status", "version-text", "version-bool"],
)
def test_task_transition_refuses_bad_input(task, kwargs, field):
    row = task_row(task)

    with pytest.raises(ValidationError) as exc:
        task_transition(task=task, **kwargs)

    assert field in exc.value.fields
    assert task_row(task) == row


def test_task_transition_of_a_missing_task_is_not_found(project):
    ghost = Task(id=uuid.uuid4(), project=project, title="ghost")

    with pytest.raises(NotFound):
        task_transition(task=ghost, status="running")


def test_task_transition_many_applies_items_in_order_with_their_events(project, agent):
    workflow, _ = workflow_create(project=project, name="wf")
    first, _ = task_create(project=project, title="a", workflow=workflow.pk)
    second, _ = task_create(
        project=project, title="b", workflow=workflow.pk, assigned_agent=agent.pk
    )
    start = last_position(project)
    operation = uuid.uuid4()

    moved = task_transition_many(
        project=project,
        transitions=[
            {"task": str(second.pk), "status": "running", "operation_id": operation},
            {"task": first.pk, "status": "running"},
            {"task": second.pk, "status": "completed", "result_summary": "ok"},
            {"task": second.pk, "status": "running", "operation_id": operation},
        ],
    )

    assert [(task.pk, replayed) for task, replayed in moved] == [
        (second.pk, False),
        (first.pk, False),
        (second.pk, False),
        (second.pk, True),
    ]
    rows = {t.pk: t for t in Task.objects.filter(pk__in=[first.pk, second.pk])}
    assert (rows[first.pk].status, rows[first.pk].version) == (
        "running",
        first.version + 1,
    )
    assert (rows[second.pk].status, rows[second.pk].version) == (
        "completed",
        second.version + 2,
    )
    assert rows[second.pk].progress == 100
    events = new_events(project, start)
    assert [(e.task_id, e.payload["from"], e.payload["to"]) for e in events] == [
        (second.pk, "pending", "running"),
        (first.pk, "pending", "running"),
        (second.pk, "running", "completed"),
    ]
    assert events[0].uuid == operation
    workflow.refresh_from_db()
    agent.refresh_from_db()
    assert (workflow.tasks_running, workflow.tasks_completed) == (1, 1)
    assert agent.tasks_completed == 1


def test_task_transition_many_shares_statements_only_between_equal_values(project):
    tasks = [task_create(project=project, title=str(i))[0] for i in range(6)]
    task_transition(task=tasks[4], status="running")
    results = [True, 1, 1.0, {"a": 1}, {"a": 1}, None]
    start = last_position(project)

    task_transition_many(
        project=project,
        transitions=[
            {"task": t.pk, "status": "cancelled", "result": r}
            for t, r in zip(tasks, results, strict=True)
        ],
    )

    rows = {t.pk: t for t in Task.objects.filter(pk__in=[t.pk for t in tasks])}
    stored = [rows[t.pk].result for t in tasks]
    assert stored == [True, 1, 1.0, {"a": 1}, {"a": 1}, None]
    assert [type(r) for r in stored[:3]] == [bool, int, float]
    assert [rows[t.pk].version for t in tasks] == [2, 2, 2, 2, 3, 2]
    assert rows[tasks[4].pk].lease_expires_at is None
    assert len({rows[t.pk].completed_at for t in tasks}) == 1
    assert [e.payload["version"] for e in new_events(project, start)] == [
        2,
        2,
        2,
        2,
        3,
        2,
    ]


def test_task_transition_many_sends_one_update_per_distinct_change(project):
    tasks = [task_create(project=project, title=str(i))[0] for i in range(10)]

    with CaptureQueriesContext(connection) as queries:
        task_transition_many(
            project=project,
            transitions=[{"task": t.pk, "status": "running"} for t in tasks],
        )

    updates = [q["sql"] for q in queries if q["sql"].startswith('UPDATE "tasks_task"')]
    assert len(updates) == 1
    assert all(
        (row.status, row.version) == ("running", 2)
        for row in Task.objects.filter(pk__in=[t.pk for t in tasks])
    )


def test_task_transition_many_judges_each_item_on_the_state_before_it(project):
    task, _ = task_create(project=project, title="a")
    before = table_counts()

    with pytest.raises(IllegalTransition):
        task_transition_many(
            project=project,
            transitions=[
                {"task": task.pk, "status": "running"},
                {"task": task.pk, "status": "running"},
            ],
        )

    assert table_counts() == before
    assert Task.objects.get(pk=task.pk).status == "pending"


def test_task_transition_many_names_a_task_of_another_project(project, other_project):
    elsewhere, _ = task_create(project=other_project, title="x")

    with pytest.raises(ValidationError) as exc:
        task_transition_many(
            project=project, transitions=[{"task": elsewhere.pk, "status": "running"}]
        )

    assert exc.value.fields == {"task": [f"No task {elsewhere.pk} in this project."]}


def test_task_transition_many_refuses_one_operation_id_on_two_tasks(project):
    a, _ = task_create(project=project, title="a")
    b, _ = task_create(project=project, title="b")
    operation = uuid.uuid4()

    with pytest.raises(IdempotencyConflict):
        task_transition_many(
            project=project,
            transitions=[
                {"task": a.pk, "status": "running", "operation_id": operation},
                {"task": b.pk, "status": "running", "operation_id": operation},
            ],
        )


# Tasks: progress -------------------------------------------------------------------


@pytest.mark.parametrize("status", ["pending", "queued", "running", "waiting"])
def test_progress_is_set_without_bumping_the_version(project, status):
    task = task_in(project, status)
    version = Task.objects.get(pk=task.pk).version
    start = last_position(project)

    task_progress_set(task=task, progress=55)

    stored = Task.objects.get(pk=task.pk)
    assert (stored.progress, stored.version) == (55, version)
    (event,) = new_events(project, start)
    assert event.kind == "task.progress"
    assert event.payload == {"task": str(task.pk), "progress": 55, "previous": 0}


@pytest.mark.parametrize("progress", [-1, 101, 50.5, "50", True, None])
def test_progress_out_of_range_or_not_a_whole_number_is_refused(task, progress):
    row = task_row(task)

    with pytest.raises(ValidationError) as exc:
        task_progress_set(task=task, progress=progress)

    assert list(exc.value.fields) == ["progress"]
    assert task_row(task) == row


@pytest.mark.parametrize("progress", [0, 100])
def test_progress_bounds_are_accepted(task, progress):
    task_progress_set(task=task, progress=progress)

    assert Task.objects.get(pk=task.pk).progress == progress


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_progress_of_a_finished_task_is_refused(project, status):
    task = task_in(project, status)
    row = task_row(task)
    before = table_counts()

    with pytest.raises(Conflict, match=status):
        task_progress_set(task=task, progress=10)

    assert task_row(task) == row
    assert table_counts() == before


# Tasks: dependencies ------------------------------------------------------------


@pytest.fixture
def abc(project):
    return [task_create(project=project, title=name)[0] for name in "ABC"]


def test_dependency_add_stores_the_edge_and_records_it(project, abc):
    a, b, _ = abc
    start = last_position(project)

    edge = task_dependency_add(task=a, depends_on=str(b.pk))

    assert (edge.task, edge.depends_on) == (a, b)
    assert list(a.depends_on.all()) == [b]
    assert list(b.dependents.all()) == [a]
    (event,) = new_events(project, start)
    assert (event.kind, event.task_id) == ("task.dependency_added", a.pk)
    assert event.payload == {"task": str(a.pk), "depends_on": str(b.pk)}


def test_dependency_add_twice_returns_the_edge_and_records_once(project, abc):
    a, b, _ = abc
    edge = task_dependency_add(task=a, depends_on=b)
    start = last_position(project)

    again = task_dependency_add(task=a, depends_on=b)

    assert again.pk == edge.pk
    assert TaskDependency.objects.count() == 1
    assert last_position(project) == start


def test_dependency_on_itself_is_refused(abc):
    a = abc[0]

    with pytest.raises(ValidationError) as exc:
        task_dependency_add(task=a, depends_on=a)

    assert list(exc.value.fields) == ["depends_on"]
    assert not TaskDependency.objects.exists()


def test_a_direct_dependency_cycle_is_refused(project, abc):
    a, b, _ = abc
    task_dependency_add(task=a, depends_on=b)
    before = table_counts()

    with pytest.raises(DependencyCycle, match="cycle") as exc:
        task_dependency_add(task=b, depends_on=a)

    assert list(exc.value.fields) == ["depends_on"]
    assert table_counts() == before


def test_an_indirect_dependency_cycle_is_refused(project, abc):
    a, b, c = abc
    task_dependency_add(task=a, depends_on=b)
    task_dependency_add(task=b, depends_on=c)
    before = table_counts()

    with pytest.raises(DependencyCycle, match="cycle"):
        task_dependency_add(task=c, depends_on=a)

    assert table_counts() == before
    assert not TaskDependency.objects.filter(task=c).exists()


def test_a_cycle_through_dependencies_given_at_create_is_refused(project, abc):
    a, b, _ = abc
    task_dependency_add(task=a, depends_on=b)
    d, _ = task_create(project=project, title="D", depends_on=[a.pk])

    with pytest.raises(DependencyCycle, match="cycle"):
        task_dependency_add(task=b, depends_on=d)


def test_a_diamond_is_not_a_cycle(abc, project):
    a, b, c = abc
    d, _ = task_create(project=project, title="D")
    task_dependency_add(task=a, depends_on=b)
    task_dependency_add(task=a, depends_on=c)
    task_dependency_add(task=b, depends_on=d)

    task_dependency_add(task=c, depends_on=d)

    assert TaskDependency.objects.count() == 4


def test_dependency_on_a_task_of_another_project_is_refused(abc, other_project):
    theirs, _ = task_create(project=other_project, title="theirs")

    with pytest.raises(ValidationError) as exc:
        task_dependency_add(task=abc[0], depends_on=theirs)

    assert list(exc.value.fields) == ["depends_on"]
    assert not TaskDependency.objects.exists()


def test_dependency_remove_deletes_the_edge_once_and_records_it(project, abc):
    a, b, _ = abc
    task_dependency_add(task=a, depends_on=b)
    start = last_position(project)

    assert task_dependency_remove(task=a, depends_on=b.pk) is True
    assert task_dependency_remove(task=a, depends_on=b.pk) is False

    assert not TaskDependency.objects.exists()
    assert [e.kind for e in new_events(project, start)] == ["task.dependency_removed"]
    task_dependency_add(task=b, depends_on=a)


# Runs -----------------------------------------------------------------------------


def usage(task: Task) -> tuple:
    row = Task.objects.filter(pk=task.pk).values(
        "prompt_tokens", "completion_tokens", "cached_tokens", "cost"
    )
    return tuple(row.get().values())


def test_run_create_rolls_its_usage_onto_the_task_and_involves_the_agent(project, task):
    reviewer, _ = agent_register(project=project, name="reviewer")
    start = last_position(project)

    run, created = run_create(
        project=project,
        task=task.pk,
        agent=str(reviewer.pk),
        model="m-1",
        prompt_tokens=100,
        completion_tokens=20,
        cached_tokens=5,
        cost="0.0125",
    )
    run_create(project=project, task=task, prompt_tokens=1, cost=Decimal("0.5"))

    assert created is True
    assert run.status == "started"
    assert run.ended_at is None
    assert usage(task) == (101, 20, 5, Decimal("0.512500"))
    assert reviewer in task.agents.all()
    kinds = [e.kind for e in new_events(project, start)]
    assert kinds == ["run.started", "run.started"]
    payload = new_events(project, start)[0].payload
    assert payload["run"] == str(run.pk)
    assert (payload["prompt_tokens"], payload["cost"]) == (100, "0.012500")


def test_run_create_in_a_finished_state_has_an_end_time(project, task):
    run, _ = run_create(project=project, task=task, status="failed", error="x")

    assert AgentRun.objects.get(pk=run.pk).ended_at is not None


def test_run_create_with_a_known_id_and_the_same_body_counts_once(project, task):
    run_id = uuid.uuid4()
    body = {"task": task, "prompt_tokens": 10, "cost": "0.1", "model": "m"}
    first, _ = run_create(project=project, run_id=run_id, **body)
    before = table_counts()

    again, created = run_create(project=project, run_id=str(run_id), **body)

    assert created is False
    assert again.pk == first.pk
    assert usage(task) == (10, 0, 0, Decimal("0.1"))
    assert table_counts() == before


def test_run_create_with_a_known_id_and_another_body_is_a_conflict(project, task):
    run_id = uuid.uuid4()
    run_create(project=project, task=task, run_id=run_id, prompt_tokens=10)
    before = table_counts()

    with pytest.raises(IdempotencyConflict, match="prompt_tokens"):
        run_create(project=project, task=task, run_id=run_id, prompt_tokens=11)

    assert usage(task) == (10, 0, 0, Decimal(0))
    assert table_counts() == before


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"task": None}, "task"),
        ({"task": uuid.uuid4()}, "task"),
        ({"agent": uuid.uuid4()}, "agent"),
        ({"status": "exploded"}, "status"),
        ({"prompt_tokens": -1}, "prompt_tokens"),
        ({"completion_tokens": 1.5}, "completion_tokens"),
        ({"cached_tokens": "3"}, "cached_tokens"),
        ({"cost": "-0.1"}, "cost"),
        ({"cost": "NaN"}, "cost"),
        ({"metadata": [1]}, "metadata"),
        ({"run_id": "nope"}, "id"),
    ],
    ids=lambda v: v if isinstance(v, str) else next(iter(v)),
)
def test_run_create_refuses_bad_input_by_field(project, task, kwargs, field):
    before = table_counts()

    with pytest.raises(ValidationError) as exc:
        run_create(project=project, **({"task": task} | kwargs))

    assert field in exc.value.fields
    assert table_counts() == before


@pytest.mark.parametrize("field", ["task", "agent"])
def test_run_create_refuses_rows_of_another_project(
    project, task, other_project, field
):
    foreign = {
        "task": lambda: task_create(project=other_project, title="t")[0],
        "agent": lambda: agent_register(project=other_project, name="a")[0],
    }[field]()

    with pytest.raises(ValidationError) as exc:
        run_create(project=project, **({"task": task} | {field: foreign}))

    assert list(exc.value.fields) == [field]
    assert not AgentRun.objects.exists()


def test_run_update_rolls_up_the_difference_of_absolute_usage(project, task):
    run, _ = run_create(
        project=project, task=task, prompt_tokens=10, completion_tokens=5, cost="0.5"
    )
    run_create(project=project, task=task, prompt_tokens=1, cost="0.01")
    start = last_position(project)

    run_update(run=run, prompt_tokens=30, completion_tokens=15, cost="1.25")
    assert usage(task) == (31, 15, 0, Decimal("1.26"))
    run_update(run=run, prompt_tokens=20, cached_tokens=4)

    assert usage(task) == (21, 15, 4, Decimal("1.26"))
    stored = AgentRun.objects.get(pk=run.pk)
    assert (stored.prompt_tokens, stored.cached_tokens) == (20, 4)
    events = new_events(project, start)
    assert [e.kind for e in events] == ["run.updated", "run.updated"]
    assert events[0].payload["changes"] == [
        "completion_tokens",
        "cost",
        "prompt_tokens",
    ]


def test_run_update_to_a_final_status_sets_the_end_and_stays_final(project, task):
    run, _ = run_create(project=project, task=task)

    run_update(run=run, status="completed", output_summary="ok")
    stored = AgentRun.objects.get(pk=run.pk)
    assert (stored.status, stored.output_summary) == ("completed", "ok")
    assert stored.ended_at is not None
    start = last_position(project)

    with pytest.raises(IllegalTransition) as exc:
        run_update(run=run, status="running")
    run_update(run=run, status="completed")

    assert (exc.value.current, exc.value.requested) == ("completed", "running")
    assert AgentRun.objects.get(pk=run.pk).status == "completed"
    assert last_position(project) == start


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"task": None}, "task"),
        ({"status": "exploded"}, "status"),
        ({"prompt_tokens": -5}, "prompt_tokens"),
        ({"cost": "lots"}, "cost"),
        ({"metadata": "x"}, "metadata"),
    ],
    ids=lambda v: v if isinstance(v, str) else next(iter(v)),
)
def test_run_update_refuses_bad_input_and_changes_nothing(project, task, kwargs, field):
    run, _ = run_create(project=project, task=task, prompt_tokens=3)
    before = table_counts()
    totals = usage(task)

    with pytest.raises(ValidationError) as exc:
        run_update(run=run, **kwargs)

    assert field in exc.value.fields
    assert usage(task) == totals
    assert table_counts() == before


def test_run_metadata_fill_adds_only_the_keys_the_run_lacks(project, task, agent):
    otel = {"span_id": "ab", "usage": {"prompt_tokens": 5}}
    run, _ = run_create(
        project=project,
        task=task,
        agent=agent,
        status="completed",
        prompt_tokens=7,
        metadata={"otel": otel, "note": "kept"},
    )
    before = (
        Task.objects.values("prompt_tokens").get(pk=task.pk),
        type(agent).objects.values("runs_count", "prompt_tokens").get(pk=agent.pk),
    )

    run = run_metadata_fill(
        run=run,
        metadata={"otel": {"delegated_by": "planner", "span_id": "ab"}, "note": "kept"},
    )

    assert run.replayed is False
    stored = AgentRun.objects.get(pk=run.pk)
    assert stored.metadata == {
        "otel": otel | {"delegated_by": "planner"},
        "note": "kept",
    }
    assert (stored.status, stored.prompt_tokens) == ("completed", 7)
    (event,) = Event.objects.filter(kind="run.updated")
    assert event.payload["added"] == ["metadata.otel.delegated_by"]
    assert event.task_id == task.pk
    assert before == (
        Task.objects.values("prompt_tokens").get(pk=task.pk),
        type(agent).objects.values("runs_count", "prompt_tokens").get(pk=agent.pk),
    )


def test_run_metadata_fill_again_changes_nothing(project, task):
    run, _ = run_create(project=project, task=task)
    fill = {"otel": {"delegated_by": "planner"}}
    run_metadata_fill(run=run, metadata=fill)
    before = table_counts()

    again = run_metadata_fill(run=run, metadata=fill)

    assert again.replayed is True
    assert run_metadata_fill(run=run, metadata={}).replayed is True
    assert table_counts() == before


def test_run_metadata_fill_never_replaces_a_value(project, task):
    run, _ = run_create(
        project=project, task=task, metadata={"otel": {"delegated_by": "planner"}}
    )
    before = table_counts()

    with pytest.raises(Conflict) as exc:
        run_metadata_fill(
            run=run, metadata={"otel": {"delegated_by": "critic", "extra": 1}}
        )

    assert exc.value.message.startswith("metadata.otel.delegated_by:")
    assert AgentRun.objects.get(pk=run.pk).metadata == {
        "otel": {"delegated_by": "planner"}
    }
    assert table_counts() == before
    # A key whose stored value is not an object is not merged into either.
    with pytest.raises(Conflict):
        run_metadata_fill(run=run, metadata={"otel": "flat"})


def test_run_metadata_fill_refuses_metadata_that_is_not_an_object(project, task):
    run, _ = run_create(project=project, task=task)

    with pytest.raises(ValidationError) as exc:
        run_metadata_fill(run=run, metadata="delegated")

    assert list(exc.value.fields) == ["metadata"]
