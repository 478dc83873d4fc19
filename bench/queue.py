"""The work queue on PostgreSQL: claims per second with 8 concurrent workers,
and claim latency with 10,000 and with 1,000,000 finished tasks in the table.

Creates (and afterwards drops) the database swarmsite_bench_queue next to
the one DATABASE_URL names and loads tasks with INSERT ... SELECT. Claims go
through `task_claim` (the service behind `POST /api/v1/tasks/claim/`): a
transaction with the lease expiry, the SKIP LOCKED pick, the update, the
event and the audit record. Commits do not wait for the disk
(`synchronous_commit = off`): the figures are about the queries, not fsync.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/swarmsite_dev \\
        python -m bench.queue [--large 1000000] [--claims 2000] [--keep]

Goal: claim p99 with the large table at most 1.5 times p99 with 10,000.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

from bench import database

BENCH_DB = "swarmsite_bench_queue"
WORKERS = 8
THROUGHPUT_TASKS = 2000
SMALL = 10_000
LARGE = 1_000_000
CHUNK = 200_000
CLAIMS = 400
WARMUP = 40
GOAL = 1.5


def _execute(sql: str, params: list | None = None) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _fast_commits() -> None:
    _execute("SET synchronous_commit TO off")


def _insert(project_id: int, count: int, *, status: str, start: int) -> None:
    """`count` tasks in `status`, numbered from `start`, oldest first."""
    finished = status in ("completed", "failed", "cancelled")
    _execute(
        """
        INSERT INTO tasks_task (
            id, project_id, key, title, description, session_id, status,
            priority, progress, result_summary, error, files_touched, metadata,
            prompt_tokens, completion_tokens, cached_tokens, cost, version,
            attempts, create_digest, started_at, completed_at, created_at,
            updated_at
        )
        SELECT gen_random_uuid(), %s, '', 'task ' || g, '', '', %s,
            (g::bigint * 7919) %% 10, %s, '', '', '[]'::jsonb, '{}'::jsonb,
            0, 0, 0, 0, 1, %s, '',
            CASE WHEN %s THEN now() - interval '1 day' END,
            CASE WHEN %s THEN now() - interval '1 day' END,
            now() - interval '2 days' + g * interval '1 millisecond', now()
        FROM generate_series(%s, %s) AS g
        """,
        [
            project_id,
            status,
            100 if status == "completed" else 0,
            1 if finished else 0,
            finished,
            finished,
            start,
            start + count - 1,
        ],
    )


def _load_finished(project_id: int, have: int, upto: int) -> float:
    begin = time.perf_counter()
    while have < upto:
        count = min(CHUNK, upto - have)
        _insert(project_id, count, status="completed", start=have + 1)
        have += count
        print(f"   {have:,} completed tasks", flush=True)
    _execute("ANALYZE tasks_task")
    return time.perf_counter() - begin


def _throughput(project, agents, tasks: int) -> float:
    """Claims per second of 8 threads draining `tasks` queued tasks."""
    from django.db import connection

    from tasks.services import task_claim

    _insert(project.pk, tasks, status="queued", start=5_000_000)
    _execute("ANALYZE tasks_task")
    counts = [0] * WORKERS
    errors: list[BaseException] = []
    barrier = threading.Barrier(WORKERS + 1)

    def work(index: int) -> None:
        try:
            _fast_commits()
            barrier.wait()
            while task_claim(project=project, agent=agents[index]) is not None:
                counts[index] += 1
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    barrier.wait()
    begin = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - begin
    if errors:
        raise errors[0]
    assert sum(counts) == tasks, counts
    return sum(counts) / seconds


def _latency(project, agent, *, start: int) -> dict[str, float]:
    """Single claims timed one by one from a fresh batch of queued tasks."""
    from tasks.services import task_claim

    _insert(project.pk, CLAIMS + WARMUP, status="queued", start=start)
    _execute("ANALYZE tasks_task")
    times = []
    for number in range(CLAIMS + WARMUP):
        begin = time.perf_counter()
        task = task_claim(project=project, agent=agent)
        elapsed = time.perf_counter() - begin
        assert task is not None
        if number >= WARMUP:
            times.append(elapsed * 1000)
    times.sort()
    return {
        "p50": statistics.median(times),
        "p99": times[int(len(times) * 0.99) - 1],
        "max": times[-1],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", type=int, default=LARGE)
    parser.add_argument("--claims", type=int, default=THROUGHPUT_TASKS)
    parser.add_argument("--keep", action="store_true", help="Keep the database.")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print("bench.queue needs DATABASE_URL=postgres://...; skipped.")
        return 0
    os.environ["DATABASE_URL"] = database.create(url, BENCH_DB)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "swarmsite.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from swarmsite.services import project_create
    from tasks.services import agent_register

    try:
        call_command("migrate", verbosity=0)
        _fast_commits()
        project = project_create(slug="bench", name="Bench")[0]
        agents = [
            agent_register(project=project, name=f"worker-{i}")[0]
            for i in range(WORKERS)
        ]
        rate = _throughput(project, agents, args.claims)
        print(
            f"{WORKERS} workers claimed {args.claims:,} tasks: {rate:.0f} claims/s",
            flush=True,
        )
        results = {}
        have = 0
        for round_, size in enumerate((SMALL, args.large)):
            seconds = _load_finished(project.pk, have, size)
            have = size
            results[size] = _latency(
                project, agents[0], start=6_000_000 + round_ * 100_000
            )
            r = results[size]
            print(
                f"{size:>9,} completed tasks (loaded in {seconds:.0f} s): claim "
                f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, max {r['max']:.1f} ms",
                flush=True,
            )
        ratio = results[args.large]["p99"] / results[SMALL]["p99"]
        print(
            f"claim p99 at {args.large:,} / p99 at {SMALL:,}: {ratio:.2f} "
            f"(goal <= {GOAL}); {rate:.0f} claims/s with {WORKERS} workers"
        )
    finally:
        if not args.keep:
            database.drop(url, BENCH_DB)
    return 0


if __name__ == "__main__":
    sys.exit(main())
