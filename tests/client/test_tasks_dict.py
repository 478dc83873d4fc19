"""TasksDict: a program written for `TASKS = {}` against a real daphne."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from swarmsite_client import IllegalTransition, TasksDict
from swarmsite_client.recorder import derived_id
from swarmsite_client.tasks_dict import status_path

SCRIPT = Path(__file__).with_name("legacy_tasks_script.py")


def test_status_path_walks_the_lifecycle_by_legal_steps():
    assert status_path("pending", "completed") == ["running", "completed"]
    assert status_path("pending", "queued") == ["queued"]
    assert status_path("queued", "failed") == ["running", "failed"]
    assert status_path("waiting", "completed") == ["running", "completed"]
    assert status_path("failed", "completed") == ["queued", "running", "completed"]
    assert status_path("running", "running") == []
    with pytest.raises(IllegalTransition):
        status_path("completed", "running")


@pytest.mark.slow
def test_a_program_written_for_a_dict_runs_unchanged_and_leaves_its_history(
    live, client
):
    prefix = uuid.uuid4().hex[:8]
    env = {**os.environ, "SWARMSITE_URL": live.url, "SWARMSITE_API_KEY": live.key}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), prefix],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])

    assert report["keys"] == sorted(
        [f"{prefix}-late", *(f"{prefix}-step-{n}" for n in range(3))]
    )
    assert report["in"] is True and report["not_in"] is False
    assert report["get_default"] == "absent"
    assert report["len_at_least"] >= 4
    assert report["completed"] == [f"{prefix}-late", f"{prefix}-step-0",
                                   f"{prefix}-step-1"]  # fmt: skip
    step0 = report["tasks"][f"{prefix}-step-0"]
    assert step0 == {
        "description": "Step 0 of the plan",
        "status": "completed",
        "progress": 100,
        "agents_involved": ["planner"],
        "results": {"answer": 0},
        "summary": "",
        "session_id": prefix,
        "reviewer": None,
    }
    step2 = report["tasks"][f"{prefix}-step-2"]
    assert (step2["status"], step2["summary"]) == ("failed", "ran out of budget")
    assert report["tasks"][f"{prefix}-late"]["reviewer"] == "alice"

    # On the server: the tasks, under ids derived from their keys, with
    # every step of their history.
    stored = client.tasks.get(derived_id("task", f"{prefix}-step-0"))
    assert stored["status"] == "completed" and stored["result"] == {"answer": 0}
    assert stored["key"] == f"{prefix}-step-0"
    assert [t["id"] for t in client.tasks.list(key=f"{prefix}-step-0")] == [
        stored["id"]
    ]
    changes = [
        (e["payload"]["from"], e["payload"]["to"])
        for e in client.tasks.events(stored["id"])
        if e["kind"] == "task.status_changed"
    ]
    assert changes == [("pending", "running"), ("running", "completed")]
    late = client.tasks.get(derived_id("task", f"{prefix}-late"))
    late_changes = [
        e["payload"]["to"]
        for e in client.tasks.events(late["id"])
        if e["kind"] == "task.status_changed"
    ]
    assert late_changes == ["running", "completed"]


@pytest.mark.slow
def test_reads_are_refreshed_by_the_event_stream_not_a_ttl(live, client):
    key = f"cached-{uuid.uuid4().hex[:8]}"
    # A TTL of an hour: only the stream can make the second read fresh.
    tasks = TasksDict(live.url, live.key, ttl=3600)
    other = TasksDict(live.url, live.key, live=False)
    try:
        tasks[key] = {"description": "Watched"}
        deadline = time.monotonic() + 20
        while time.monotonic() - tasks._stream_seen_at > 30:
            assert time.monotonic() < deadline, "the stream never connected"
            time.sleep(0.05)
        assert tasks[key]["status"] == "pending"
        other[key]["status"] = "running"
        deadline = time.monotonic() + 5
        while tasks[key]["status"] != "running":
            assert time.monotonic() < deadline, "the cache was never invalidated"
            time.sleep(0.02)
        assert key in tasks and tasks[key]["description"] == "Watched"
        del tasks[key]
        assert key not in tasks
        assert client.tasks.get(tasks.task_id(key))["status"] == "cancelled"
    finally:
        tasks.close()
        other.close()


@pytest.mark.slow
def test_filters_bound_iteration_and_defaults_go_to_new_tasks(live):
    run = uuid.uuid4().hex
    scoped = TasksDict(
        live.url, live.key, live=False, namespace=run,
        filters={"session_id": run}, defaults={"session_id": run},
    )  # fmt: skip
    try:
        scoped["a"] = {"description": "first"}
        scoped.update(b={"description": "second", "status": "queued"})
        assert len(scoped) == 2 and list(scoped) == ["a", "b"]
        assert scoped["b"]["status"] == "queued"
        assert scoped["a"]["session_id"] == run
        assert scoped.setdefault("a", {})["description"] == "first"
        assert scoped["a"]["key"] == f"{run}:a"  # namespaced on the server
    finally:
        scoped.close()
