"""The demo data of `manage.py seed_demo`, as plain structures.

Objects refer to each other by key (agent name, task key, message key);
`ops.demo` turns the keys into fixed ids and creates the objects through the
domain services. Lists are ordered so that whatever an entry names comes
before it.
"""

from __future__ import annotations

from typing import Any

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
        "action": "tool.invoke",
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
        "action": "tool.invoke",
        "actor": "researcher",
        "target": "web_search",
        "task": "pricing-collect",
        "duration_ms": 1320.0,
        "details": {"query": "acme pricing", "results": 8},
    },
    {
        "key": "write-session",
        "action": "file.write",
        "actor": "coder",
        "target": "src/auth/session.py",
        "task": "bug-patch",
        "duration_ms": 3.2,
        "details": {"bytes": 2381, "lines_changed": 14},
    },
    {
        "key": "write-comparison",
        "action": "file.write",
        "actor": "researcher",
        "target": "research/pricing/comparison.md",
        "task": "pricing-compare",
        "duration_ms": 1.1,
        "details": {"bytes": 5120},
    },
)
