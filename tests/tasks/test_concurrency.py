"""Threads racing through the services on real connections, on both databases."""

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from audit.models import Event
from conversations.models import Conversation, Message
from conversations.services import conversation_create, message_append_one
from swarmsite.errors import (
    DependencyCycle,
    IllegalTransition,
    VersionConflict,
)
from swarmsite.services import project_create
from tasks.models import Task, TaskDependency
from tasks.services import task_create, task_dependency_add, task_transition

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 60


@pytest.fixture
def project(transactional_db):
    return project_create(slug="race")[0]


def race(workers: list[Callable[[], Any]]) -> list[Any]:
    """Run each worker in its own thread, released together; results or errors."""
    barrier = threading.Barrier(len(workers))
    outcomes: list[Any] = [None] * len(workers)

    def run(index: int, work: Callable[[], Any]) -> None:
        try:
            barrier.wait(WAIT)
            outcomes[index] = work()
        except BaseException as exc:
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)
    return outcomes


def test_of_16_racing_transitions_exactly_one_wins(project):
    task, _ = task_create(project=project, title="contended")
    copies = [Task.objects.get(pk=task.pk) for _ in range(16)]

    outcomes = race(
        [lambda t=t: task_transition(task=t, status="running") for t in copies]
    )

    winners = [o for o in outcomes if isinstance(o, Task)]
    losers = [o for o in outcomes if not isinstance(o, Task)]
    assert len(winners) == 1
    assert len(losers) == 15
    assert all(isinstance(o, IllegalTransition | VersionConflict) for o in losers)
    stored = Task.objects.get(pk=task.pk)
    assert (stored.status, stored.version) == ("running", 2)
    assert (
        Event.objects.filter(task_id=task.pk, kind="task.status_changed").count() == 1
    )


def test_racing_transitions_with_the_same_expected_version_have_one_winner(project):
    task, _ = task_create(project=project, title="contended")
    targets = ["queued", "running", "cancelled"] * 4

    outcomes = race(
        [
            lambda s=s: task_transition(
                task=Task.objects.get(pk=task.pk), status=s, expected_version=1
            )
            for s in targets
        ]
    )

    winners = [o for o in outcomes if isinstance(o, Task)]
    assert len(winners) == 1
    assert all(
        isinstance(o, VersionConflict | IllegalTransition)
        for o in outcomes
        if o is not winners[0]
    )
    stored = Task.objects.get(pk=task.pk)
    assert (stored.status, stored.version) == (winners[0].status, 2)
    assert (
        Event.objects.filter(task_id=task.pk, kind="task.status_changed").count() == 1
    )


def test_messages_appended_by_8_threads_are_numbered_1_to_80_without_gaps(project):
    conversation, _ = conversation_create(project=project, title="busy")

    def append(writer: int) -> list[int]:
        return [
            message_append_one(
                conversation=conversation,
                role="user",
                content=f"{writer}-{i}",
                prompt_tokens=1,
            )[0].seq
            for i in range(10)
        ]

    outcomes = race([lambda w=w: append(w) for w in range(8)])

    assert not [o for o in outcomes if isinstance(o, BaseException)]
    assert sorted(seq for seqs in outcomes for seq in seqs) == list(range(1, 81))
    stored = list(
        Message.objects.filter(conversation=conversation)
        .order_by("seq")
        .values_list("seq", flat=True)
    )
    assert stored == list(range(1, 81))
    for seqs in outcomes:
        assert seqs == sorted(seqs)
    conversation = Conversation.objects.get(pk=conversation.pk)
    assert (conversation.message_count, conversation.prompt_tokens) == (80, 80)
    events = Event.objects.filter(
        conversation_id=conversation.pk, kind="message.created"
    )
    assert sorted(e.payload["seq"] for e in events) == list(range(1, 81))


@pytest.mark.parametrize("round_", range(3))
def test_racing_edges_that_would_close_a_cycle_leave_at_most_one(project, round_):
    a, _ = task_create(project=project, title="A")
    b, _ = task_create(project=project, title="B")

    outcomes = race(
        [
            lambda: task_dependency_add(task=a, depends_on=b),
            lambda: task_dependency_add(task=b, depends_on=a),
        ]
    )

    edges = TaskDependency.objects.filter(task__in=[a, b])
    assert edges.count() == 1
    assert sum(isinstance(o, TaskDependency) for o in outcomes) == 1
    assert sum(isinstance(o, DependencyCycle) for o in outcomes) == 1


def test_racing_edges_that_would_close_a_three_task_cycle_leave_no_cycle(project):
    a, b, c = (task_create(project=project, title=t)[0] for t in "ABC")

    outcomes = race(
        [
            lambda: task_dependency_add(task=a, depends_on=b),
            lambda: task_dependency_add(task=b, depends_on=c),
            lambda: task_dependency_add(task=c, depends_on=a),
        ]
    )

    assert sum(isinstance(o, TaskDependency) for o in outcomes) == 2
    assert sum(isinstance(o, DependencyCycle) for o in outcomes) == 1
    assert TaskDependency.objects.filter(task__in=[a, b, c]).count() == 2
