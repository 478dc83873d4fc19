"""The work queue: claims, leases, heartbeats, dependencies, keys, retries."""

import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.models import Event
from swarmsite.errors import (
    Conflict,
    DependencyCycle,
    IdempotencyConflict,
    IllegalTransition,
    ValidationError,
)
from tasks.models import Task, TaskStatus
from tasks.services import (
    agent_register,
    task_claim,
    task_create,
    task_create_many,
    task_dependency_add,
    task_lease_extend,
    task_leases_sweep,
    task_retry,
    task_transition,
)

pytestmark = pytest.mark.django_db


def queued(project, title, **fields):
    task, _ = task_create(project=project, title=title, **fields)
    return task_transition(task=task, status="queued")


def expire(task):
    Task.objects.filter(pk=task.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


def test_a_claim_takes_the_highest_priority_then_the_oldest(project, agent):
    low = queued(project, "low", priority=1)
    first_high = queued(project, "high 1", priority=5)
    queued(project, "high 2", priority=5)

    claimed = task_claim(project=project, agent=agent, lease_seconds=60)

    assert claimed.pk == first_high.pk
    assert claimed.status == "running"
    assert claimed.assigned_agent_id == agent.pk
    assert claimed.attempts == 1
    assert claimed.lease_expires_at > timezone.now() + timedelta(seconds=50)
    assert low.pk != claimed.pk


def test_a_claim_answers_none_when_nothing_is_claimable(project, agent):
    task_create(project=project, title="pending, not queued")
    assert task_claim(project=project, agent=agent) is None


def test_a_claim_skips_tasks_whose_dependencies_are_not_completed(project, agent):
    dep = queued(project, "dependency", priority=0)
    queued(project, "blocked", priority=9, depends_on=[dep.pk])

    first = task_claim(project=project, agent=agent)
    assert first.pk == dep.pk
    assert task_claim(project=project, agent=agent) is None

    task_transition(task=first, status="completed")
    second = task_claim(project=project, agent=agent)
    assert second.title == "blocked"


def test_a_claim_filters_by_workflow_and_session(project, agent):
    from tasks.services import workflow_create

    flow, _ = workflow_create(project=project, name="flow")
    queued(project, "elsewhere", priority=9)
    inside = queued(project, "inside", workflow=flow.pk, session_id="s1")

    assert task_claim(project=project, agent=agent, workflow=flow).pk == inside.pk
    assert task_claim(project=project, agent=agent, session_id="s1") is None


def test_a_claim_records_a_status_change_with_a_claim_marker(project, agent):
    task = queued(project, "one")
    task_claim(project=project, agent=agent)

    event = Event.objects.filter(task_id=task.pk).order_by("-position").first()
    assert event.kind == "task.status_changed"
    assert event.payload["from"] == "queued"
    assert event.payload["to"] == "running"
    assert event.payload["claim"] is True
    assert event.payload["agent"] == str(agent.pk)
    assert event.payload["attempt"] == 1


def test_a_claim_retried_with_its_operation_id_returns_the_same_task(project, agent):
    queued(project, "a", priority=2)
    queued(project, "b", priority=1)
    op = uuid.uuid4()

    first = task_claim(project=project, agent=agent, operation_id=op)
    again = task_claim(project=project, agent=agent, operation_id=op)

    assert again.pk == first.pk
    assert again.replayed is True
    assert Task.objects.filter(status="running").count() == 1
    assert Task.objects.get(pk=first.pk).attempts == 1


def test_a_claim_operation_id_of_another_agent_is_a_conflict(project, agent):
    other, _ = agent_register(project=project, name="other")
    queued(project, "a")
    op = uuid.uuid4()
    task_claim(project=project, agent=agent, operation_id=op)

    with pytest.raises(IdempotencyConflict):
        task_claim(project=project, agent=other, operation_id=op)


@pytest.mark.parametrize("seconds", [0, -1, 86_401, "60", True])
def test_a_claim_refuses_a_bad_lease(project, agent, seconds):
    queued(project, "a")
    with pytest.raises(ValidationError) as exc:
        task_claim(project=project, agent=agent, lease_seconds=seconds)
    assert list(exc.value.fields) == ["lease_seconds"]
    assert Task.objects.get().status == "queued"


def test_an_expired_lease_goes_back_to_queued_on_the_next_claim(project, agent):
    other, _ = agent_register(project=project, name="other")
    task = queued(project, "a")
    task_claim(project=project, agent=agent, lease_seconds=30)
    expire(task)

    taken = task_claim(project=project, agent=other)

    assert taken.pk == task.pk
    assert taken.assigned_agent_id == other.pk
    assert taken.attempts == 2
    kinds = list(
        Event.objects.filter(task_id=task.pk)
        .order_by("position")
        .values_list("kind", flat=True)
    )
    assert kinds[-2:] == ["task.lease_expired", "task.status_changed"]
    with pytest.raises(Conflict):
        task_lease_extend(task=taken, agent=agent)


def test_a_heartbeat_extends_the_lease_and_keeps_the_task(project, agent):
    task = queued(project, "a")
    task_claim(project=project, agent=agent, lease_seconds=5)
    before = Task.objects.get(pk=task.pk).lease_expires_at

    extended = task_lease_extend(task=task, lease_seconds=600)

    assert extended.lease_expires_at > before + timedelta(seconds=500)
    assert task_leases_sweep() == 0
    assert Task.objects.get(pk=task.pk).status == "running"


def test_a_heartbeat_retried_with_its_operation_id_changes_nothing(project, agent):
    task = queued(project, "a")
    task_claim(project=project, agent=agent)
    op = uuid.uuid4()
    first = task_lease_extend(task=task, lease_seconds=100, operation_id=op)

    again = task_lease_extend(task=task, lease_seconds=5000, operation_id=op)

    assert again.replayed is True
    assert again.lease_expires_at == first.lease_expires_at
    assert Event.objects.filter(kind="task.lease_extended").count() == 1


def test_a_heartbeat_of_a_task_that_is_not_running_is_a_conflict(project, agent):
    task = queued(project, "a")
    with pytest.raises(Conflict, match="queued"):
        task_lease_extend(task=task)


def test_sweep_leases_returns_expired_tasks_to_queued(project, agent):
    a, b = queued(project, "a"), queued(project, "b")
    task_claim(project=project, agent=agent)
    task_claim(project=project, agent=agent)
    expire(a)
    out = StringIO()

    call_command("sweep_leases", stdout=out)

    assert "1 task" in out.getvalue()
    assert Task.objects.get(pk=a.pk).status == "queued"
    assert Task.objects.get(pk=a.pk).lease_expires_at is None
    assert Task.objects.get(pk=b.pk).status == "running"


def test_running_cannot_go_back_to_queued_by_a_transition(project, agent):
    task = queued(project, "a")
    task_claim(project=project, agent=agent)
    with pytest.raises(IllegalTransition):
        task_transition(task=task, status="queued")


def test_finishing_a_claimed_task_ends_its_lease(project, agent):
    task = queued(project, "a")
    task_claim(project=project, agent=agent)
    done = task_transition(task=task, status="completed")
    assert done.lease_expires_at is None


def test_retry_keeps_attempts_and_a_second_claim_counts_two(project, agent):
    task = queued(project, "a")
    task_claim(project=project, agent=agent)
    task_transition(task=task, status="failed", error="boom")

    retried = task_retry(task=task)
    assert (retried.status, retried.attempts) == ("queued", 1)
    assert task_claim(project=project, agent=agent).attempts == 2


# Keys -----------------------------------------------------------------------


def test_a_repeated_key_with_the_same_body_returns_the_stored_task(project):
    first, created = task_create(project=project, title="x", key="job-1")
    again, created_again = task_create(project=project, title="x", key="job-1")
    assert created and not created_again
    assert again.pk == first.pk
    assert Task.objects.count() == 1


def test_a_repeated_key_with_another_body_is_a_conflict(project):
    task_create(project=project, title="x", key="job-1")
    with pytest.raises(IdempotencyConflict):
        task_create(project=project, title="y", key="job-1")


def test_a_key_naming_another_id_is_a_conflict(project):
    task_create(project=project, title="x", key="job-1")
    with pytest.raises(IdempotencyConflict, match="job-1"):
        task_create(project=project, title="x", key="job-1", task_id=uuid.uuid4())


def test_keys_repeat_inside_one_batch_and_across_projects(project, other_project):
    results = task_create_many(
        project=project,
        tasks=[{"title": "x", "key": "k"}, {"title": "x", "key": "k"}],
    )
    assert [created for _, created in results] == [True, False]
    assert results[0][0].pk == results[1][0].pk
    elsewhere, created = task_create(project=other_project, title="x", key="k")
    assert created and elsewhere.pk != results[0][0].pk


def test_tasks_without_a_key_do_not_collide(project):
    task_create(project=project, title="a")
    task_create(project=project, title="b", key="")
    assert Task.objects.filter(key="").count() == 2


# Dependencies ---------------------------------------------------------------


def test_a_dependency_cycle_is_a_dependency_cycle_conflict(project):
    a, _ = task_create(project=project, title="a")
    b, _ = task_create(project=project, title="b")
    task_dependency_add(task=a, depends_on=b)
    with pytest.raises(DependencyCycle) as exc:
        task_dependency_add(task=b, depends_on=a)
    assert exc.value.code == "dependency_cycle"
    assert isinstance(exc.value, Conflict)


def test_statuses_are_what_the_queue_expects():
    # The claim index and the lease index name these statuses literally.
    assert TaskStatus.QUEUED == "queued"
    assert TaskStatus.RUNNING == "running"
