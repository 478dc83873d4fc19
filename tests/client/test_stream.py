"""`client.events.follow()` and the `tail` command against a real daphne."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid

import pytest

from swarmsite_client import Client, StreamClosed
from swarmsite_client.__main__ import describe

pytestmark = pytest.mark.slow


def test_follow_across_a_server_kill_ends_with_exactly_the_databases_sequence(live):
    client = Client(live.url, live.key)
    task = client.tasks.create(title="Followed")["id"]
    seen: list[int] = []
    done = threading.Event()
    total = 120

    def follow() -> None:
        with Client(live.url, live.key) as reader:
            for event in reader.events.follow(after=0, task=task):
                seen.append(event["position"])
                if len(seen) >= total + 1:  # task.created + the events below
                    done.set()
                    return

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    for n in range(total):
        # Writes go on through the restart: the client retries them.
        client.events.create(kind="test.follow", task=task, payload={"n": n})
        if n == 40:
            live.kill()
            live.restart()
    assert done.wait(60), f"{len(seen)} events seen"
    stored = [e["position"] for e in client.events.list(task=task)]
    client.close()
    assert len(stored) == total + 1
    assert seen == stored


def test_follow_refuses_a_bad_key_at_once(live):
    with Client(live.url, "ss_bad_key") as stranger, pytest.raises(StreamClosed):
        next(stranger.events.follow())


def test_tail_prints_one_readable_line_per_event(live, client):
    task = client.tasks.create(title="Tailed")["id"]
    client.tasks.transition(task, status="running")
    tail = subprocess.Popen(
        [sys.executable, "-m", "swarmsite_client", "tail", "--after", "0",
         "--task", task, "--url", live.url, "--api-key", live.key],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        lines = [tail.stdout.readline() for _ in range(2)]
    finally:
        tail.kill()
        tail.wait(10)
    assert "task.created" in lines[0] and f"task={task[:8]}" in lines[0]
    assert "task.status_changed" in lines[1] and "pending -> running" in lines[1]


def test_describe_fits_an_event_on_one_line():
    line = describe(
        {
            "position": 7,
            "kind": "message.created",
            "occurred_at": "2026-12-01T10:00:00.123456Z",
            "actor": {"type": "agent", "label": "planner"},
            "conversation": str(uuid.uuid4()),
            "payload": {"role": "assistant", "text": "x" * 500},
        }
    )
    assert "\n" not in line and len(line) < 260
    assert line.split()[0] == "7" and "by planner" in line


def test_follow_starts_live_with_after_none(live, client):
    kind = f"test.live.{uuid.uuid4().hex[:6]}"
    client.events.create(kind=kind)  # before the follower: not yielded
    got: list[dict] = []

    def follow() -> None:
        with Client(live.url, live.key) as reader:
            for event in reader.events.follow(after=None, kind=kind):
                got.append(event)
                return

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    time.sleep(1.0)
    later = client.events.create(kind=kind)
    follower.join(15)
    assert [e["id"] for e in got] == [later["id"]]
