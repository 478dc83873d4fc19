"""Demo agents, workflows, tasks, runs, conversations and audit records.

Every object has a fixed id (uuid5 of the project and a stable name) and goes
through an idempotent create, so running the command again writes nothing.
Status changes, progress and heartbeats happen only when their object is new.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, models, transaction

from audit.models import AuditAction, AuditLog, Event
from audit.services import (
    SYSTEM,
    Actor,
    audit_custom_event_create,
    audit_log_record,
)
from conversations.models import Conversation, Message
from conversations.services import conversation_create, message_append
from swarmsite.errors import IdempotencyConflict, ServiceError
from swarmsite.models import DEFAULT_PROJECT_SLUG, Project
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

# Transitions that bring a new (pending) task to the wanted state.
PATHS: dict[str, tuple[str, ...]] = {
    "pending": (),
    "queued": ("queued",),
    "running": ("queued", "running"),
    "waiting": ("queued", "running", "waiting"),
    "completed": ("queued", "running", "completed"),
    "failed": ("queued", "running", "failed"),
    "cancelled": ("cancelled",),
    "retried": ("running", "failed", "queued"),
}

AGENTS: tuple[dict[str, Any], ...] = (
    {
        "name": "orchestrator",
        "role": "orchestrator",
        "model": "claude-sonnet-4",
        "capabilities": ["plan", "delegate", "summarise"],
        "config": {"max_parallel_tasks": 4, "temperature": 0.2},
        "heartbeat": "busy",
    },
    {
        "name": "planner",
        "role": "planner",
        "model": "gpt-4o",
        "parent": "orchestrator",
        "capabilities": ["decompose", "estimate"],
        "config": {"temperature": 0.3},
        "heartbeat": "idle",
    },
    {
        "name": "researcher",
        "role": "researcher",
        "model": "gpt-4o-mini",
        "parent": "orchestrator",
        "capabilities": ["web_search", "read_docs", "summarise"],
        "config": {"max_sources": 10},
        "heartbeat": "busy",
    },
    {
        "name": "coder",
        "role": "coder",
        "model": "claude-sonnet-4",
        "parent": "orchestrator",
        "capabilities": ["write_code", "run_tests", "git"],
        "config": {"sandbox": "docker", "temperature": 0.0},
        "heartbeat": "waiting",
    },
    {
        "name": "reviewer",
        "role": "reviewer",
        "model": "gpt-4o",
        "parent": "orchestrator",
        "capabilities": ["code_review", "security_review"],
        "config": {"strictness": "high"},
        "heartbeat": "idle",
    },
    {
        "name": "tool-runner",
        "role": "tool",
        "model": "",
        "parent": "coder",
        "capabilities": ["shell", "http", "filesystem"],
        "config": {"timeout_s": 120},
        "heartbeat": "idle",
    },
)

WORKFLOWS: tuple[dict[str, Any], ...] = (
    {
        "key": "release",
        "name": "Release 2.3",
        "description": "Everything that must happen before 2.3 is tagged.",
        "metadata": {"version": "2.3.0"},
    },
    {
        "key": "bug",
        "name": "Bug 1423: login timeout",
        "description": "Idle sessions get a 401 when they refresh.",
        "metadata": {"issue": 1423, "severity": "high"},
    },
    {
        "key": "pricing",
        "name": "Competitor pricing research",
        "description": "How our plans compare with three competitors.",
        "metadata": {"requested_by": "sales"},
    },
)


def _run(agent: str, status: str, prompt: int, completion: int, cost: str, **kw):
    return {
        "agent": agent,
        "status": status,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost": cost,
        **kw,
    }


# Ordered so that parents and dependencies come before the tasks naming them.
TASKS: tuple[dict[str, Any], ...] = (
    {
        "key": "release",
        "title": "Ship release 2.3",
        "description": "Coordinate the release and report when it is tagged.",
        "workflow": "release",
        "agent": "orchestrator",
        "priority": 10,
        "session": "release-2.3",
        "input": {"version": "2.3.0", "deadline": "Friday"},
        "path": "running",
        "progress": 40,
        "runs": [_run("orchestrator", "running", 1850, 420, "0.012450")],
    },
    {
        "key": "release-plan",
        "title": "Plan the release checklist",
        "workflow": "release",
        "parent": "release",
        "agent": "planner",
        "session": "release-2.3",
        "path": "completed",
        "result": {"steps": ["migration", "release notes", "review", "tag"]},
        "result_summary": "Four steps: migration, release notes, review, tag.",
        "runs": [
            _run(
                "planner",
                "completed",
                3120,
                640,
                "0.014200",
                cached_tokens=1024,
                output_summary="Checklist of four steps with owners.",
            )
        ],
    },
    {
        "key": "release-notes",
        "title": "Draft the release notes",
        "workflow": "release",
        "parent": "release",
        "agent": "researcher",
        "depends_on": ["release-plan"],
        "session": "release-2.3",
        "files_touched": ["docs/changelog/2.3.md"],
        "path": "running",
        "progress": 60,
        "runs": [_run("researcher", "running", 5400, 1210, "0.001540")],
    },
    {
        "key": "release-migration",
        "title": "Write the data migration",
        "workflow": "release",
        "parent": "release",
        "agent": "coder",
        "depends_on": ["release-plan"],
        "session": "release-2.3",
        "files_touched": ["app/migrations/0042_split_names.py"],
        "metadata": {"waiting_for": "human approval of the schema change"},
        "path": "waiting",
        "progress": 80,
        "runs": [
            _run(
                "coder",
                "running",
                8200,
                2300,
                "0.059100",
                output_summary="Migration written; paused for approval.",
            )
        ],
    },
    {
        "key": "release-review",
        "title": "Review the migration",
        "workflow": "release",
        "parent": "release",
        "agent": "reviewer",
        "depends_on": ["release-migration"],
        "session": "release-2.3",
        "path": "pending",
    },
    {
        "key": "release-tag",
        "title": "Tag and publish 2.3",
        "workflow": "release",
        "parent": "release",
        "agent": "tool-runner",
        "depends_on": ["release-notes", "release-review"],
        "priority": 5,
        "session": "release-2.3",
        "path": "pending",
    },
    {
        "key": "bug",
        "title": "Fix the login timeout (#1423)",
        "workflow": "bug",
        "agent": "orchestrator",
        "priority": 20,
        "session": "bug-1423",
        "input": {"issue": 1423, "reported_by": "support"},
        "path": "running",
        "progress": 35,
    },
    {
        "key": "bug-reproduce",
        "title": "Reproduce the timeout",
        "workflow": "bug",
        "parent": "bug",
        "agent": "tool-runner",
        "session": "bug-1423",
        "path": "completed",
        "result_summary": "Reproduced: sessions idle for 30+ minutes get a 401.",
        "runs": [
            _run(
                "tool-runner",
                "completed",
                0,
                0,
                "0",
                output_summary="Script reproduces the 401 after 31 minutes.",
            )
        ],
    },
    {
        "key": "bug-patch",
        "title": "Patch the session refresh",
        "workflow": "bug",
        "parent": "bug",
        "agent": "coder",
        "depends_on": ["bug-reproduce"],
        "session": "bug-1423",
        "files_touched": ["src/auth/session.py"],
        "path": "retried",
        "error": "Regression test still fails: 401 after 31 minutes idle.",
        "runs": [
            _run(
                "coder",
                "failed",
                12400,
                3100,
                "0.083700",
                error="Regression test still fails.",
            ),
            _run(
                "reviewer",
                "completed",
                4100,
                520,
                "0.015450",
                output_summary="Patch ignores the clock-skew allowance.",
            ),
        ],
    },
    {
        "key": "bug-test",
        "title": "Add a regression test for idle sessions",
        "workflow": "bug",
        "parent": "bug",
        "agent": "coder",
        "depends_on": ["bug-reproduce"],
        "session": "bug-1423",
        "path": "queued",
    },
    {
        "key": "pricing",
        "title": "Summarise competitor pricing",
        "workflow": "pricing",
        "agent": "orchestrator",
        "session": "pricing-q3",
        "path": "completed",
        "result_summary": "Median entry plan is $29/month; ours is 20% above it.",
        "runs": [_run("orchestrator", "completed", 2300, 610, "0.009800")],
    },
    {
        "key": "pricing-collect",
        "title": "Collect the public pricing pages",
        "workflow": "pricing",
        "parent": "pricing",
        "agent": "researcher",
        "session": "pricing-q3",
        "files_touched": ["research/pricing/raw.json"],
        "path": "completed",
        "result": {"pages": 3},
        "runs": [_run("researcher", "completed", 9800, 1500, "0.002370")],
    },
    {
        "key": "pricing-compare",
        "title": "Compare plans and limits",
        "workflow": "pricing",
        "parent": "pricing",
        "agent": "researcher",
        "depends_on": ["pricing-collect"],
        "session": "pricing-q3",
        "files_touched": ["research/pricing/comparison.md"],
        "path": "completed",
        "result_summary": "Comparison table of 3 competitors x 4 plans.",
        "runs": [_run("researcher", "completed", 7600, 2200, "0.002460")],
    },
    {
        "key": "pricing-archive",
        "title": "Scrape archived pricing from 2023",
        "workflow": "pricing",
        "parent": "pricing",
        "agent": "researcher",
        "session": "pricing-q3",
        "path": "cancelled",
        "result_summary": "Dropped: current prices answer the question.",
    },
    {
        "key": "dependency-audit",
        "title": "Nightly dependency audit",
        "agent": "tool-runner",
        "priority": -5,
        "session": "nightly",
        "path": "failed",
        "error": "pip-audit could not reach the advisory database (timeout, 30 s).",
        "runs": [
            _run(
                "tool-runner",
                "failed",
                0,
                0,
                "0",
                error="Timeout after 30 s.",
            )
        ],
    },
)


def _msg(key: str, role: str, content: str = "", **kw) -> dict[str, Any]:
    return {"key": key, "role": role, "content": content, **kw}


def _call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


CONVERSATIONS: tuple[dict[str, Any], ...] = (
    {
        "key": "release-planning",
        "title": "Planning release 2.3",
        "task": "release-plan",
        "participants": ["orchestrator", "planner", "tool-runner"],
        "metadata": {"channel": "internal"},
        "messages": [
            _msg("system", "system", "You plan software releases. Be concise."),
            _msg(
                "ask",
                "user",
                "Plan the 2.3 release: what must ship, and in what order?",
            ),
            _msg(
                "search",
                "assistant",
                sender="planner",
                model="gpt-4o",
                tool_calls=[_call("call_1", "search_issues", '{"milestone": "2.3"}')],
                prompt_tokens=812,
                completion_tokens=41,
                cost="0.002440",
                latency_ms=930.0,
                reply_to="ask",
            ),
            _msg(
                "issues",
                "tool",
                '[{"id": 1398, "title": "Split names"}, '
                '{"id": 1411, "title": "Changelog"}]',
                sender="tool-runner",
                tool_call_id="call_1",
                latency_ms=210.0,
                reply_to="search",
            ),
            _msg(
                "plan",
                "assistant",
                "1. Data migration (#1398). 2. Release notes (#1411). "
                "3. Review the migration. 4. Tag and publish.",
                sender="planner",
                model="gpt-4o",
                prompt_tokens=1304,
                completion_tokens=96,
                cached_tokens=812,
                cost="0.004220",
                latency_ms=1840.0,
                reply_to="ask",
            ),
            _msg(
                "ack",
                "assistant",
                "Approved. Queuing the four subtasks.",
                sender="orchestrator",
                model="claude-sonnet-4",
                prompt_tokens=1480,
                completion_tokens=18,
                cost="0.004710",
                latency_ms=720.0,
                reply_to="plan",
            ),
        ],
    },
    {
        "key": "bug-debugging",
        "title": "Debugging the login timeout",
        "task": "bug-patch",
        "participants": ["coder", "tool-runner", "reviewer"],
        "messages": [
            _msg("system", "system", "You fix bugs. Run the tests before replying."),
            _msg(
                "run-tests",
                "assistant",
                sender="coder",
                model="claude-sonnet-4",
                tool_calls=[
                    _call("call_7", "run_tests", '{"path": "tests/auth/"}'),
                ],
                prompt_tokens=4210,
                completion_tokens=35,
                cost="0.013150",
                latency_ms=1120.0,
            ),
            _msg(
                "test-output",
                "tool",
                "FAILED tests/auth/test_session.py::test_refresh_after_idle - "
                "expected 200, got 401\n1 failed, 212 passed in 48.2s",
                sender="tool-runner",
                tool_call_id="call_7",
                latency_ms=48213.0,
                reply_to="run-tests",
            ),
            _msg(
                "diagnosis",
                "assistant",
                "The refresh compares against the expired access token's "
                "expiry instead of the refresh token's.",
                sender="coder",
                model="claude-sonnet-4",
                prompt_tokens=4690,
                completion_tokens=210,
                cached_tokens=4096,
                cost="0.017220",
                latency_ms=2650.0,
                reply_to="test-output",
            ),
            _msg(
                "review",
                "assistant",
                "The patch drops the clock-skew allowance; please keep it.",
                sender="reviewer",
                model="gpt-4o",
                prompt_tokens=2980,
                completion_tokens=64,
                cost="0.008090",
                latency_ms=1510.0,
                reply_to="diagnosis",
            ),
        ],
    },
    {
        "key": "pricing-notes",
        "title": "Pricing comparison",
        "task": "pricing-compare",
        "participants": ["researcher", "orchestrator"],
        "messages": [
            _msg("ask", "user", "Compare the entry plans of our three competitors."),
            _msg(
                "search",
                "assistant",
                sender="researcher",
                model="gpt-4o-mini",
                tool_calls=[
                    _call("call_a", "web_search", '{"q": "acme pricing"}'),
                    _call("call_b", "web_search", '{"q": "globex pricing"}'),
                ],
                prompt_tokens=640,
                completion_tokens=52,
                cost="0.000130",
                latency_ms=640.0,
                reply_to="ask",
            ),
            _msg(
                "result-a",
                "tool",
                "Acme: Starter $25/month, 3 seats.",
                tool_call_id="call_a",
                latency_ms=1320.0,
                reply_to="search",
            ),
            _msg(
                "result-b",
                "tool",
                "Globex: Basic $33/month, 5 seats.",
                tool_call_id="call_b",
                latency_ms=1410.0,
                reply_to="search",
            ),
            _msg(
                "summary",
                "assistant",
                "Entry plans run $25-$33/month (median $29); ours is $35.",
                sender="researcher",
                model="gpt-4o-mini",
                prompt_tokens=1890,
                completion_tokens=140,
                cost="0.000370",
                latency_ms=1980.0,
                reply_to="ask",
            ),
            _msg(
                "thanks",
                "assistant",
                "Thanks; that answers it.",
                sender="orchestrator",
                model="claude-sonnet-4",
                prompt_tokens=2100,
                completion_tokens=9,
                cost="0.006440",
                latency_ms=540.0,
                reply_to="summary",
            ),
        ],
    },
)

CUSTOM_EVENTS: tuple[dict[str, Any], ...] = (
    {
        "key": "preview",
        "kind": "deploy.preview_ready",
        "task": "release-notes",
        "actor": "tool-runner",
        "payload": {"url": "https://preview.example.com/2.3/"},
    },
    {
        "key": "approval",
        "kind": "human.approval_requested",
        "task": "release-migration",
        "actor": "coder",
        "payload": {"approver": "release-manager", "reason": "schema change"},
    },
    {
        "key": "ci-failed",
        "kind": "ci.failed",
        "task": "bug-patch",
        "conversation": "bug-debugging",
        "actor": "tool-runner",
        "payload": {"pipeline": "auth", "failed": 1, "passed": 212},
    },
    {
        "key": "budget",
        "kind": "budget.warning",
        "actor": "orchestrator",
        "payload": {"spent_usd": "4.20", "limit_usd": "5.00"},
    },
)

AUDIT_RECORDS: tuple[dict[str, Any], ...] = (
    {
        "key": "run-tests",
        "action": AuditAction.TOOL_INVOKE,
        "actor": "tool-runner",
        "target": "run_tests",
        "task": "bug-patch",
        "success": False,
        "duration_ms": 48213.0,
        "error": "1 failed, 212 passed",
        "details": {"command": "pytest tests/auth/", "exit_code": 1},
    },
    {
        "key": "web-search",
        "action": AuditAction.TOOL_INVOKE,
        "actor": "researcher",
        "target": "web_search",
        "task": "pricing-collect",
        "duration_ms": 1320.0,
        "details": {"query": "acme pricing", "results": 8},
    },
    {
        "key": "write-session",
        "action": AuditAction.FILE_WRITE,
        "actor": "coder",
        "target": "src/auth/session.py",
        "task": "bug-patch",
        "duration_ms": 3.2,
        "details": {"bytes": 2381, "lines_changed": 14},
    },
    {
        "key": "write-comparison",
        "action": AuditAction.FILE_WRITE,
        "actor": "researcher",
        "target": "research/pricing/comparison.md",
        "task": "pricing-compare",
        "duration_ms": 1.1,
        "details": {"bytes": 5120},
    },
)


class Command(BaseCommand):
    help = (
        "Load demo agents, workflows, tasks in every status, runs, conversations "
        "and audit records. Idempotent: a second run writes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--project",
            default=DEFAULT_PROJECT_SLUG,
            help=f"Project slug (default: {DEFAULT_PROJECT_SLUG}).",
        )

    def handle(self, *args, **options):
        slug = options["project"]
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"No project {slug!r}; run migrate or create_project.")
        seeder = _Seeder(project)
        try:
            with transaction.atomic():
                seeder.seed()
        except ServiceError as exc:
            raise CommandError(f"Seeding failed: {exc.message}") from exc
        except IntegrityError as exc:
            raise CommandError(f"Seeding failed: {exc}") from exc
        parts = [
            f"{seeder.total[kind]} {kind} ({seeder.created[kind]} new)"
            for kind in seeder.total
        ]
        self.stdout.write(f"Demo data in project {slug!r}: {', '.join(parts)}.")
        if seeder.kept:
            self.stdout.write(
                f"{seeder.kept} demo objects changed since they were seeded "
                "were left as they are."
            )


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
            # Someone changed the demo object (API, admin): a repeated create
            # no longer matches it. Demo data must not fail `make run`.
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
