"""Stored roll-ups against a recount from the rows, after randomized writes.

Writes go through every path that moves a roll-up: single and bulk task
creates, batch ingest, transitions, claims, lease expiry, retries, task
updates that move a task between workflows and agents, runs and their
updates, messages (some owned by a run), workflow cancel, and pruning.
"""

import random
import uuid
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from conversations.models import Message
from conversations.services import (
    conversation_create,
    message_append,
    message_sender_set_many,
)
from ops.services.pruning import prune_run
from swarmsite.errors import ServiceError
from tasks.models import (
    TASK_TRANSITIONS,
    Agent,
    AgentRun,
    Task,
    Workflow,
    workflow_status,
)
from tasks.services import (
    agent_register,
    agent_rollups_apply,
    run_create,
    run_update,
    task_claim,
    task_create,
    task_create_many,
    task_leases_expire,
    task_retry,
    task_transition,
    task_update,
    usage_counts,
    workflow_cancel,
    workflow_create,
)
from tasks.services.rollups import tasks_usage_add

pytestmark = pytest.mark.django_db

USAGE = ("prompt_tokens", "completion_tokens", "cached_tokens", "cost")
STATUSES = (
    "pending",
    "queued",
    "running",
    "waiting",
    "completed",
    "failed",
    "cancelled",
)


def _zero():
    return {name: Decimal(0) if name == "cost" else 0 for name in USAGE}


def recount(project) -> dict:
    """Every roll-up computed from the rows, independently of the services."""
    tasks = {t.pk: t for t in Task.objects.filter(project=project)}
    runs = list(AgentRun.objects.filter(project=project))
    messages = list(
        Message.objects.filter(project=project).select_related("conversation")
    )
    task_usage = defaultdict(_zero)
    agents = defaultdict(
        lambda: {
            **_zero(),
            "tasks_completed": 0,
            "tasks_failed": 0,
            "runs_count": 0,
            "messages_count": 0,
            "latency_total_ms": 0.0,
            "latency_count": 0,
        }
    )
    for run in runs:
        for name in USAGE:
            task_usage[run.task_id][name] += getattr(run, name)
        if run.agent_id:
            agents[run.agent_id]["runs_count"] += 1
            for name in USAGE:
                agents[run.agent_id][name] += getattr(run, name)
    for m in messages:
        counts = usage_counts(m.metadata)
        if counts and m.conversation.task_id:
            for name in USAGE:
                task_usage[m.conversation.task_id][name] += getattr(m, name)
        if m.sender_id:
            agents[m.sender_id]["messages_count"] += 1
            if counts:
                for name in USAGE:
                    agents[m.sender_id][name] += getattr(m, name)
            if m.latency_ms is not None:
                agents[m.sender_id]["latency_total_ms"] += m.latency_ms
                agents[m.sender_id]["latency_count"] += 1
    workflows = defaultdict(lambda: {**_zero(), **{f"tasks_{s}": 0 for s in STATUSES}})
    for pk, task in tasks.items():
        if task.workflow_id:
            wf = workflows[task.workflow_id]
            wf[f"tasks_{task.status}"] += 1
            for name in USAGE:
                wf[name] += task_usage[pk][name]
        if task.assigned_agent_id and task.status in ("completed", "failed"):
            agents[task.assigned_agent_id][f"tasks_{task.status}"] += 1
    return {"tasks": task_usage, "workflows": workflows, "agents": agents}


def assert_rollups_match(project):
    counted = recount(project)
    for task in Task.objects.filter(project=project):
        assert {n: getattr(task, n) for n in USAGE} == counted["tasks"][task.pk], task
    for wf in Workflow.objects.filter(project=project):
        expected = counted["workflows"][wf.pk]
        stored = {name: getattr(wf, name) for name in expected}
        assert stored == expected, wf.name
        assert wf.status == workflow_status(
            {s: expected[f"tasks_{s}"] for s in STATUSES}
        )
    for agent in Agent.objects.filter(project=project):
        expected = counted["agents"][agent.pk]
        stored = {name: getattr(agent, name) for name in expected}
        assert stored.pop("latency_total_ms") == pytest.approx(
            expected.pop("latency_total_ms")
        )
        assert stored == expected, agent.name


def _random_writes(project, rng: random.Random, make_api_client):
    agents = [agent_register(project=project, name=f"a{i}")[0] for i in range(4)]
    flows = [workflow_create(project=project, name=f"w{i}")[0] for i in range(3)]

    def pick_flow():
        return rng.choice([*flows, None])

    task_create_many(
        project=project,
        tasks=[
            {
                "title": f"bulk {i}",
                "workflow": pick_flow(),
                "assigned_agent": rng.choice([*agents, None]),
                "priority": rng.randint(0, 3),
            }
            for i in range(30)
        ],
    )
    for i in range(5):
        task_create(project=project, title=f"single {i}", workflow=pick_flow())
    # Batch ingest: a workflow, tasks in it, transitions, a run and messages.
    api = make_api_client(project)
    flow_id, task_id, conv_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    items = [
        {"type": "workflow", "data": {"id": str(flow_id), "name": "ingested"}},
        {
            "type": "task",
            "data": {
                "id": str(task_id),
                "title": "in",
                "workflow": str(flow_id),
                "assigned_agent": str(agents[0].pk),
            },
        },
        {"type": "task", "data": {"title": "in 2", "workflow": str(flow_id)}},
        {"type": "transition", "data": {"task": str(task_id), "status": "running"}},
        {
            "type": "run",
            "data": {
                "task": str(task_id),
                "agent": str(agents[0].pk),
                "prompt_tokens": 100,
                "cost": "0.5",
            },
        },
        {"type": "conversation", "data": {"id": str(conv_id), "task": str(task_id)}},
        {
            "type": "message",
            "data": {
                "conversation": str(conv_id),
                "role": "assistant",
                "sender": str(agents[1].pk),
                "prompt_tokens": 7,
                "latency_ms": 30,
            },
        },
        {
            "type": "message",
            "data": {
                "conversation": str(conv_id),
                "role": "assistant",
                "sender": str(agents[0].pk),
                "prompt_tokens": 100,
                "cost": "0.5",
                "metadata": {"run": "same call"},
            },
        },
        {"type": "transition", "data": {"task": str(task_id), "status": "completed"}},
    ]
    response = api.post("/api/v1/ingest/", {"items": items}, format="json")
    assert response.status_code == 200, response.content

    tasks = list(Task.objects.filter(project=project))
    conversations = {}
    for step in range(250):
        task = Task.objects.get(pk=rng.choice(tasks).pk)
        action = rng.random()
        try:
            if action < 0.35:
                allowed = sorted(TASK_TRANSITIONS[task.status] - {"queued"})
                if task.status == "pending" or (allowed and rng.random() < 0.3):
                    allowed = sorted(TASK_TRANSITIONS[task.status])
                if allowed:
                    task_transition(task=task, status=rng.choice(allowed))
            elif action < 0.45:
                claimed = task_claim(
                    project=project,
                    agent=rng.choice(agents),
                    workflow=rng.choice([*flows, None]),
                    lease_seconds=rng.choice([1, 300]),
                )
                if claimed is not None and rng.random() < 0.5:
                    Task.objects.filter(pk=claimed.pk).update(
                        lease_expires_at=timezone.now() - timedelta(seconds=1)
                    )
            elif action < 0.5:
                task_leases_expire(project=project)
            elif action < 0.55:
                task_retry(task=task)
            elif action < 0.65:
                task_update(
                    task=task,
                    workflow=pick_flow(),
                    assigned_agent=rng.choice([*agents, None]),
                )
            elif action < 0.78:
                run, _ = run_create(
                    project=project,
                    task=task,
                    agent=rng.choice([*agents, None]),
                    prompt_tokens=rng.randint(0, 50),
                    completion_tokens=rng.randint(0, 50),
                    cost=Decimal(rng.randint(0, 99)) / 100,
                )
                if rng.random() < 0.5:
                    run_update(
                        run=run,
                        status="completed",
                        prompt_tokens=run.prompt_tokens + rng.randint(0, 20),
                        cost=run.cost + Decimal("0.01"),
                    )
            elif action < 0.95:
                if task.pk not in conversations:
                    conversations[task.pk] = conversation_create(
                        project=project, task=task
                    )[0]
                appended = message_append(
                    conversation=conversations[task.pk],
                    messages=[
                        {
                            "role": "assistant",
                            "sender": rng.choice([*agents, None]),
                            "prompt_tokens": rng.randint(0, 30),
                            "completion_tokens": rng.randint(0, 30),
                            "cost": str(Decimal(rng.randint(0, 50)) / 100),
                            "latency_ms": rng.choice([None, rng.uniform(1, 900)]),
                            "metadata": rng.choice([{}, {"run": "r"}]),
                        }
                        for _ in range(rng.randint(1, 3))
                    ],
                )
                # A sender learnt later (OTLP children first).
                unsent = [m for m, _ in appended if m.sender_id is None]
                if unsent and rng.random() < 0.5:
                    message_sender_set_many(
                        project=project,
                        senders=[
                            {"message": m.pk, "sender": rng.choice(agents).pk}
                            for m in unsent
                        ],
                    )
            else:
                workflow_cancel(workflow=rng.choice(flows))
        except ServiceError:
            pass  # an illegal move for the task's state: nothing written
        if step % 50 == 0:
            assert_rollups_match(project)


@pytest.mark.parametrize("seed", [1, 2])
def test_rollups_equal_a_recount_after_random_writes_and_pruning(
    project, make_api_client, seed
):
    _random_writes(project, random.Random(seed), make_api_client)
    assert_rollups_match(project)
    finished = Task.objects.filter(
        project=project, status__in=["completed", "failed", "cancelled"]
    ).count()

    report = prune_run(
        project=project,
        cutoff=timezone.now() + timedelta(days=1),
        reason="test",
        batch_size=7,
    )

    assert report.counts["tasks.task"] > 0
    assert Task.objects.filter(project=project).count() < 37 + 2
    assert finished >= report.counts["tasks.task"]
    assert_rollups_match(project)


def test_a_message_that_names_its_run_adds_no_usage_twice(project, agent, task):
    run, _ = run_create(
        project=project, task=task, agent=agent, prompt_tokens=50, cost=Decimal("0.2")
    )
    conversation, _ = conversation_create(project=project, task=task)
    message_append(
        conversation=conversation,
        messages=[
            {
                "role": "assistant",
                "sender": str(agent.pk),
                "prompt_tokens": 50,
                "cost": "0.2",
                "metadata": {"run": str(run.pk)},
            },
            {
                "role": "assistant",
                "sender": str(agent.pk),
                "prompt_tokens": 5,
                "latency_ms": 100,
            },
        ],
    )
    task.refresh_from_db()
    agent.refresh_from_db()
    conversation.refresh_from_db()
    assert (task.prompt_tokens, task.cost) == (55, Decimal("0.2"))
    assert (agent.prompt_tokens, agent.cost) == (55, Decimal("0.2"))
    assert (agent.runs_count, agent.messages_count) == (1, 2)
    assert agent.avg_latency_ms == 100
    # The conversation's own totals still count each of its messages.
    assert conversation.prompt_tokens == 55


def test_the_data_migration_recounts_rollups_from_the_rows(project, make_api_client):
    import importlib

    from django.apps import apps

    recount_migration = importlib.import_module("tasks.migrations.0004_recount_rollups")
    _random_writes(project, random.Random(3), make_api_client)
    # Roll-ups as the old rule left them (or anything else): wrong.
    Task.objects.filter(project=project).update(prompt_tokens=999, cost=9)
    Workflow.objects.filter(project=project).update(tasks_pending=77, cost=5)
    Agent.objects.filter(project=project).update(runs_count=0, messages_count=42)

    recount_migration.recount(apps, None)

    assert_rollups_match(project)


def test_several_rows_get_each_their_own_deltas_in_one_pass(project, agent):
    others = [agent_register(project=project, name=f"a{i}")[0] for i in range(3)]
    Agent.objects.filter(pk=others[0].pk).update(
        cost=Decimal("1.5"), latency_total_ms=2.5, latency_count=1
    )
    workflow, _ = workflow_create(project=project, name="wf")
    tasks = [task_create(project=project, title=str(i))[0] for i in range(3)]
    task_update(task=tasks[0], workflow=workflow.pk)
    task_update(task=tasks[1], workflow=workflow.pk)
    at = timezone.now() - timedelta(hours=1)

    agent_rollups_apply(
        {
            others[0].pk: {
                "runs_count": 2,
                "cost": Decimal("-0.25"),
                "prompt_tokens": 0,
            },
            others[1].pk: {"latency_total_ms": 1.5, "latency_count": 1},
            others[2].pk: {},
            None: {"runs_count": 1},
        },
        active_at=at,
    )
    tasks_usage_add(
        {
            tasks[0].pk: {"prompt_tokens": 3, "cost": Decimal("0.1234564")},
            tasks[1].pk: {"completion_tokens": 4, "cached_tokens": 0},
            tasks[2].pk: {"prompt_tokens": 5},
        }
    )

    rows = {
        a.pk: a for a in Agent.objects.filter(pk__in=[a.pk for a in [agent, *others]])
    }
    first, second, third = (rows[a.pk] for a in others)
    assert (first.runs_count, first.cost, first.prompt_tokens) == (
        2,
        Decimal("1.25"),
        0,
    )
    assert (first.latency_total_ms, first.latency_count) == (2.5, 1)
    assert (second.runs_count, second.latency_total_ms, second.latency_count) == (
        0,
        1.5,
        1,
    )
    assert {first.last_active_at, second.last_active_at, third.last_active_at} == {at}
    assert rows[agent.pk].last_active_at != at
    stored = {t.pk: t for t in Task.objects.filter(pk__in=[t.pk for t in tasks])}
    assert [
        (stored[t.pk].prompt_tokens, stored[t.pk].completion_tokens, stored[t.pk].cost)
        for t in tasks
    ] == [(3, 0, Decimal("0.123456")), (0, 4, Decimal(0)), (5, 0, Decimal(0))]
    workflow.refresh_from_db()
    assert (
        workflow.prompt_tokens,
        workflow.completion_tokens,
        workflow.cost,
    ) == (3, 4, Decimal("0.123456"))
