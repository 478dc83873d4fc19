"""Builders of stats test data: rows placed at chosen times."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from audit.models import AuditAction
from audit.services import audit_logs_record
from conversations.services import conversation_create, message_append
from tasks.models import AgentRun, Task
from tasks.services import agent_register, run_create, task_create

SINCE = datetime(2026, 1, 10, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=1)
INSIDE = SINCE + timedelta(hours=6)
BEFORE = SINCE - timedelta(hours=1)


def task_at(project, *, status="pending", agent=None, seconds=None, created=INSIDE):
    task = task_create(project=project, title=f"t-{status}", assigned_agent=agent)[0]
    values = {"status": status, "created_at": created}
    if seconds is not None:
        values["started_at"] = created
        values["completed_at"] = created + timedelta(seconds=seconds)
    Task.objects.filter(pk=task.pk).update(**values)
    return task


def api_requests(project, specs, *, at=INSIDE):
    audit_logs_record(
        project_id=project.pk,
        entries=[
            {
                "action": AuditAction.API_REQUEST,
                "method": method,
                "target": route,
                "path": f"/api/v1/{route or 'nowhere'}/{index}",
                "status_code": status,
                "duration_ms": duration,
                "success": status < 400,
                "occurred_at": at,
            }
            for index, (method, route, status, duration) in enumerate(specs)
        ],
    )


def build_known(project, other_project) -> dict:
    """Tasks, messages, runs and API requests of `project`, plus noise.

    Noise: the same kinds of rows before the window and in another project.
    """
    planner = agent_register(project=project, name="planner", model="gpt-4o")[0]
    worker = agent_register(project=project, name="worker", model="claude")[0]

    # Completed in 10, 20, 30, 40 and 100 seconds: mean 40, p50 30,
    # p95 = 40 + 0.8 * (100 - 40) = 88.
    for seconds in (10, 20, 30):
        task_at(project, status="completed", agent=planner, seconds=seconds)
    for seconds in (40, 100):
        task_at(project, status="completed", agent=worker, seconds=seconds)
    task_at(project, status="failed", agent=planner, seconds=5)
    task_at(project, status="cancelled")
    task_at(project, status="running", agent=worker)
    task_at(project, status="running")
    parent = task_at(project, status="pending")
    # Outside the window, or in another project: never counted.
    task_at(project, status="completed", agent=planner, seconds=1000, created=BEFORE)
    task_at(project, status="completed", agent=planner, seconds=1000, created=UNTIL)
    task_at(other_project, status="completed", seconds=1000)

    conversation = conversation_create(project=project, task=parent)[0]
    message_append(
        conversation=conversation,
        messages=[
            {"role": "user", "content": "Plan it", "created_at": INSIDE},
            {
                "role": "assistant",
                "sender": str(planner.pk),
                "model": "gpt-4o",
                "prompt_tokens": 100,
                "completion_tokens": 50,
                "cached_tokens": 10,
                "cost": "0.001500",
                "created_at": INSIDE,
            },
            {
                "role": "assistant",
                "sender": str(worker.pk),
                "model": "claude",
                "prompt_tokens": 200,
                "completion_tokens": 100,
                "cost": "0.003000",
                "created_at": INSIDE,
            },
            {
                "role": "assistant",
                "sender": str(planner.pk),
                "model": "gpt-4o",
                "prompt_tokens": 7000,
                "cost": "9.000000",
                "created_at": BEFORE,
            },
        ],
    )
    run = run_create(
        project=project,
        task=parent,
        agent=worker,
        model="claude",
        prompt_tokens=1000,
        completion_tokens=500,
        cost=Decimal("0.020000"),
    )[0]
    late = run_create(project=project, task=parent, agent=planner, prompt_tokens=9)[0]
    AgentRun.objects.filter(pk=run.pk).update(created_at=INSIDE)
    AgentRun.objects.filter(pk=late.pk).update(created_at=UNTIL)

    foreign_agent = agent_register(project=other_project, name="spy", model="x")[0]
    foreign = conversation_create(project=other_project)[0]
    message_append(
        conversation=foreign,
        messages=[
            {
                "role": "assistant",
                "sender": str(foreign_agent.pk),
                "model": "gpt-4o",
                "prompt_tokens": 5000,
                "cost": "5.000000",
                "created_at": INSIDE,
            }
        ],
    )

    api_requests(
        project,
        [
            ("GET", "tasks:task-detail", 200, 10.0),
            ("GET", "tasks:task-detail", 200, 20.0),
            ("GET", "tasks:task-detail", 404, 30.0),
            ("POST", "tasks:task-list", 201, 40.0),
            ("POST", "ingest:ingest", 500, 100.0),
        ],
    )
    api_requests(project, [("GET", "tasks:task-list", 500, 1.0)], at=BEFORE)
    api_requests(other_project, [("GET", "tasks:task-list", 500, 1.0)])
    return {"planner": planner, "worker": worker}
