"""Admin changelist render time at 1,000 and at 1,000,000 rows.

PostgreSQL only: the changelists count big tables from the planner's
estimate, which SQLite does not have. Creates (and afterwards drops) the
database swarmsite_bench_admin next to the one DATABASE_URL names.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/swarmsite_dev \\
        python -m bench.admin_changelist [--keep]

Goal: rendering a changelist at a million rows takes less than twice as long
as at a thousand.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import time

from bench import database

BENCH_DB = "swarmsite_bench_admin"
SMALL = 1_000
LARGE = 1_000_000
CHUNK = 250_000
WARMUP = 2
RUNS = 7
GOAL = 2.0


def _execute(sql: str, params: list | None = None) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _scalar(sql: str, params: list | None = None):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def _insert_events(project_id: int, upto: int) -> None:
    """Append events until the project has `upto`, in INSERT ... SELECT chunks."""
    from audit.models import EventKind

    kinds = [*EventKind.values, "deploy.finished", "eval.scored"]
    start = _scalar(
        "SELECT COALESCE(MAX(position), 0) FROM audit_event WHERE project_id = %s",
        [project_id],
    )
    while start < upto:
        stop = min(start + CHUNK, upto)
        # The append-only triggers refuse UPDATE and DELETE, not INSERT.
        _execute(
            """
            INSERT INTO audit_event (
                uuid, project_id, position, kind, task_id, conversation_id,
                actor_type, actor_id, actor_label, correlation_id, payload,
                occurred_at, recorded_at
            )
            SELECT gen_random_uuid(), %s, g, (%s::text[])[1 + g %% %s],
                CASE WHEN g %% 3 = 0 THEN NULL ELSE gen_random_uuid() END,
                CASE WHEN g %% 5 = 0 THEN gen_random_uuid() END,
                'agent', 'bench-agent', 'worker-1', '',
                jsonb_build_object('n', g, 'note', 'bench payload ' || g),
                now() - (%s - g) * interval '1 second', now()
            FROM generate_series(%s, %s) AS g
            """,
            [project_id, kinds, len(kinds), upto, start + 1, stop],
        )
        start = stop
    _execute(
        "UPDATE audit_journalhead SET last_position = %s WHERE project_id = %s",
        [upto, project_id],
    )
    # What autovacuum does after a bulk load: statistics, and the visibility
    # map that lets capped counts run as index-only scans.
    _execute("VACUUM ANALYZE audit_event")


def _insert_tasks(project_id: int, agent_id, upto: int) -> None:
    """Add tasks until there are `upto`, in INSERT ... SELECT chunks."""
    from tasks.models import TaskStatus

    statuses = TaskStatus.values
    start = _scalar("SELECT COUNT(*) FROM tasks_task")
    while start < upto:
        stop = min(start + CHUNK, upto)
        _execute(
            """
            INSERT INTO tasks_task (
                id, project_id, title, description, session_id, status,
                priority, progress, input, result, result_summary, error,
                files_touched, metadata, prompt_tokens, completion_tokens,
                cached_tokens, cost, version, started_at, completed_at,
                assigned_agent_id, parent_id, workflow_id, created_at, updated_at
            )
            SELECT gen_random_uuid(), %s, 'Bench task ' || g,
                repeat('Long description. ', 20), 'session-' || (g %% 100),
                (%s::text[])[1 + g %% %s], g %% 5, 0,
                jsonb_build_object('prompt', repeat('x', 200)), NULL, '', '',
                '[]'::jsonb, '{}'::jsonb, 0, 0, 0, 0, 1, NULL, NULL,
                CASE WHEN g %% 2 = 0 THEN %s::uuid END, NULL, NULL,
                now() - (%s - g) * interval '1 second', now()
            FROM generate_series(%s, %s) AS g
            """,
            [project_id, statuses, len(statuses), agent_id, upto, start + 1, stop],
        )
        start = stop
    _execute("VACUUM ANALYZE tasks_task")


def _median_ms(client, url: str) -> tuple[float, str]:
    """Median render time of `url` in ms, and the row count the page shows."""
    for _ in range(WARMUP):
        client.get(url, secure=True)
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        response = client.get(url, secure=True)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}")
    shown = re.search(r"(about [\d,]+|[\d,]+\+?) (events|tasks)", response.text)
    return statistics.median(times), shown.group(1) if shown else "?"


def main(argv: list[str]) -> int:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print(
            "bench.admin_changelist: skipped, it needs PostgreSQL "
            "(set DATABASE_URL=postgres://...)."
        )
        return 0
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "swarmsite.settings")
    os.environ.setdefault("DJANGO_DEBUG", "true")
    bench_url = database.create(url, BENCH_DB)
    os.environ["DATABASE_URL"] = bench_url

    import django

    django.setup()

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from swarmsite.models import Project
    from tasks.services import agent_register

    try:
        began = time.perf_counter()
        call_command("migrate", verbosity=0, interactive=False)
        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
        user = get_user_model().objects.create_superuser(
            username="bench", email="bench@example.com", password="bench-only"
        )
        client = Client()
        client.force_login(user)
        project = Project.objects.get(slug="default")
        agent, _ = agent_register(project=project, name="worker-1")
        cases = [
            ("events", "/admin/audit/event/", "unfiltered"),
            ("events", "/admin/audit/event/?kind=task.progress", "kind filter"),
            ("tasks", "/admin/tasks/task/", "unfiltered"),
            ("tasks", "/admin/tasks/task/?status__exact=running", "status filter"),
        ]
        results: dict[tuple[str, str], list] = {}
        for rows in (SMALL, LARGE):
            step = time.perf_counter()
            _insert_events(project.pk, rows)
            _insert_tasks(project.pk, agent.pk, rows)
            print(
                f"  loaded {rows:,} events and tasks "
                f"in {time.perf_counter() - step:.1f} s",
                flush=True,
            )
            for table, path, label in cases:
                results.setdefault((table, label), []).append(_median_ms(client, path))

        version = _scalar("SHOW server_version").split()[0]
        print(
            f"\nAdmin changelist render through django.test.Client, median of "
            f"{RUNS} (PostgreSQL {version}):"
        )
        print(
            f"  {'':<22}{f'{SMALL:,} rows':>12}{f'{LARGE:,} rows':>16}"
            f"{'ratio':>8}   count shown at {LARGE:,}"
        )
        worst = 0.0
        for (table, label), ((small_ms, _), (large_ms, shown)) in results.items():
            ratio = large_ms / small_ms
            if label == "unfiltered":
                worst = max(worst, ratio)
            print(
                f"  {table + ' ' + label:<22}{small_ms:>9.1f} ms{large_ms:>13.1f} ms"
                f"{ratio:>8.2f}   {shown}"
            )
        verdict = "met" if worst < GOAL else "MISSED"
        print(
            f"Unfiltered ratio {worst:.2f}: goal < {GOAL} {verdict}. "
            f"Total {time.perf_counter() - began:.0f} s."
        )
        return 0 if worst < GOAL else 1
    finally:
        if "--keep" in argv:
            print(f"Kept the database {BENCH_DB}.")
        else:
            database.drop(bench_url, BENCH_DB)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
