"""The demo data loader: agents, workflows, tasks, runs, conversations, audit.

Every object has a fixed id (uuid5 of the project and a stable key) and goes
through an idempotent create, so loading again writes nothing. Status
changes, progress and heartbeats happen only when their object is new. The
data itself is in `ops.demo_data`.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, models

from audit.journal import journaled
from audit.models import AuditLog, Event
from audit.services import audit_custom_event_create, audit_log_record
from conversations.models import Conversation, Message
from conversations.services import conversation_create, message_append
from ops.demo_data import (
    AGENTS,
    AUDIT_RECORDS,
    CONVERSATIONS,
    CUSTOM_EVENTS,
    PATHS,
    TASKS,
    WORKFLOWS,
)
from swarmsite.actors import SYSTEM, Actor
from swarmsite.errors import IdempotencyConflict
from swarmsite.models import Project
from tasks.models import (
    TERMINAL_STATUSES,
    Agent,
    AgentRun,
    Task,
    TaskStatus,
    Workflow,
)
from tasks.services import (
    agent_actor,
    agent_heartbeat,
    agent_register,
    run_create,
    task_create,
    task_progress_set,
    task_transition,
    workflow_create,
)

NAMESPACE = uuid.UUID("6f1d2c3e-5a4b-4c8d-9e0f-a1b2c3d4e5f6")


@dataclass(frozen=True)
class DemoReport:
    """What a load found: objects per kind, how many were new, how many kept."""

    total: Counter[str]
    created: Counter[str]
    kept: int


def demo_seed(*, project: Project) -> DemoReport:
    """Load the demo data into `project` in one transaction; idempotent."""
    seeder = _Seeder(project)
    with journaled():
        seeder.seed()
    return DemoReport(total=seeder.total, created=seeder.created, kept=seeder.kept)


class _Seeder:
    """Creates the demo objects and counts what was new."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.agents: dict[str, Agent] = {}
        self.workflows: dict[str, Workflow] = {}
        self.tasks: dict[str, Task] = {}
        self.conversations: dict[str, Conversation] = {}
        self.total: Counter[str] = Counter()
        self.created: Counter[str] = Counter()
        self.kept = 0

    def id(self, kind: str, key: str) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, f"{self.project.slug}/{kind}/{key}")

    def count(self, kind: str, created: bool) -> None:
        self.total[kind] += 1
        self.created[kind] += int(created)

    def create(
        self, service, model_class: type[models.Model], pk: uuid.UUID, /, **kwargs
    ) -> tuple[Any, bool]:
        """Call an idempotent create; keep an object edited since seeding."""
        try:
            return service(**kwargs)
        except (IdempotencyConflict, IntegrityError):
            # Someone changed what the create names (an agent renamed): a
            # repeated create no longer matches it. Demo data must not fail
            # `make run`.
            stored = model_class.objects.filter(project=self.project, pk=pk).first()
            if stored is None:
                raise
            self.kept += 1
            return stored, False

    def actor(self, agent_key: str | None) -> Actor:
        return agent_actor(self.agents[agent_key]) if agent_key else SYSTEM

    def seed(self) -> None:
        self.seed_agents()
        self.seed_workflows()
        self.seed_tasks()
        self.seed_conversations()
        self.seed_custom_events()
        self.seed_audit_records()

    def seed_agents(self) -> None:
        for spec in AGENTS:
            parent = spec.get("parent")
            pk = self.id("agent", spec["name"])
            agent, created = self.create(
                agent_register,
                Agent,
                pk,
                project=self.project,
                agent_id=pk,
                name=spec["name"],
                role=spec["role"],
                model=spec["model"],
                parent=self.agents[parent] if parent else None,
                capabilities=spec["capabilities"],
                config=spec["config"],
                metadata={"demo": True},
            )
            self.agents[spec["name"]] = agent
            if created:
                agent_heartbeat(
                    agent=agent,
                    status=spec["heartbeat"],
                    details={"host": "demo-host-1", "version": "0.3.1"},
                )
            self.count("agents", created)

    def seed_workflows(self) -> None:
        for spec in WORKFLOWS:
            pk = self.id("workflow", spec["key"])
            workflow, created = self.create(
                workflow_create,
                Workflow,
                pk,
                project=self.project,
                workflow_id=pk,
                name=spec["name"],
                description=spec["description"],
                metadata=spec["metadata"],
            )
            self.workflows[spec["key"]] = workflow
            self.count("workflows", created)

    def seed_tasks(self) -> None:
        for spec in TASKS:
            runs = spec.get("runs", [])
            # Runs add their agent to the task's agents; naming them up front
            # keeps a repeated create identical to the stored task.
            involved = {spec["agent"], *(r["agent"] for r in runs)}
            pk = self.id("task", spec["key"])
            task, created = self.create(
                task_create,
                Task,
                pk,
                project=self.project,
                task_id=pk,
                title=spec["title"],
                description=spec.get("description", ""),
                session_id=spec.get("session", ""),
                workflow=self.workflows.get(spec.get("workflow")),
                parent=self.tasks.get(spec.get("parent")),
                priority=spec.get("priority", 0),
                assigned_agent=self.agents[spec["agent"]],
                agents=[self.agents[a] for a in sorted(involved)],
                depends_on=[self.tasks[d] for d in spec.get("depends_on", [])],
                input=spec.get("input"),
                metadata={"demo": True, **spec.get("metadata", {})},
                files_touched=spec.get("files_touched"),
                actor=self.actor("orchestrator"),
            )
            self.tasks[spec["key"]] = task
            self.count("tasks", created)
            if created:
                self.move(task, spec)
            for index, run in enumerate(runs):
                self.seed_run(task, spec["key"], index, run)

    def move(self, task: Task, spec: dict[str, Any]) -> None:
        """Walk a new task to its demo status, as its agents would."""
        outcome = {
            k: spec[k] for k in ("result", "result_summary", "error") if k in spec
        }
        for status in PATHS[spec["path"]]:
            actor = self.actor(
                "orchestrator"
                if status in (TaskStatus.QUEUED, TaskStatus.CANCELLED)
                else spec["agent"]
            )
            extra = outcome if status in TERMINAL_STATUSES else {}
            task_transition(task=task, status=status, actor=actor, **extra)
            if extra:
                outcome = {}
        if spec.get("progress"):
            task_progress_set(
                task=task, progress=spec["progress"], actor=self.actor(spec["agent"])
            )

    def seed_run(self, task: Task, task_key: str, index: int, spec: dict) -> None:
        agent = self.agents[spec["agent"]]
        pk = self.id("run", f"{task_key}/{index}")
        _, created = self.create(
            run_create,
            AgentRun,
            pk,
            project=self.project,
            run_id=pk,
            task=task,
            agent=agent,
            status=spec["status"],
            model=agent.model,
            prompt_tokens=spec["prompt_tokens"],
            completion_tokens=spec["completion_tokens"],
            cached_tokens=spec.get("cached_tokens", 0),
            cost=spec["cost"],
            output_summary=spec.get("output_summary", ""),
            error=spec.get("error", ""),
            actor=agent_actor(agent),
        )
        self.count("runs", created)

    def seed_conversations(self) -> None:
        for spec in CONVERSATIONS:
            pk = self.id("conversation", spec["key"])
            conversation, created = self.create(
                conversation_create,
                Conversation,
                pk,
                project=self.project,
                conversation_id=pk,
                task=self.tasks[spec["task"]],
                title=spec["title"],
                participants=[self.agents[a] for a in spec["participants"]],
                metadata=spec.get("metadata"),
                actor=self.actor("orchestrator"),
            )
            self.conversations[spec["key"]] = conversation
            self.count("conversations", created)
            # One append per message, so each event names its sender.
            for message in spec["messages"]:
                self.seed_message(conversation, spec["key"], message)

    def seed_message(self, conversation, conversation_key: str, spec: dict) -> None:
        fields = {
            k: v for k, v in spec.items() if k not in ("key", "sender", "reply_to")
        }
        fields["id"] = self.id("message", f"{conversation_key}/{spec['key']}")
        sender = spec.get("sender")
        if sender:
            fields["sender"] = str(self.agents[sender].pk)
        if spec.get("reply_to"):
            fields["reply_to"] = self.id(
                "message", f"{conversation_key}/{spec['reply_to']}"
            )
        _, created = self.create(
            lambda **kw: message_append(**kw)[0],
            Message,
            fields["id"],
            conversation=conversation,
            messages=[fields],
            actor=self.actor(sender),
        )
        self.count("messages", created)

    def seed_custom_events(self) -> None:
        for spec in CUSTOM_EVENTS:
            event_id = self.id("event", spec["key"])
            # The service does not deduplicate by id, so look first.
            created = not Event.objects.filter(uuid=event_id).exists()
            if created:
                audit_custom_event_create(
                    project_id=self.project.pk,
                    event_id=event_id,
                    kind=spec["kind"],
                    actor=self.actor(spec["actor"]),
                    task_id=self.tasks[spec["task"]].pk if "task" in spec else None,
                    conversation_id=self.conversations[spec["conversation"]].pk
                    if "conversation" in spec
                    else None,
                    payload=spec["payload"],
                )
            self.count("custom events", created)

    def seed_audit_records(self) -> None:
        for spec in AUDIT_RECORDS:
            entry_id = self.id("audit", spec["key"])
            created = not AuditLog.objects.filter(uuid=entry_id).exists()
            if created:
                audit_log_record(
                    project_id=self.project.pk,
                    entry_id=entry_id,
                    action=spec["action"],
                    actor=self.actor(spec["actor"]),
                    target=spec["target"],
                    obj=self.tasks[spec["task"]],
                    success=spec.get("success", True),
                    duration_ms=spec["duration_ms"],
                    error=spec.get("error", ""),
                    details=spec["details"],
                )
            self.count("audit records", created)
