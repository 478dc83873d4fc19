"""Batch ingest against binary COPY, and task-list latency at 10k and 1M tasks.

PostgreSQL only. Creates (and afterwards drops) the database
swarmsite_bench_ingest next to the one DATABASE_URL names, and serves it with
a real daphne process (production settings) on a free port.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/swarmsite_dev \\
        python -m bench.ingest [--keep]

(a) events/s through `POST /api/v1/ingest/`, 1,000-item batches from 4
    concurrent clients; (b) rows/s of a psycopg binary COPY of the same rows
    into the same table; their ratio must be at least 10% (goal 20%).
(c) p50/p99 of `GET /api/v1/tasks/?status=running` and of its next page at
    10,000 and at 1,000,000 tasks; the p99 ratio must stay under 4.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from bench import database

BENCH_DB = "swarmsite_bench_ingest"
CLIENTS = 4
BATCH = 1000
BATCHES_PER_CLIENT = 10
SMALL = 10_000
LARGE = 1_000_000
WARMUP = 20
SAMPLES = 300
RATIO_FLOOR = 0.10
RATIO_GOAL = 0.20
P99_CEILING = 4.0
EVENT_COLUMNS = (
    "uuid",
    "project_id",
    "position",
    "kind",
    "task_id",
    "conversation_id",
    "actor_type",
    "actor_id",
    "actor_label",
    "correlation_id",
    "payload",
    "occurred_at",
    "recorded_at",
)


def _server_env(bench_url: str) -> dict[str, str]:
    """Production settings: DEBUG would keep every query in memory."""
    return os.environ | {
        "DATABASE_URL": bench_url,
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "API_THROTTLE_RATE": "1000000/minute",
    }


def _event_rows(n: int, task_ids: list[uuid.UUID]) -> list[dict]:
    """Items as a client would send them: own ids, a kind, a task, a payload."""
    return [
        {
            "id": str(uuid.uuid4()),
            "kind": "eval.scored",
            "task": str(task_ids[i % len(task_ids)]),
            "payload": {"score": (i % 100) / 100, "model": "gpt-bench", "n": i},
        }
        for i in range(n)
    ]


def _ingest_rate(port: int, key: str, task_ids: list[uuid.UUID]) -> tuple[float, int]:
    """Events/s of CLIENTS threads posting BATCH-item batches; events written."""
    bodies = [
        [
            json.dumps(
                {
                    "items": [
                        {"type": "event", "data": data}
                        for data in _event_rows(BATCH, task_ids)
                    ]
                }
            ).encode()
            for _ in range(BATCHES_PER_CLIENT + 1)
        ]
        for _ in range(CLIENTS)
    ]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    failures: list[str] = []
    barrier = threading.Barrier(CLIENTS + 1)

    def client(own: list[bytes]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for index, body in enumerate(own):
            if index == 1:
                barrier.wait()  # the first batch warms the server up
            conn.request("POST", "/api/v1/ingest/", body=body, headers=headers)
            response = conn.getresponse()
            content = response.read()
            if response.status != 200:
                failures.append(f"{response.status}: {content[:300]!r}")
        conn.close()

    threads = [threading.Thread(target=client, args=(b,)) for b in bodies]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"ingest failed: {failures[0]}")
    written = CLIENTS * BATCHES_PER_CLIENT * BATCH
    return written / elapsed, written


def _copy_rate(project_id: int, n: int, task_ids: list[uuid.UUID]) -> float:
    """Rows/s of a binary COPY of `n` event rows like the ingested ones."""
    from django.db import connection, transaction
    from psycopg.types.json import Jsonb

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT last_position FROM audit_journalhead WHERE project_id = %s",
            [project_id],
        )
        start = cursor.fetchone()[0] + 1_000_000
    now = datetime.now(UTC)
    rows = [
        (
            uuid.uuid4(),
            project_id,
            start + i,
            "eval.scored",
            task_ids[i % len(task_ids)],
            None,
            "api_key",
            "1",
            "bench",
            uuid.uuid4().hex,
            Jsonb({"score": (i % 100) / 100, "model": "gpt-bench", "n": i}),
            now,
            now,
        )
        for i in range(n)
    ]
    types = [
        "uuid",
        "int8",
        "int8",
        "varchar",
        "uuid",
        "uuid",
        "varchar",
        "varchar",
        "varchar",
        "varchar",
        "jsonb",
        "timestamptz",
        "timestamptz",
    ]
    connection.ensure_connection()
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        raw = cursor.cursor if hasattr(cursor, "cursor") else cursor
        sql = (
            f"COPY audit_event ({', '.join(EVENT_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
        )
        with raw.copy(sql) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)
    return n / (time.perf_counter() - started)


def _copy_tasks(project_id: int, count: int, offset: int) -> None:
    """Bulk-load `count` tasks with binary COPY, then VACUUM ANALYZE."""
    from django.db import connection, transaction
    from psycopg.types.json import Jsonb

    from tasks.models import TaskStatus

    statuses = TaskStatus.values
    base = datetime.now(UTC) - timedelta(days=400)
    columns = (
        "id, project_id, title, description, session_id, status, priority, "
        "progress, input, result, result_summary, error, files_touched, metadata, "
        "prompt_tokens, completion_tokens, cached_tokens, cost, version, "
        "created_at, updated_at"
    )
    types = [
        "uuid",
        "int8",
        "varchar",
        "text",
        "varchar",
        "varchar",
        "int4",
        "int2",
        "jsonb",
        "jsonb",
        "text",
        "text",
        "jsonb",
        "jsonb",
        "int8",
        "int8",
        "int8",
        "numeric",
        "int4",
        "timestamptz",
        "timestamptz",
    ]
    empty_list, empty_obj = Jsonb([]), Jsonb({})
    with transaction.atomic(), connection.cursor() as cursor:
        raw = cursor.cursor if hasattr(cursor, "cursor") else cursor
        with raw.copy(
            f"COPY tasks_task ({columns}) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(types)
            for g in range(offset, offset + count):
                created = base + timedelta(seconds=g * 30)
                copy.write_row(
                    (
                        uuid.uuid4(),
                        project_id,
                        f"Bench task {g}",
                        "",
                        f"session-{g % 100}",
                        statuses[g % len(statuses)],
                        g % 5,
                        0,
                        None,
                        None,
                        "",
                        "",
                        empty_list,
                        empty_obj,
                        0,
                        0,
                        0,
                        0,
                        1,
                        created,
                        created,
                    )
                )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE tasks_task")


def _percentiles(port: int, key: str, path: str) -> tuple[tuple, tuple]:
    """(p50, p99) in ms of `path` and of the next page it links to."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {key}"}

    def get(url: str) -> tuple[float, dict]:
        started = time.perf_counter()
        conn.request("GET", url, headers=headers)
        response = conn.getresponse()
        body = response.read()
        took = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise SystemExit(f"GET {url} answered {response.status}: {body[:300]!r}")
        return took, json.loads(body)

    _, first = get(path)
    if not first["results"] or not first["next"]:
        raise SystemExit(f"GET {path} returned no full page")
    parts = urlsplit(first["next"])
    next_path = f"{parts.path}?{parts.query}"
    out = []
    for url in (path, next_path):
        for _ in range(WARMUP):
            get(url)
        times = sorted(get(url)[0] for _ in range(SAMPLES))
        out.append(
            (
                statistics.median(times),
                times[min(len(times) - 1, int(len(times) * 0.99))],
            )
        )
    conn.close()
    return out[0], out[1]


def main(argv: list[str]) -> int:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print(
            "bench.ingest: skipped, it needs PostgreSQL "
            "(set DATABASE_URL=postgres://...)."
        )
        return 0
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "swarmsite.settings")
    os.environ.setdefault("DJANGO_DEBUG", "true")
    bench_url = database.create(url, BENCH_DB)
    os.environ["DATABASE_URL"] = bench_url

    import django

    django.setup()

    from django.core.management import call_command

    from swarmsite.models import Project
    from swarmsite.services import api_key_create
    from tasks.services import task_create
    from tests.e2e.stack import Daphne

    server = None
    try:
        began = time.perf_counter()
        call_command("migrate", verbosity=0, interactive=False)
        project = Project.objects.get(slug="default")
        _, key = api_key_create(project=project, name="bench", scopes=["read", "write"])
        task_ids = [
            task_create(project=project, title=f"t{i}")[0].pk for i in range(20)
        ]
        log = Path(tempfile.gettempdir()) / "swarmsite-bench-ingest-daphne.log"
        server = Daphne(_server_env(bench_url), log)
        port = server.port

        rate, written = _ingest_rate(port, key, task_ids)
        copy_rate = _copy_rate(project.pk, written, task_ids)
        ratio = rate / copy_rate
        version = _scalar("SHOW server_version").split()[0]
        print(f"Ingest vs binary COPY into audit_event (PostgreSQL {version}):")
        print(
            f"  POST /api/v1/ingest/, {CLIENTS} clients x {BATCHES_PER_CLIENT} "
            f"batches of {BATCH:,} events: {rate:,.0f} events/s"
        )
        print(
            f"  psycopg binary COPY of {written:,} such rows: {copy_rate:,.0f} rows/s"
        )
        ingest_ok = ratio >= RATIO_FLOOR
        print(
            f"  Ratio {ratio:.1%}: acceptance >= {RATIO_FLOOR:.0%} "
            f"{'met' if ingest_ok else 'MISSED'}, goal {RATIO_GOAL:.0%} "
            f"{'met' if ratio >= RATIO_GOAL else 'not met'}."
        )

        path = "/api/v1/tasks/?status=running"
        figures = {}
        loaded = 20
        for size in (SMALL, LARGE):
            step = time.perf_counter()
            _copy_tasks(project.pk, size - loaded, loaded)
            loaded = size
            print(
                f"  loaded {size:,} tasks in {time.perf_counter() - step:.1f} s",
                flush=True,
            )
            figures[size] = _percentiles(port, key, path)
        print(f"\nGET {path} over HTTP (daphne), {SAMPLES} requests each, p50 / p99:")
        heads = f"{f'{SMALL:,} tasks':>22}{f'{LARGE:,} tasks':>22}"
        print(f"  {'':<12}{heads}{'p99 ratio':>11}")
        worst = 0.0
        for index, label in enumerate(("first page", "next page")):
            (s50, s99), (l50, l99) = figures[SMALL][index], figures[LARGE][index]
            worst = max(worst, l99 / s99)
            print(
                f"  {label:<12}{s50:>9.1f} / {s99:>6.1f} ms"
                f"{l50:>12.1f} / {l99:>6.1f} ms{l99 / s99:>11.2f}"
            )
        list_ok = worst < P99_CEILING
        print(
            f"Worst p99 ratio {worst:.2f}: acceptance < {P99_CEILING:.0f}x "
            f"{'met' if list_ok else 'MISSED'}. "
            f"Total {time.perf_counter() - began:.0f} s."
        )
        return 0 if ingest_ok and list_ok else 1
    finally:
        if server is not None:
            server.stop()
        if "--keep" in argv:
            print(f"Kept the database {BENCH_DB}.")
        else:
            database.drop(bench_url, BENCH_DB)


def _scalar(sql: str):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
