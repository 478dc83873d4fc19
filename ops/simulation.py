"""A simulated swarm of agents writing through the HTTP API.

A planner splits goals into subtasks with dependencies; workers pick up the
subtasks whose dependencies are done, run them through the task lifecycle,
talk in conversations (with models, tokens and cost), call tools (audit
records `tool.invoke`), sometimes wait, sometimes fail and are retried. Run
it beside a server (`make demo` starts both, through `manage.py simulate`)
and watch the admin and the event streams come alive.

Every create carries a client-made id, so a request retried after a network
error never writes twice. Usage is reported once: messages carry their own
tokens, runs only the calls that no message records, because both roll up
into the task.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.utils import timezone

from ops.simulation_http import Api, ApiError

# Price per 1,000 prompt and completion tokens, in dollars.
MODELS = {
    "claude-sonnet-4": (Decimal("0.003"), Decimal("0.015")),
    "gpt-4o": (Decimal("0.0025"), Decimal("0.010")),
    "gemini-2.5-pro": (Decimal("0.00125"), Decimal("0.010")),
    "llama-3.1-70b": (Decimal("0.0009"), Decimal("0.0009")),
}
PLANNER_MODEL = "claude-sonnet-4"
GOALS = (
    "Summarise this week's customer feedback",
    "Fix the flaky checkout test",
    "Draft the release notes for 2.4",
    "Benchmark the new embedding model",
    "Migrate the billing reports to the new schema",
    "Triage the open security advisories",
    "Write onboarding docs for the ingest API",
    "Compare three vector databases for search",
)
STEPS = (
    "Collect the sources",
    "Read and extract the key facts",
    "Run the analysis",
    "Write a first draft",
    "Review the draft",
    "Check the numbers",
    "Publish the result",
)
TOOLS = ("web.search", "python.run", "file.read", "file.write", "shell.exec")
MAX_ATTEMPTS = 2
MAX_GOALS_IN_FLIGHT = 2


@dataclass(eq=False)
class SimTask:
    """What the simulation knows of one task it created."""

    id: str
    title: str
    parent: SimTask | None = None
    depends_on: list[SimTask] = field(default_factory=list)
    status: str = "pending"
    version: int = 1
    attempts: int = 0

    @property
    def ready(self) -> bool:
        return all(dep.status == "completed" for dep in self.depends_on)


@dataclass(eq=False)
class SimAgent:
    id: str
    name: str
    model: str


def _new_id() -> str:
    return str(uuid.uuid4())


class Swarm:
    """The planner and the workers, as generators that the scheduler steps.

    Each step makes at most one API call and yields True if it did, so the
    scheduler can pace the whole swarm at a steady request rate.
    """

    def __init__(
        self,
        api: Api,
        *,
        workers: int,
        goals: int,
        fail_rate: float,
        rng: random.Random,
        out: Any = None,
    ) -> None:
        self.api = api
        self.worker_count = workers
        self.goal_limit = goals
        self.fail_rate = fail_rate
        self.rng = rng
        self.out = out
        self.session = f"sim-{timezone.now():%Y%m%d-%H%M%S}"
        self.ready: deque[SimTask] = deque()
        self.counts: Counter[str] = Counter()
        self.goals_started = 0
        self.goals_finished = 0
        self.goals_in_flight = 0
        self.planner: SimAgent | None = None
        self.workers: list[SimAgent] = []

    # Helpers --------------------------------------------------------------

    def _usage(
        self, model: str, *, prompt: tuple[int, int], completion: tuple[int, int]
    ):
        prompt_tokens = self.rng.randint(*prompt)
        completion_tokens = self.rng.randint(*completion)
        in_price, out_price = MODELS[model]
        cost = (prompt_tokens * in_price + completion_tokens * out_price) / 1000
        return {
            "model": model,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "cached_tokens": self.rng.randint(0, prompt_tokens // 2),
            "cost": str(cost.quantize(Decimal("0.000001"))),
            "latency_ms": round(self.rng.uniform(300, 4000), 1),
        }

    def _messages(self, conversation: str, messages: list[dict]) -> None:
        for message in messages:
            message.setdefault("id", _new_id())
        self.api.post(f"/api/v1/conversations/{conversation}/messages/", messages)
        self.counts["messages"] += len(messages)

    def _transition(self, task: SimTask, status: str, **extra: Any) -> None:
        body = {"status": status, "expected_version": task.version, **extra}
        try:
            stored = self.api.post(f"/api/v1/tasks/{task.id}/transition/", body)
        except ApiError as exc:
            # A retried request whose first attempt went through: the stored
            # task already has the status asked for.
            if exc.status != 409:
                raise
            stored = self.api.get(f"/api/v1/tasks/{task.id}/")
            if stored["status"] != status:
                raise
        task.status = stored["status"]
        task.version = stored["version"]
        self.counts[f"transition.{status}"] += 1

    def _heartbeat(self, agent: SimAgent, status: str, **details: Any) -> None:
        self.api.post(
            f"/api/v1/agents/{agent.id}/heartbeat/",
            {"status": status, "details": details},
        )

    # Agents ---------------------------------------------------------------

    def register(self) -> None:
        """Register the planner and the workers (again: the same agents)."""
        planner = self.api.post(
            "/api/v1/agents/",
            {
                "name": "sim-planner",
                "role": "planner",
                "model": PLANNER_MODEL,
                "capabilities": ["plan", "review"],
            },
        )
        self.planner = SimAgent(planner["id"], planner["name"], PLANNER_MODEL)
        models = list(MODELS)
        for n in range(1, self.worker_count + 1):
            model = models[(n - 1) % len(models)]
            worker = self.api.post(
                "/api/v1/agents/",
                {
                    "name": f"sim-worker-{n}",
                    "role": "worker",
                    "model": model,
                    "parent": planner["id"],
                    "capabilities": self.rng.sample(TOOLS, 3),
                },
            )
            self.workers.append(SimAgent(worker["id"], worker["name"], model))
        self.counts["agents"] = 1 + len(self.workers)

    # Planner --------------------------------------------------------------

    @property
    def done(self) -> bool:
        return bool(self.goal_limit) and self.goals_finished >= self.goal_limit

    def plan(self) -> Iterator[bool]:
        """Start goals, at most a few at a time, until the limit."""
        goals: list[Iterator[bool]] = []
        while True:
            more = not self.goal_limit or self.goals_started < self.goal_limit
            if more and self.goals_in_flight < MAX_GOALS_IN_FLIGHT:
                self.goals_started += 1
                self.goals_in_flight += 1
                goals.append(self.goal(self.goals_started))
            if not goals:
                yield False
                continue
            current = goals.pop(0)
            try:
                did = next(current)
            except StopIteration:
                self.goals_in_flight -= 1
                self.goals_finished += 1
                continue
            goals.append(current)
            yield did

    def goal(self, number: int) -> Iterator[bool]:
        """One goal: plan it, split it, wait for the subtasks, conclude."""
        planner = self.planner
        title = self.rng.choice(GOALS)
        goal = SimTask(_new_id(), f"{title} (#{number})")
        self.api.post(
            "/api/v1/tasks/",
            {
                "id": goal.id,
                "title": goal.title,
                "description": f"Goal {number} of simulation {self.session}.",
                "session_id": self.session,
                "priority": self.rng.randint(0, 3),
                "assigned_agent": planner.id,
                "input": {"goal": title},
                "metadata": {"simulation": self.session},
            },
        )
        self.counts["tasks"] += 1
        yield True
        self._transition(goal, "running")
        yield True

        conversation = _new_id()
        self.api.post(
            "/api/v1/conversations/",
            {
                "id": conversation,
                "task": goal.id,
                "title": f"Planning: {goal.title}",
                "participants": [planner.id],
            },
        )
        self.counts["conversations"] += 1
        yield True
        steps = self.rng.sample(STEPS, self.rng.randint(2, 4))
        plan_text = "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
        self._messages(
            conversation,
            [
                {"role": "system", "content": "You plan work for a team of agents."},
                {"role": "user", "content": f"Goal: {title}"},
                {
                    "role": "assistant",
                    "sender": planner.id,
                    "content": f"Plan:\n{plan_text}",
                    **self._usage(
                        planner.model, prompt=(400, 1500), completion=(100, 400)
                    ),
                },
            ],
        )
        yield True

        subtasks: list[SimTask] = []
        for index, step in enumerate(steps):
            # Each step after the first waits for one or two earlier ones.
            deps = (
                self.rng.sample(subtasks, min(len(subtasks), self.rng.randint(1, 2)))
                if subtasks
                else []
            )
            subtask = SimTask(_new_id(), f"{step} for: {title}", goal, deps)
            self.api.post(
                "/api/v1/tasks/",
                {
                    "id": subtask.id,
                    "title": subtask.title,
                    "session_id": self.session,
                    "parent": goal.id,
                    "priority": len(steps) - index,
                    "depends_on": [d.id for d in deps],
                    "input": {"step": index + 1},
                    "metadata": {"simulation": self.session},
                },
            )
            self.counts["tasks"] += 1
            subtasks.append(subtask)
            yield True
        self.api.post(
            "/api/v1/events/",
            {
                "id": _new_id(),
                "kind": "plan.created",
                "task": goal.id,
                "payload": {"steps": len(steps), "session": self.session},
            },
        )
        self.counts["custom_events"] += 1
        yield True

        while True:
            # Failed for good: a failed attempt that will not be retried.
            failed = [
                t
                for t in subtasks
                if t.status == "failed" and t.attempts >= MAX_ATTEMPTS
            ]
            if failed:
                break
            if all(t.status == "completed" for t in subtasks):
                break
            for subtask in subtasks:
                if subtask.status == "pending" and subtask.ready:
                    self._transition(subtask, "queued")
                    self.ready.append(subtask)
                    yield True
            yield False

        if failed:
            for subtask in subtasks:
                # A queued subtask that a worker already took is left to it.
                if subtask.status == "pending" or subtask in self.ready:
                    if subtask in self.ready:
                        self.ready.remove(subtask)
                    self._transition(subtask, "cancelled")
                    yield True
            self._transition(goal, "failed", error=f"Step failed: {failed[0].title}")
            self.counts["goals_failed"] += 1
            yield True
            return
        self._messages(
            conversation,
            [
                {
                    "role": "assistant",
                    "sender": planner.id,
                    "content": f"All {len(steps)} steps are done.",
                    **self._usage(
                        planner.model, prompt=(800, 3000), completion=(50, 200)
                    ),
                }
            ],
        )
        yield True
        self._transition(
            goal,
            "completed",
            result={"steps": len(steps)},
            result_summary=f"{title}: done in {len(steps)} steps.",
        )
        self.counts["goals_completed"] += 1
        yield True

    # Workers --------------------------------------------------------------

    def work(self, agent: SimAgent) -> Iterator[bool]:
        """Take ready subtasks one at a time and run them."""
        beat = 0.0
        while True:
            if not self.ready:
                if time.monotonic() - beat > 5:
                    beat = time.monotonic()
                    self._heartbeat(agent, "idle")
                    yield True
                else:
                    yield False
                continue
            task = self.ready.popleft()
            yield from self.run_task(agent, task)
            beat = 0.0

    def run_task(self, agent: SimAgent, task: SimTask) -> Iterator[bool]:
        """One attempt of `agent` at `task`, from queued to an outcome."""
        planner = self.planner
        task.attempts += 1
        stored = self.api.patch(
            f"/api/v1/tasks/{task.id}/", {"assigned_agent": agent.id}
        )
        task.version = stored["version"]
        yield True
        run = _new_id()
        self.api.post(
            "/api/v1/runs/",
            {
                "id": run,
                "task": task.id,
                "agent": agent.id,
                "status": "running",
                "model": agent.model,
            },
        )
        self.counts["runs"] += 1
        yield True
        self._transition(task, "running")
        yield True
        self._heartbeat(agent, "busy", task=task.id)
        yield True

        conversation = _new_id()
        self.api.post(
            "/api/v1/conversations/",
            {
                "id": conversation,
                "task": task.id,
                "title": f"{agent.name}: {task.title}",
                "participants": [agent.id, planner.id],
            },
        )
        self.counts["conversations"] += 1
        yield True
        self._messages(
            conversation,
            [
                {"role": "system", "content": f"You are {agent.name}, a worker."},
                {
                    "role": "user",
                    "sender": planner.id,
                    "content": f"Please do: {task.title}",
                },
            ],
        )
        yield True

        calls = self.rng.randint(1, 3)
        for step in range(1, calls + 1):
            tool = self.rng.choice(TOOLS)
            call_id = f"call_{uuid.uuid4().hex[:12]}"
            self._messages(
                conversation,
                [
                    {
                        "role": "assistant",
                        "sender": agent.id,
                        "content": "",
                        "tool_calls": [
                            {
                                "id": call_id,
                                "type": "function",
                                "function": {
                                    "name": tool,
                                    "arguments": json.dumps({"step": step}),
                                },
                            }
                        ],
                        **self._usage(
                            agent.model, prompt=(300, 2500), completion=(20, 200)
                        ),
                    }
                ],
            )
            yield True
            ok = self.rng.random() > 0.1
            duration = round(self.rng.uniform(20, 1500), 1)
            self.api.post(
                "/api/v1/audit-logs/",
                {
                    "id": _new_id(),
                    "action": "tool.invoke",
                    "target": tool,
                    "success": ok,
                    "duration_ms": duration,
                    "error": "" if ok else f"{tool} timed out",
                    "details": {"task": task.id, "agent": agent.id, "call": call_id},
                },
            )
            self.counts["tool_calls"] += 1
            yield True
            self._messages(
                conversation,
                [
                    {
                        "role": "tool",
                        "tool_call_id": call_id,
                        "content": f"{tool} returned {self.rng.randint(1, 90)} items"
                        if ok
                        else f"{tool} timed out",
                    }
                ],
            )
            yield True
            if self.rng.random() < 0.2:
                # Blocked on a slow tool (or a human) for a moment.
                self._transition(task, "waiting")
                yield True
                self._transition(task, "running")
                yield True
            self.api.post(
                f"/api/v1/tasks/{task.id}/progress/",
                {"progress": int(100 * step / (calls + 1))},
            )
            yield True

        internal = self._usage(agent.model, prompt=(50, 300), completion=(10, 80))
        run_usage = {k: internal[k] for k in ("prompt_tokens", "completion_tokens")}
        run_usage["cost"] = internal["cost"]
        if self.rng.random() < self.fail_rate:
            error = self.rng.choice(
                ("Tool kept timing out", "Model refused", "Context too long")
            )
            self.api.patch(
                f"/api/v1/runs/{run}/",
                {"status": "failed", "error": error, **run_usage},
            )
            yield True
            self._transition(task, "failed", error=error)
            self.counts["failures"] += 1
            yield True
            if task.attempts < MAX_ATTEMPTS:
                self._transition(task, "queued")
                self.counts["retries"] += 1
                self.ready.append(task)
                yield True
            self._heartbeat(agent, "idle")
            yield True
            return

        summary = f"{task.title}: done by {agent.name}."
        self._messages(
            conversation,
            [
                {
                    "role": "assistant",
                    "sender": agent.id,
                    "content": summary,
                    **self._usage(
                        agent.model, prompt=(500, 3000), completion=(80, 600)
                    ),
                }
            ],
        )
        yield True
        self.api.patch(
            f"/api/v1/runs/{run}/",
            {"status": "completed", "output_summary": summary, **run_usage},
        )
        yield True
        self._transition(task, "completed", result={"ok": True}, result_summary=summary)
        yield True
        self._heartbeat(agent, "idle")
        yield True

    # Scheduler ------------------------------------------------------------

    def progress(self) -> str:
        counts = self.counts
        return (
            f"{self.goals_started} goals ({counts['goals_completed']} completed, "
            f"{counts['goals_failed']} failed), {counts['tasks']} tasks, "
            f"{counts['transition.completed']} completions, "
            f"{counts['failures']} failures, {counts['messages']} messages, "
            f"{counts['tool_calls']} tool calls"
        )

    def run(self, *, rate: float, duration: float, report_every: float = 0) -> str:
        """Step every actor round-robin at about `rate` calls per second.

        Prints a progress line every `report_every` seconds (0: never) and
        returns why it stopped.
        """
        actors = [self.plan()] + [self.work(w) for w in self.workers]
        interval = 1 / rate if rate > 0 else 0
        started = time.monotonic()
        deadline = started + duration if duration > 0 else None
        next_call = next_report = started
        while True:
            idle = True
            if report_every and time.monotonic() >= next_report + report_every:
                next_report = time.monotonic()
                self.out.write(f"[{next_report - started:5.0f} s] {self.progress()}")
            for actor in actors:
                if self.done:
                    return f"{self.goals_finished} goals finished"
                if deadline is not None and time.monotonic() >= deadline:
                    return f"{duration:g} seconds passed"
                wait = next_call - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if next(actor):
                    idle = False
                    next_call = max(next_call + interval, time.monotonic())
            if idle:
                time.sleep(0.05)
