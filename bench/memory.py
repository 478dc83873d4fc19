"""Memory search latency at 10,000 and at 1,000,000 entries (PostgreSQL).

Creates (and afterwards drops) the database swarmsite_bench_memory next to
the one DATABASE_URL names, loads synthetic memories with INSERT ... SELECT
(the tsvector column is computed by PostgreSQL as rows go in), and times
`memory_search` (the selector behind `GET /api/v1/memories/?q=`).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/swarmsite_dev \\
        python -m bench.memory [--large 1000000] [--keep]

Texts are 12 to 40 words drawn from a 50,000-word vocabulary with a Zipf
distribution (frequency proportional to 1 / (rank + 100): the 100 most
frequent words of real text are stop words, which the index drops).
Each query is two words of one stored text, so it has at least one hit
that holds both. Goal: p99 at the large size at most twice p99 at 10,000.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

from bench import database

BENCH_DB = "swarmsite_bench_memory"
SMALL = 10_000
LARGE = 1_000_000
CHUNK = 100_000
VOCABULARY = 50_000
# The English configuration drops stop words, the most frequent ranks of
# real text: the vocabulary starts after them.
STOP_WORDS = 100
QUERIES = 300
WARMUP = 30
GOAL = 2.0

# A word per rank: letters from the md5 of the rank, so stemming keeps them.
_WORD = "translate(substr(md5(r::text), 1, 8), '0123456789', 'ghijklmnop')"


def _execute(sql: str, params: list | None = None) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _rows(sql: str, params: list | None = None) -> list[tuple]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _load(project_id: int, upto: int) -> float:
    """Insert memories until the project has `upto`; return the seconds spent."""
    start = time.perf_counter()
    (have,) = _rows(
        "SELECT COUNT(*) FROM conversations_memory WHERE project_id = %s",
        [project_id],
    )[0]
    _execute(
        "CREATE TEMP TABLE IF NOT EXISTS bench_words AS "
        f"SELECT r, {_WORD} AS w FROM generate_series(1, %s) AS r",
        [VOCABULARY],
    )
    _execute("CREATE UNIQUE INDEX IF NOT EXISTS bench_words_r ON bench_words (r)")
    while have < upto:
        stop = min(have + CHUNK, upto)
        # Zipf ranks after the stop words: log-uniform over S+1..V+S, less S.
        _execute(
            """
            INSERT INTO conversations_memory (
                uuid, project_id, namespace, key, content, tags, metadata,
                version, create_digest, created_at, updated_at
            )
            SELECT gen_random_uuid(), %s, 'default', '',
                (SELECT string_agg(w.w, ' ')
                 FROM (
                     SELECT LEAST(
                         %s,
                         floor(exp(ln(%s) + random() * (ln(%s) - ln(%s))))::int - %s
                     ) AS r
                     FROM generate_series(1, 12 + (g::bigint * 7919) %% 29) AS k
                     WHERE g > 0
                 ) AS ranks
                 JOIN bench_words w USING (r)),
                '[]'::jsonb, '{}'::jsonb, 1, '',
                now() - (%s - g) * interval '1 second', now()
            FROM generate_series(%s, %s) AS g
            """,
            [
                project_id,
                VOCABULARY,
                STOP_WORDS + 1,
                VOCABULARY + STOP_WORDS,
                STOP_WORDS + 1,
                STOP_WORDS,
                upto,
                have + 1,
                stop,
            ],
        )
        have = stop
        print(f"   loaded {have:,}", flush=True)
    _execute("ANALYZE conversations_memory")
    return time.perf_counter() - start


def _queries(project_id: int, rng: random.Random) -> list[str]:
    texts = _rows(
        "SELECT content FROM conversations_memory WHERE project_id = %s "
        "ORDER BY random() LIMIT %s",
        [project_id, QUERIES + WARMUP],
    )
    return [" ".join(rng.sample(text.split(), 2)) for (text,) in texts]


def _measure(project) -> dict[str, float]:
    from conversations.selectors import memory_list, memory_search

    rng = random.Random(14)
    queries = _queries(project.pk, rng)
    times = []
    hits = []
    for number, text in enumerate(queries):
        start = time.perf_counter()
        page = memory_search(memories=memory_list(project=project), text=text)
        elapsed = time.perf_counter() - start
        if number >= WARMUP:
            times.append(elapsed * 1000)
            hits.append(len(page.results))
    times.sort()
    return {
        "p50": statistics.median(times),
        "p99": times[int(len(times) * 0.99) - 1],
        "max": times[-1],
        "empty": sum(1 for h in hits if h == 0),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", type=int, default=LARGE)
    parser.add_argument("--keep", action="store_true", help="Keep the database.")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print("bench.memory needs DATABASE_URL=postgres://...; skipped.")
        return 0
    os.environ["DATABASE_URL"] = database.create(url, BENCH_DB)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "swarmsite.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from swarmsite.services import project_create

    try:
        call_command("migrate", verbosity=0)
        project = project_create(slug="bench", name="Bench")[0]
        results = {}
        for size in (SMALL, args.large):
            seconds = _load(project.pk, size)
            results[size] = _measure(project)
            r = results[size]
            print(
                f"{size:>9,} memories (loaded in {seconds:.0f} s): search p50 "
                f"{r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, max {r['max']:.1f} ms, "
                f"{r['empty']} of {QUERIES} queries without a hit",
                flush=True,
            )
        ratio = results[args.large]["p99"] / results[SMALL]["p99"]
        print(
            f"p99 at {args.large:,} / p99 at {SMALL:,}: {ratio:.2f} "
            f"(goal <= {GOAL}); p99 at {args.large:,}: "
            f"{results[args.large]['p99']:.1f} ms"
        )
    finally:
        if not args.keep:
            database.drop(url, BENCH_DB)
    return 0


if __name__ == "__main__":
    sys.exit(main())
