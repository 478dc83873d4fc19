"""The Recorder: cost of a record call, and how fast its outbox drains.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres python -m bench.client

Creates (and afterwards drops) the database swarmsite_bench_client next to
the one DATABASE_URL names and serves it with a real daphne (production
settings); without a PostgreSQL DATABASE_URL it uses a temporary SQLite file.

(a) p50/p99 of 10,000 record calls with the server up (the sender draining
    at the same time) and with it down (nothing listening); goal p99 < 1 ms.
(b) items/s of the Recorder draining an outbox of N items, over items/s of
    posting the same kind of items straight to `POST /api/v1/ingest/` in
    batches of the same size, one request at a time; goal >= 80%.
"""

from __future__ import annotations

import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench import database

BENCH_DB = "swarmsite_bench_client"
CALLS = 10_000
DRAIN_ITEMS = 10_000
BATCH = 1000
RUN = 250
DOWN_URL = "http://127.0.0.1:9"  # nothing listens there
LATENCY_GOAL_MS = 1.0
DRAIN_GOAL = 0.80


def _server_env(url: str, data_dir: str) -> dict[str, str]:
    return os.environ | {
        "DATABASE_URL": url,
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "API_THROTTLE_RATE": "1000000/minute",
        "SWARMSITE_DATA_DIR": data_dir,
        "LOG_LEVEL": "WARNING",
    }


def _items(n: int, conversations: list[str]) -> list[tuple[str, dict]]:
    """A mix of what agents record: events, messages, tool audits, in runs
    of 50 of a kind (the server writes each run of one type in bulk)."""
    out = []
    for i in range(n):
        kind = i // RUN % 4
        if kind in (0, 1):
            out.append(
                (
                    "event",
                    {
                        "id": str(uuid.uuid4()),
                        "kind": "bench.step",
                        "payload": {"i": i, "note": "x" * 80},
                    },
                )
            )
        elif kind == 2:
            out.append(
                (
                    "message",
                    {
                        "conversation": conversations[i % len(conversations)],
                        "id": str(uuid.uuid4()),
                        "role": "assistant",
                        "content": f"step {i} " + "y" * 80,
                        "prompt_tokens": 12,
                        "completion_tokens": 30,
                    },
                )
            )
        else:
            out.append(
                (
                    "audit",
                    {
                        "id": str(uuid.uuid4()),
                        "action": "tool.invoke",
                        "target": "search",
                        "duration_ms": 12.5,
                        "details": {"i": i},
                    },
                )
            )
    return out


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


def _latency(url: str, key: str, outbox: Path) -> tuple[float, float]:
    from swarmsite_client import Recorder

    recorder = Recorder(url, key, outbox=outbox)
    samples = []
    for i in range(CALLS):
        started = time.perf_counter()
        recorder.event("bench.latency", payload={"i": i, "note": "x" * 80})
        samples.append(time.perf_counter() - started)
    if url != DOWN_URL:  # the server is up: let it drain
        recorder.flush(120)
    recorder.close(0)
    return _percentiles(samples)


def _bare_insert(path: Path) -> tuple[float, float]:
    """The floor under a record call: a plain SQLite insert (WAL, NORMAL) of
    an item of the same size on the same disk, in the same conditions."""
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE items (seq INTEGER PRIMARY KEY, body TEXT)")
    body = '{"type":"event","data":{"kind":"bench.latency"}}' + " " * 150
    samples = []
    for _ in range(CALLS):
        started = time.perf_counter()
        conn.execute("INSERT INTO items (body) VALUES (?)", (body,))
        samples.append(time.perf_counter() - started)
    conn.close()
    return _percentiles(samples)


def _direct_rate(url: str, key: str, items: list[tuple[str, dict]]) -> float:
    import httpx

    from swarmsite_client._core import dumps

    with httpx.Client(
        base_url=url,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=120,
    ) as http:
        started = time.perf_counter()
        for start in range(0, len(items), BATCH):
            chunk = items[start : start + BATCH]
            body = dumps({"items": [{"type": t, "data": d} for t, d in chunk]})
            response = http.post("/api/v1/ingest/", content=body.encode())
            assert response.status_code == 200, response.text[:500]
        return len(items) / (time.perf_counter() - started)


def _recorder_rate(
    url: str, key: str, items: list[tuple[str, dict]], outbox: Path
) -> float:
    from swarmsite_client import Recorder

    recorder = Recorder(url, key, outbox=outbox, batch_items=BATCH, start=False)
    for type_, data in items:
        recorder.record(type_, data, data["id"])
    started = time.perf_counter()
    recorder.start()
    assert recorder.flush(600), recorder.stats()
    elapsed = time.perf_counter() - started
    stats = recorder.stats()
    recorder.close(0)
    assert stats["dead"] == 0 and stats["sent"] == len(items), stats
    return len(items) / elapsed


def main(argv: list[str]) -> int:
    url = os.environ.get("DATABASE_URL", "")
    tmp = Path(tempfile.mkdtemp(prefix="swarmsite-bench-client-"))
    postgres = url.startswith(("postgres://", "postgresql://"))
    bench_url = (
        database.create(url, BENCH_DB)
        if postgres
        else f"sqlite:///{tmp / 'bench.sqlite3'}"
    )
    os.environ["DATABASE_URL"] = bench_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "swarmsite.settings")
    os.environ.setdefault("DJANGO_DEBUG", "true")
    os.environ["SWARMSITE_DATA_DIR"] = str(tmp / "data")

    import django

    django.setup()

    from django.core.management import call_command

    from conversations.services import conversation_create
    from swarmsite.models import Project
    from swarmsite.services import api_key_create
    from tests.e2e.stack import Daphne

    server = None
    try:
        began = time.perf_counter()
        call_command("migrate", verbosity=0, interactive=False)
        project = Project.objects.get(slug="default")
        _, key = api_key_create(project=project, name="bench", scopes=["read", "write"])
        conversations = [
            str(conversation_create(project=project, title=f"c{i}")[0].pk)
            for i in range(10)
        ]
        server = Daphne(_server_env(bench_url, str(tmp / "data")), tmp / "daphne.log")
        base = server.url
        engine = "PostgreSQL" if postgres else "SQLite"

        _direct_rate(base, key, _items(2 * BATCH, conversations))  # warm-up
        direct = _direct_rate(base, key, _items(DRAIN_ITEMS, conversations))
        drained = _recorder_rate(
            base, key, _items(DRAIN_ITEMS, conversations), tmp / "drain.sqlite3"
        )
        up = _latency(base, key, tmp / "up.sqlite3")
        down = _latency(DOWN_URL, key, tmp / "down.sqlite3")
        bare = _bare_insert(tmp / "bare.sqlite3")

        print(f"Recorder against daphne on {engine}:")
        print(f"  record call, {CALLS:,} calls, p50 / p99:")
        worst = 0.0
        for label, (p50, p99) in (("server up", up), ("server down", down)):
            worst = max(worst, p99)
            print(
                f"    {label:<12} {p50 * 1000:7.0f} / {p99 * 1000:6.0f} us "
                f"(p99 / goal {p99 / LATENCY_GOAL_MS:.2f})"
            )
        print(
            f"    {'bare SQLite insert, same disk':<12} {bare[0] * 1000:7.0f} / "
            f"{bare[1] * 1000:6.0f} us (the floor on this machine now)"
        )
        latency_ok = worst < LATENCY_GOAL_MS
        verdict = "met" if latency_ok else "MISSED"
        print(f"  p99 goal < {LATENCY_GOAL_MS:.0f} ms {verdict}.")
        ratio = drained / direct
        print(
            f"  drain of {DRAIN_ITEMS:,} items (events, messages, audits in runs of "
            f"{RUN}), batches of {BATCH:,}:"
        )
        print(f"    straight to ingest/  {direct:9,.0f} items/s")
        print(f"    Recorder outbox      {drained:9,.0f} items/s")
        drain_ok = ratio >= DRAIN_GOAL
        print(
            f"  Ratio {ratio:.0%}: goal >= {DRAIN_GOAL:.0%} "
            f"{'met' if drain_ok else 'MISSED'}. "
            f"Total {time.perf_counter() - began:.0f} s."
        )
        return 0 if latency_ok and drain_ok else 1
    finally:
        if server is not None:
            server.stop()
        if postgres:
            database.drop(bench_url, BENCH_DB)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
