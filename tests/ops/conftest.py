"""A small swarm with every kind of row, and helpers to export and import."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.management import call_command

from audit.models import AuditLog, Event, JournalHead
from audit.retention import audit_deletion_granted
from audit.services import audit_custom_event_create, audit_log_record
from conversations.models import Conversation, Message
from conversations.services import conversation_create, message_append
from swarmsite.models import ApiKey, Project
from tasks.models import Agent, AgentHeartbeat, Task, Workflow
from tasks.services import (
    agent_heartbeat,
    agent_register,
    run_create,
    task_create,
    task_transition,
    workflow_create,
)


def build_swarm(project: Project, other_project: Project) -> dict:
    """Agents in a hierarchy, subtasks, dependencies, runs, a threaded
    conversation, heartbeats, custom events and audit records."""
    planner = agent_register(
        project=project, name="planner", role="planner", config={"t": 0.2, "a": 1}
    )[0]
    worker = agent_register(
        project=project, name="worker", parent=planner, capabilities=["code"]
    )[0]
    workflow = workflow_create(project=project, name="release")[0]
    root = task_create(
        project=project,
        title="Ship it",
        workflow=workflow,
        assigned_agent=planner,
        agents=[planner, worker],
        input={"b": 1, "a": [1.5, None, "ü"]},
    )[0]
    build = task_create(project=project, title="Build", parent=root)[0]
    check = task_create(
        project=project, title="Check", parent=root, depends_on=[build]
    )[0]
    task_transition(task=build, status="running")
    run_create(
        project=project,
        task=build,
        agent=worker,
        prompt_tokens=120,
        completion_tokens=30,
        cost="0.012500",
        metadata={"z": 1, "a": 2},
    )
    task_transition(task=build, status="completed", result={"ok": True})
    conversation = conversation_create(
        project=project, task=root, title="Plan", participants=[planner, worker]
    )[0]
    first = message_append(
        conversation=conversation,
        messages=[
            {"role": "user", "content": "héllo ✓"},
            {
                "role": "assistant",
                "content": "on it",
                "sender": str(worker.pk),
                "latency_ms": 12.5,
                "cost": "0.000123",
                "tool_calls": [{"id": "c1", "name": "grep"}],
            },
        ],
    )
    message_append(
        conversation=conversation,
        messages=[
            {"role": "tool", "tool_call_id": "c1", "reply_to": str(first[1][0].pk)}
        ],
    )
    agent_heartbeat(agent=worker, status="busy", details={"load": 0.5})
    audit_custom_event_create(
        project_id=project.pk,
        kind="eval.scored",
        task_id=root.pk,
        payload={"score": 0.93, "z": [1, 2], "a": {"y": 1, "b": 2}},
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    audit_log_record(
        project_id=project.pk,
        action="tool.invoke",
        target="grep",
        obj=check,
        duration_ms=3.25,
        ip="127.0.0.1",
        details={"pattern": "TODO", "hits": 3},
    )
    helper = agent_register(project=other_project, name="helper")[0]
    other_task = task_create(project=other_project, title="Elsewhere")[0]
    return {
        "planner": planner,
        "worker": worker,
        "workflow": workflow,
        "root": root,
        "build": build,
        "check": check,
        "conversation": conversation,
        "helper": helper,
        "other_task": other_task,
    }


@pytest.fixture
def swarm(project, other_project) -> dict:
    return build_swarm(project, other_project)


def export_text(tmp_path: Path, *args: str, name: str = "export.jsonl") -> str:
    path = tmp_path / name
    call_command("export", "--output", str(path), *args, stdout=_Sink())
    return path.read_text(encoding="utf-8")


def import_file(path: Path) -> str:
    out = _Sink()
    call_command("import", str(path), stdout=out)
    return out.text


class _Sink:
    def __init__(self):
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def empty_database() -> None:
    """Remove every row the export covers, as in a database just created."""
    with audit_deletion_granted(reason="tests: empty the database"):
        Event.objects.all().delete()
        AuditLog.objects.all().delete()
    JournalHead.objects.all().delete()
    Message.objects.update(reply_to=None)
    Conversation.objects.all().delete()
    Task.objects.update(parent=None)
    Task.objects.all().delete()
    Agent.objects.update(parent=None)
    AgentHeartbeat.objects.all().delete()
    Agent.objects.all().delete()
    Workflow.objects.all().delete()
    ApiKey.objects.all().delete()
    Project.objects.all().delete()


def row_counts() -> dict[str, int]:
    from ops.selectors import SPECS

    return {spec.name: spec.model._default_manager.count() for spec in SPECS}
