"""Ingest through PostgreSQL crashes: 503 while it is down, nothing lost.

The test starts a PostgreSQL cluster of its own (initdb on a free port in a
temporary folder; the machine's shared server is never touched), migrates
it, and runs daphne on it. Retrying clients (same batch, same ids, until
200) write tasks, events and messages while the cluster is crashed with
`pg_ctl stop -m immediate` and started again five times.

It runs in the PostgreSQL pass of CI only: the cluster is its own, so the
suite's database does not matter, and once is enough (about a minute).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter

import pytest

from tests.e2e.stack import (
    Answer,
    Daphne,
    PostgresCluster,
    RetryingIngest,
    base_env,
    manage,
    postgres_binaries,
    prepare,
)
from tests.utils import postgres_only

pytestmark = [pytest.mark.slow, postgres_only]

CRASHES = 5
CLIENTS = 3
UP_SECONDS = 2.5
# Well over a request's wait for a pooled connection (DATABASE_POOL_TIMEOUT,
# 3 s), so requests made while the database is down are answered in it.
DOWN_SECONDS = 7.0
RECOVERY_LIMIT = 5.0


class Writer(threading.Thread):
    """Sends batches of new tasks, events and messages until told to stop.

    Each batch is resent unchanged until it is answered; what was
    acknowledged (200) is kept by type.
    """

    def __init__(self, port: int, key: str, number: int) -> None:
        super().__init__(daemon=True)
        self.client = RetryingIngest(
            port, key, timeout=30, pause=0.1, max_wait=1.0, give_up_after=60
        )
        self.number = number
        self.conversation = str(uuid.uuid4())
        self.acked: dict[str, list[str]] = {"task": [], "event": [], "message": []}
        self.finals: list[Answer] = []
        self.stop = threading.Event()
        self.failure: BaseException | None = None

    def batch(self, n: int) -> list[dict]:
        items = []
        if n == 0:
            items.append({"type": "conversation", "data": {"id": self.conversation}})
        # Small batches: the time to the first 200 after a restart measures
        # the pool, not the length of a batch.
        for i in range(3):
            task_id = str(uuid.uuid4())
            items.append(
                {"type": "task", "data": {"id": task_id, "title": f"w{n}.{i}"}}
            )
            for k in range(3):
                items.append(
                    {
                        "type": "event",
                        "data": {
                            "id": str(uuid.uuid4()),
                            "kind": "e2e.outage",
                            "task": task_id,
                            "payload": {"k": k},
                        },
                    }
                )
            for k in range(3):
                items.append(
                    {
                        "type": "message",
                        "data": {
                            "id": str(uuid.uuid4()),
                            "conversation": self.conversation,
                            "role": "assistant",
                            "content": f"{n}.{i}.{k}",
                        },
                    }
                )
        return items

    def run(self) -> None:
        try:
            n = 0
            while not self.stop.is_set():
                items = self.batch(n)
                answer = self.client.send(items)
                self.finals.append(answer)
                if answer.status != 200:
                    raise AssertionError(f"batch {n} answered {answer}")
                for item, result in zip(items, answer.body["results"], strict=True):
                    if result["status"] not in ("created", "duplicate"):
                        raise AssertionError(f"batch {n}: {result}")
                    if item["type"] in self.acked:
                        self.acked[item["type"]].append(item["data"]["id"])
                n += 1
        except BaseException as exc:  # reported by the test
            self.failure = exc
        finally:
            self.client.close()


VERIFY = """
import json, os
from audit.models import Event
from conversations.models import Message
from tasks.models import Task
out = {
    "tasks": [str(pk) for pk in Task.objects.values_list("pk", flat=True)],
    "events": [
        str(u)
        for u in Event.objects.filter(kind="e2e.outage").values_list("uuid", flat=True)
    ],
    "messages": [
        [str(c), seq, str(pk)]
        for c, seq, pk in Message.objects.order_by("conversation_id", "seq")
        .values_list("conversation_id", "seq", "pk")
    ],
}
with open(os.environ["E2E_OUT"], "w") as f:
    json.dump(out, f)
"""


def _first_200_after(writers: list[Writer], moment: float) -> Answer | None:
    found = [
        a
        for w in writers
        for a in list(w.client.answers)
        if a.status == 200 and a.ended > moment
    ]
    return min(found, key=lambda a: a.ended) if found else None


def test_ingest_through_postgres_crashes_answers_503_and_loses_nothing(tmp_path):
    bin_dir = postgres_binaries()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql")
    cluster = PostgresCluster(bin_dir)
    server = None
    writers: list[Writer] = []
    # Per crash: (stop called, stop returned, start called, start returned).
    outages: list[tuple[float, float, float, float]] = []
    recoveries: list[float] = []
    firsts: list[Answer] = []
    try:
        cluster.init()
        cluster.start()
        database_url = cluster.create_database("swarmsite")
        env = base_env(tmp_path, database_url)
        key = prepare(env)
        server = Daphne(env, tmp_path / "daphne.log", ready_path="/readyz")
        writers = [Writer(server.port, key, n) for n in range(CLIENTS)]
        for writer in writers:
            writer.start()
        for _ in range(CRASHES):
            time.sleep(UP_SECONDS)
            stop_called = time.monotonic()
            cluster.stop("immediate")
            stopped = time.monotonic()
            time.sleep(DOWN_SECONDS)
            start_called = time.monotonic()
            cluster.start()
            started = time.monotonic()
            outages.append((stop_called, stopped, start_called, started))
            deadline = started + 20
            while (first := _first_200_after(writers, started)) is None:
                assert time.monotonic() < deadline, "no write succeeded 20 s after"
                assert all(w.failure is None for w in writers)
                time.sleep(0.05)
            recoveries.append(first.ended - started)
            firsts.append(first)
        time.sleep(UP_SECONDS)
        for writer in writers:
            writer.stop.set()
        for writer in writers:
            writer.join(90)
            assert not writer.is_alive()
        out = tmp_path / "stored.json"
        manage({**env, "E2E_OUT": str(out)}, "shell", "-c", VERIFY)
        stored = json.loads(out.read_text())
    finally:
        for writer in writers:
            writer.stop.set()
        if server is not None:
            server.kill()
        cluster.destroy()

    answers = [a for w in writers for a in w.client.answers]
    statuses = Counter(a.status for a in answers)
    errors = Counter(a.error for a in answers if a.status == 0)
    ok = sorted(a.ended - a.started for a in answers if a.status == 200)
    waits = sorted(a.ended - a.started for a in answers if a.status == 503)
    waits = waits or [0.0]
    print(
        f"\n{len(answers)} requests by status {dict(statuses)}, connection "
        f"errors {dict(errors)}; 503s took {waits[len(waits) // 2]:.2f} s "
        f"(median), {waits[-1]:.2f} s (max); first 200 "
        f"after each restart: {', '.join(f'{s:.2f} s' for s in recoveries)}; "
        "pg_ctl start took "
        + ", ".join(f"{up - called:.2f} s" for _, _, called, up in outages)
        + "; those first 200s took "
        + ", ".join(f"{a.ended - a.started:.2f} s" for a in firsts)
        + f"; 200s took {ok[len(ok) // 2]:.2f} s (median), {ok[-1]:.2f} s (max)"
    )
    for writer in writers:
        assert writer.failure is None, writer.failure

    # Never a 500: a 200, a 503 in the contract's shape, or a refused
    # connection.
    odd = [a for a in answers if a.status not in (0, 200, 503)]
    assert not odd, odd[:5]
    for answer in answers:
        if answer.status == 0:
            assert answer.error == "ConnectionRefusedError", answer
        if answer.status == 503:
            assert answer.retry_after, answer
            assert isinstance(answer.body, dict), answer
            assert answer.body["error"]["code"] == "unavailable", answer
    # Requests made while the database was down (from `pg_ctl stop` until
    # `pg_ctl start` returned, its crash recovery included) were answered,
    # and only with 503 (or not at all): they do not wait out the outage.
    for _, stopped, _, up in outages:
        during = [a for a in answers if a.started >= stopped and a.ended <= up]
        assert during, "no answer while the database was down: " + ", ".join(
            f"{a.status} {a.started - stopped:.1f}..{a.ended - stopped:.1f}"
            for a in answers
            if a.ended > stopped - 3 and a.started < up + 3
        )
        assert {a.status for a in during} <= {0, 503}, during
    # Writes succeed again within 5 s of the database answering.
    assert len(recoveries) == CRASHES
    assert max(recoveries) < RECOVERY_LIMIT, recoveries

    # Everything acknowledged is stored, exactly once, messages gap-free.
    acked = {t: [i for w in writers for i in w.acked[t]] for t in writers[0].acked}
    assert sorted(stored["tasks"]) == sorted(acked["task"])
    assert sorted(stored["events"]) == sorted(acked["event"])
    by_conversation: dict[str, list] = {w.conversation: [] for w in writers}
    for conversation_id, seq, message_id in stored["messages"]:
        by_conversation[conversation_id].append((seq, message_id))
    for writer in writers:
        rows = by_conversation[writer.conversation]
        assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1))
        assert [pk for _, pk in rows] == writer.acked["message"]
