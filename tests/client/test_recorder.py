"""The Recorder: its outbox, its sender, and their guarantees, against a real
daphne that is killed and restarted under it."""

from __future__ import annotations

import json
import logging
import multiprocessing
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from ingest import serializers as ingest_serializers
from swarmsite_client import Client, OutboxFull, Recorder
from swarmsite_client.outbox import Outbox
from swarmsite_client.recorder import items as recorder_items
from tests.client.recorder_child import item_id
from tests.utils import sqlite_only

CHILD = Path(__file__).with_name("recorder_child.py")
DEAD_URL = "http://127.0.0.1:9"  # nothing listens there


def test_the_recorder_knows_the_item_types_the_server_takes():
    assert recorder_items.ITEM_TYPES == ingest_serializers.ITEM_TYPES


def _open_and_append(path: str, barrier) -> None:
    barrier.wait()
    Outbox(path).append("event", None, "{}")


def test_processes_opening_one_new_outbox_at_once_all_open_it(tmp_path):
    # While one process creates the file, SQLite answered another's switch
    # to WAL "database is locked" at once, without waiting (a CI failure).
    fork = multiprocessing.get_context("fork")
    for round_ in range(20):
        path = str(tmp_path / f"outbox{round_}.sqlite3")
        barrier = fork.Barrier(6)
        processes = [
            fork.Process(target=_open_and_append, args=(path, barrier))
            for _ in range(6)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
        assert [p.exitcode for p in processes] == [0] * 6, f"round {round_}"
        assert Outbox(path).pending_count() == 6


def test_record_calls_return_at_once_and_keep_items_while_the_server_is_away(
    tmp_path,
):
    outbox = tmp_path / "outbox.sqlite3"
    recorder = Recorder(DEAD_URL, "key", outbox=outbox)
    started = time.monotonic()
    ids = [recorder.event("test.away", payload={"n": n}) for n in range(500)]
    assert time.monotonic() - started < 2
    assert len(set(ids)) == 500
    assert recorder.flush(0.3) is False
    stats = recorder.stats()
    assert stats["pending"] == 500 and stats["sent"] == 0
    assert stats["last_error"] and "Connect" in stats["last_error"]
    assert recorder.close(0.1) is False
    with pytest.raises(RuntimeError):
        recorder.event("test.after_close")
    reopened = Recorder(DEAD_URL, "key", outbox=outbox, start=False)
    assert reopened.stats()["pending"] == 500  # kept in the file
    reopened.close(0)


def test_a_full_outbox_drops_new_items_counts_and_logs_them(tmp_path, caplog):
    recorder = Recorder(DEAD_URL, "key", outbox=tmp_path / "o.sqlite3", max_items=10)
    with caplog.at_level(logging.WARNING, "swarmsite_client.recorder"):
        for n in range(15):
            recorder.event("test.full", payload={"n": n})
    stats = recorder.stats()
    assert (stats["pending"], stats["dropped"]) == (10, 5)
    assert any("Outbox full" in r.getMessage() for r in caplog.records)
    strict = Recorder(DEAD_URL, "key", max_items=2, on_full="raise")
    strict.event("test.full")
    strict.event("test.full")
    with pytest.raises(OutboxFull):
        strict.event("test.full")
    recorder.close(0)
    strict.close(0)


def test_unserialisable_data_fails_the_record_call_not_the_sender():
    recorder = Recorder(DEAD_URL, "key")
    with pytest.raises(TypeError):
        recorder.event("test.bad", payload={"x": object()})
    assert recorder.stats()["pending"] == 0
    recorder.close(0)


def _events(client: Client, kind: str) -> list[dict]:
    return list(client.events.list(kind=kind, page_size=500))


@pytest.mark.slow
def test_memory_only_recorder_sends_in_order_in_bounded_batches(live, client):
    kind = f"test.mem.{uuid.uuid4().hex[:6]}"
    recorder = Recorder(live.url, live.key, batch_items=100, batch_interval=0.2)
    ids = [recorder.event(kind, payload={"n": n}) for n in range(450)]
    assert recorder.flush(30) is True
    stats = recorder.stats()
    recorder.close()
    assert (stats["pending"], stats["sent"], stats["dead"]) == (0, 450, 0)
    assert stats["batches"] >= 5
    assert [e["id"] for e in _events(client, kind)] == ids  # in order


@pytest.mark.slow
def test_refused_items_become_dead_letters_that_can_be_sent_again(live, client):
    recorder = Recorder(live.url, live.key)
    conversation = str(uuid.uuid4())
    message = recorder.message(conversation, role="user", content="early")
    kind = f"test.dead.{uuid.uuid4().hex[:6]}"
    after = recorder.event(kind)
    assert recorder.flush(30) is True
    [dead] = recorder.dead_letters()
    assert (dead["type"], dead["id"]) == ("message", message)
    assert dead["error"]["code"] == "validation_error"
    assert "conversation" in json.dumps(dead["error"])
    assert recorder.stats()["dead"] == 1
    assert [e["id"] for e in _events(client, kind)] == [after]  # not held back

    client.conversations.create(id=conversation, title="Late")
    assert recorder.resend_dead_letters() == 1
    assert recorder.flush(30) is True
    recorder.close()
    [stored] = client.conversations.messages(conversation, fields="full")
    assert (stored["id"], stored["content"]) == (message, "early")


@pytest.mark.slow
def test_tracked_blocks_record_running_then_completed_or_failed(live, client):
    recorder = Recorder(live.url, live.key)
    session = uuid.uuid4().hex
    with recorder.track_task("Works", session_id=session) as work:
        work.progress(40)
        work.summary = "done well"

    @recorder.track_task(session_id=session)
    def breaks() -> None:
        raise KeyError("missing input")

    with pytest.raises(KeyError):
        breaks()
    agent = recorder.agent(f"tracker-{session[:6]}")
    with recorder.track_run(task=work.id, agent=agent) as run:
        pass
    assert recorder.flush(30) is True
    assert recorder.dead_letters() == []
    recorder.close()
    tasks = {t["title"]: t for t in client.tasks.list(session_id=session)}
    assert tasks["Works"]["status"] == "completed"
    assert tasks["Works"]["result_summary"] == "done well"
    assert tasks["Works"]["progress"] == 100  # completion sets it
    failed = tasks["test_tracked_blocks_record_running_then_completed_or_failed"
                   ".<locals>.breaks"]  # fmt: skip
    assert failed["status"] == "failed" and "missing input" in failed["error"]
    assert client.runs.get(run.id)["status"] == "completed"


@pytest.mark.slow
@sqlite_only  # the Recorder is the same whatever the server's database
def test_20000_mixed_items_arrive_exactly_once_through_five_server_kills(
    live, client, tmp_path
):
    run_tag = uuid.uuid4().hex[:8]
    session, kind, action = f"mix-{run_tag}", f"test.mix.{run_tag}", f"mix.{run_tag}"
    recorder = Recorder(
        live.url, live.key, outbox=tmp_path / "mix.sqlite3", max_backoff=0.5
    )
    worker = recorder.agent(f"mix-worker-{run_tag}", role="worker")
    conversations = [recorder.conversation(title=f"mix {n}") for n in range(20)]
    expected: dict[str, list[str]] = {"task": [], "event": [], "audit": [], "run": []}
    messages: dict[str, list[str]] = {c: [] for c in conversations}
    # Per unit 200 items: a task's lifecycle and a run (4 updates, which the
    # server applies one by one) and 194 creates it writes in bulk (a run of
    # items of one type is one bulk write, so they come in runs).
    units = 100

    def record() -> None:
        for n in range(units):
            task = recorder.task(f"unit {n}", session_id=session)
            recorder.transition(task, "running")
            recorder.progress(task, 50)
            conversation = conversations[n % 20]
            for turn in range(64):
                messages[conversation].append(
                    recorder.message(
                        conversation,
                        role="assistant" if turn % 2 else "user",
                        content=f"{n}.{turn}",
                        sender=worker,
                    )
                )
            for _ in range(65):
                expected["event"].append(recorder.event(kind, task=task))
            for _ in range(65):
                expected["audit"].append(recorder.audit(action, target=task))
            run = recorder.run(task=task, agent=worker, status="running")
            recorder.run_update(run, status="completed", prompt_tokens=3)
            recorder.transition(task, "completed", result={"n": n})
            expected["task"].append(task)
            expected["run"].append(run)
            time.sleep(0.04)  # spread the recording over the kills

    recording = threading.Thread(target=record)
    recording.start()
    kills = 0
    while kills < 5:
        time.sleep(0.7)
        live.kill()
        kills += 1
        time.sleep(0.3)
        live.restart()
    recording.join(120)
    assert recorder.flush(120) is True
    stats = recorder.stats()
    recorder.close()
    assert (stats["pending"], stats["dead"], stats["dropped"]) == (0, 0, 0)

    tasks = list(client.tasks.list(session_id=session, fields="full", page_size=500))
    assert sorted(t["id"] for t in tasks) == sorted(expected["task"])
    assert {(t["status"], t["progress"], t["version"]) for t in tasks} == {
        ("completed", 100, tasks[0]["version"])
    }
    assert [e["id"] for e in _events(client, kind)] == expected["event"]
    audits = client.audit_logs.list(action=action, page_size=500)
    assert sorted(a["id"] for a in audits) == sorted(expected["audit"])
    runs = list(client.runs.list(agent=worker, page_size=500))
    assert sorted(r["id"] for r in runs) == sorted(expected["run"])
    assert {(r["status"], r["prompt_tokens"]) for r in runs} == {("completed", 3)}
    for conversation, ids in messages.items():
        stored = list(client.conversations.messages(conversation, page_size=500))
        assert [m["id"] for m in stored] == ids
        assert [m["seq"] for m in stored] == list(range(1, len(ids) + 1))


def _child(live, outbox: Path, prefix: str, count: int, mode: str):
    return subprocess.Popen(
        [sys.executable, str(CHILD), live.url, live.key, str(outbox), prefix,
         str(count), mode],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip


@pytest.mark.slow
def test_a_killed_recording_process_leaves_its_items_to_the_next_recorder(
    live, client, tmp_path
):
    outbox = tmp_path / "shared.sqlite3"
    prefix = uuid.uuid4().hex[:8]
    live.kill()  # nothing can be sent: everything recorded waits in the file
    child = _child(live, outbox, prefix, 5000, "slow")
    last = 0
    for line in child.stdout:
        last = int(line.split()[1])
        if last >= 300:
            break
    child.kill()
    child.wait(10)
    live.restart()

    recorder = Recorder(live.url, live.key, outbox=outbox)
    assert recorder.flush(60) is True
    recorder.close()
    stored = [e["id"] for e in _events(client, f"test.child.{prefix}")]
    # Every item the child recorded, once, in order: a prefix of its ids.
    assert len(stored) > last
    assert stored == [item_id(prefix, n) for n in range(len(stored))]


@pytest.mark.slow
def test_two_processes_on_one_outbox_send_nothing_twice(live, client, tmp_path):
    outbox = tmp_path / "shared.sqlite3"
    prefixes = [uuid.uuid4().hex[:8] for _ in range(2)]
    children = [_child(live, outbox, p, 3000, "flush") for p in prefixes]
    reports = []
    for child in children:
        out, _ = child.communicate(timeout=120)
        reports.append(json.loads(out.strip().splitlines()[-1]))
    assert all(r["flushed"] for r in reports), reports
    # One sender at a time: the two together sent each item once.
    assert sum(r["sent"] for r in reports) == 6000, reports
    assert sum(r["duplicates"] for r in reports) == 0, reports
    for prefix in prefixes:
        stored = [e["id"] for e in _events(client, f"test.child.{prefix}")]
        assert stored == [item_id(prefix, n) for n in range(3000)]
