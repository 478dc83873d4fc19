"""Eight workers drain a queue of 2,000 tasks with dependencies and priorities.

Each worker is a thread with its own database connection; on PostgreSQL
they claim concurrently (SKIP LOCKED), on SQLite the writer lock serialises
them. The event log (positions in commit order) is replayed to check that
every claim took a claimable task of the best priority, never one whose
dependencies were not completed, and that no two live claims shared a task.
"""

import bisect
import os
import random
import threading
import time
import uuid
from collections import defaultdict
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from audit.models import Event, JournalHead
from swarmsite.errors import Conflict, VersionConflict
from swarmsite.services import project_create
from tasks.models import Task, TaskDependency
from tasks.services import (
    agent_register,
    task_claim,
    task_create_many,
    task_lease_extend,
    task_transition,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TASKS = int(os.environ.get("QUEUE_TEST_TASKS", "2000"))
WORKERS = 8
WAIT = 240


@pytest.fixture
def project(transactional_db):
    return project_create(slug="queue")[0]


def _load(project, rng: random.Random) -> list[uuid.UUID]:
    """2,000 queued tasks; each depends on up to two earlier ones."""
    ids = [uuid.uuid4() for _ in range(TASKS)]
    specs = []
    for i, pk in enumerate(ids):
        deps = []
        if i > 20 and rng.random() < 0.3:
            deps = rng.sample(ids[max(0, i - 200) : i], rng.randint(1, 2))
        specs.append(
            {
                "task_id": pk,
                "title": f"t{i}",
                "priority": rng.randint(0, 9),
                "depends_on": deps,
            }
        )
    for start in range(0, TASKS, 1000):
        task_create_many(project=project, tasks=specs[start : start + 1000])
    # Setting up the queue, not under test: one statement instead of 2,000
    # transitions.
    Task.objects.filter(project=project).update(status="queued")
    return ids


def _fast_commits() -> None:
    """Commits that do not wait for the disk (PostgreSQL): the test is about
    concurrency, not durability, and a busy disk would dominate its time."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO off")


def _worker(
    project,
    agent,
    *,
    index: int,
    stop: threading.Event,
    log: list,
    awaited: set,
    seen: dict,
):
    """Claims until nothing is left; completes the tasks others wait for.

    The others stay running under their lease (a transition each would only
    slow the test down: they unblock nothing). `seen` maps each claim
    (task, agent) to the last event position committed before it began:
    what its snapshot saw for certain.
    """
    rng = random.Random(index)
    try:
        _fast_commits()
        while not stop.is_set():
            op = uuid.uuid4() if rng.random() < 0.1 else None
            # Long leases: a task finished or left running stays its
            # claimer's; only the first claim of worker 0 runs out.
            lease = 1 if index == 0 and not log else 3600
            before = (
                JournalHead.objects.filter(project=project)
                .values_list("last_position", flat=True)
                .first()
                or 0
            )
            task = task_claim(
                project=project, agent=agent, lease_seconds=lease, operation_id=op
            )
            if task is None:
                # Done when nothing is queued and no running task will come
                # back: none that others wait for, none with a short lease.
                soon = timezone.now() + timedelta(seconds=5)
                if (
                    not Task.objects.filter(project=project)
                    .filter(
                        Q(status="queued")
                        | Q(status="running")
                        & (Q(pk__in=awaited) | Q(lease_expires_at__lt=soon))
                    )
                    .exists()
                ):
                    return
                time.sleep(0.005)
                continue
            log.append(task.pk)
            seen[task.pk, str(agent.pk)] = before
            if index == 0 and len(log) == 1:
                # This worker dies holding its first task: no heartbeat, no
                # transition. Its lease runs out and another worker takes it.
                return
            if op is not None:
                again = task_claim(project=project, agent=agent, operation_id=op)
                assert again.pk == task.pk and again.replayed
                beat = uuid.uuid4()
                task_lease_extend(task=task, lease_seconds=3600, operation_id=beat)
                task_lease_extend(task=task, lease_seconds=3600, operation_id=beat)
            if task.pk in awaited:
                task_transition(
                    task=task, status="completed", expected_version=task.version
                )
    except BaseException as exc:  # reported by the test
        log.append(exc)
        stop.set()
    finally:
        connection.close()


def test_eight_workers_drain_2000_tasks_in_order_each_claimed_once(project):
    rng = random.Random(13)
    started = time.monotonic()
    ids = _load(project, rng)
    agents = [
        agent_register(project=project, name=f"worker-{i}")[0] for i in range(WORKERS)
    ]
    awaited = set(
        TaskDependency.objects.filter(task__project=project).values_list(
            "depends_on_id", flat=True
        )
    )
    stop = threading.Event()
    logs: list[list] = [[] for _ in range(WORKERS)]
    seen: dict = {}
    threads = [
        threading.Thread(
            target=_worker,
            args=(project, agents[i]),
            kwargs={
                "index": i,
                "stop": stop,
                "log": logs[i],
                "awaited": awaited,
                "seen": seen,
            },
        )
        for i in range(WORKERS)
    ]
    loaded = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    drained = time.monotonic()
    assert not any(t.is_alive() for t in threads)
    errors = [e for log in logs for e in log if isinstance(e, BaseException)]
    assert not errors, errors[:3]
    print(
        f"\nload {loaded - started:.1f}s, drain {drained - loaded:.1f}s "
        f"({TASKS / (drained - loaded):.0f} claims/s)"
    )

    tasks = {t.pk: t for t in Task.objects.filter(project=project)}
    assert {pk for pk, t in tasks.items() if t.status == "completed"} == awaited
    assert all(t.status == "running" for pk, t in tasks.items() if pk not in awaited)
    died_holding = logs[0][0]
    assert tasks[died_holding].attempts == 2
    assert {pk for pk, t in tasks.items() if t.attempts != 1} == {died_holding}

    # Replay the log in commit order.
    deps = defaultdict(set)
    dependents = defaultdict(set)
    for task_id, dep_id in TaskDependency.objects.filter(
        task__project=project
    ).values_list("task_id", "depends_on_id"):
        deps[task_id].add(dep_id)
        dependents[dep_id].add(task_id)
    rank_key = {pk: (-t.priority, t.created_at, str(pk)) for pk, t in tasks.items()}
    claimable = sorted(rank_key[pk] for pk in ids if not deps[pk])
    # The position at which each claimable task became claimable.
    since = dict.fromkeys(claimable, 0)
    completed: set = set()
    running: dict = {}
    claims = 0
    worst_rank = 0
    events = Event.objects.filter(
        project=project, kind__in=["task.status_changed", "task.lease_expired"]
    ).order_by("position")
    rows = events.values_list("position", "kind", "task_id", "payload")
    for position, kind, task_id, payload in rows:
        key = rank_key[task_id]
        if kind == "task.lease_expired":
            assert running.pop(task_id) == payload["agent"]
            bisect.insort(claimable, key)
            since[key] = position
        elif payload.get("claim"):
            claims += 1
            assert task_id not in running, "two live claims of one task"
            assert deps[task_id] <= completed, "claimed before its dependencies"
            rank = bisect.bisect_left(claimable, key)
            assert claimable[rank] == key
            skipped = rank
            if connection.vendor == "postgresql":
                # Better tasks that became claimable after the claim began
                # may be missing from its snapshot: they do not count.
                began = seen[task_id, payload["agent"]]
                skipped -= sum(1 for k in claimable[:rank] if since[k] > began)
            worst_rank = max(worst_rank, skipped)
            claimable.pop(rank)
            running[task_id] = payload["agent"]
        elif payload["to"] == "completed":
            assert running.pop(task_id) is not None
            completed.add(task_id)
            for waiting in dependents[task_id]:
                if deps[waiting] <= completed:
                    bisect.insort(claimable, rank_key[waiting])
                    since[rank_key[waiting]] = position
    assert claims == TASKS + 1
    assert completed == awaited
    assert set(running) == set(ids) - awaited
    # SQLite serialises claims: each took the very best. On PostgreSQL a
    # claimer skips rows other claimers hold locked, at most one per worker,
    # and cannot see what became claimable after its snapshot.
    limit = 0 if connection.vendor == "sqlite" else WORKERS - 1
    assert worst_rank <= limit, f"a claim skipped {worst_rank} better tasks"


def test_a_worker_that_stops_heartbeating_loses_its_task_after_the_lease(project):
    (task,) = [
        t for t, _ in task_create_many(project=project, tasks=[{"title": "only one"}])
    ]
    task_transition(task=task, status="queued")
    quiet, _ = agent_register(project=project, name="quiet")
    busy, _ = agent_register(project=project, name="busy")

    mine = task_claim(project=project, agent=quiet, lease_seconds=1)
    claimed_version = mine.version
    assert task_claim(project=project, agent=busy) is None  # still leased
    time.sleep(1.2)
    taken = task_claim(project=project, agent=busy, lease_seconds=30)

    assert taken.pk == mine.pk
    assert (taken.assigned_agent_id, taken.attempts) == (busy.pk, 2)
    with pytest.raises(Conflict):
        task_lease_extend(task=mine, agent=quiet)
    with pytest.raises(VersionConflict):
        task_transition(task=mine, status="completed", expected_version=claimed_version)
    done = task_transition(
        task=taken, status="completed", expected_version=taken.version
    )
    assert done.status == "completed"
