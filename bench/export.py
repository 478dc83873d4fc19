"""Export memory and import speed at 1,000,000 events.

PostgreSQL only. Creates (and afterwards drops) databases named
swarmsite_bench_export_* next to the one DATABASE_URL names:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/swarmsite_dev \\
        python -m bench.export [--keep]

Goals, measured in one run:
- `manage.py export` of the database, run as a subprocess, peaks under 200 MB
  of resident memory (its own max RSS, from wait4);
- `manage.py import` of that file into an empty database writes the events at
  no less than 30% of the rate of a binary COPY of the same rows into another
  empty database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

EVENTS = 1_000_000
CHUNK = 250_000
MEMORY_GOAL_MB = 200
RATIO_GOAL = 0.30
PREFIX = "swarmsite_bench_export"
ROOT = Path(__file__).resolve().parent.parent
COLUMNS = (
    "uuid, project_id, position, kind, task_id, conversation_id, actor_type, "
    "actor_id, actor_label, correlation_id, payload, occurred_at, recorded_at"
)


def _url(base: str, name: str) -> str:
    return urlunsplit(urlsplit(base)._replace(path=f"/{name}"))


def _admin(base: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(_url(base, "postgres"), autocommit=True) as conn:
        for sql in statements:
            conn.execute(sql)


def _manage(url: str, *args: str) -> str:
    """Run manage.py; return its stdout."""
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_DEBUG": "true"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def _measured(url: str, *args: str) -> tuple[float, float, float]:
    """Run manage.py; return its wall time (s), CPU time (s) and max RSS (MB)."""
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_DEBUG": "true"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{proc.stderr.read()}")
    proc.stderr.close()
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def _fill(url: str) -> None:
    """1,000,000 events of the default project, as the services write them."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        project_id = conn.execute(
            "SELECT id FROM swarmsite_project WHERE slug = 'default'"
        ).fetchone()[0]
        kinds = ["task.created", "task.progress", "message.created", "eval.scored"]
        for start in range(0, EVENTS, CHUNK):
            conn.execute(
                f"""
                INSERT INTO audit_event ({COLUMNS})
                SELECT gen_random_uuid(), %s, g, (%s::text[])[1 + g %% 4],
                    CASE WHEN g %% 3 = 0 THEN NULL ELSE gen_random_uuid() END,
                    CASE WHEN g %% 5 = 0 THEN gen_random_uuid() END,
                    'agent', 'bench-agent', 'worker-1', '',
                    jsonb_build_object('n', g, 'note', 'bench payload ' || g,
                                       'progress', g %% 100),
                    now() - (%s - g) * interval '1 second', now()
                FROM generate_series(%s, %s) AS g
                """,
                [project_id, kinds, EVENTS, start + 1, min(start + CHUNK, EVENTS)],
            )
        conn.execute(
            "INSERT INTO audit_journalhead (project_id, last_position, audit_seq, "
            "audit_hash, audit_anchor_seq, audit_anchor_hash) "
            "VALUES (%s, %s, 0, '', 0, '')",
            [project_id, EVENTS],
        )
        conn.execute("VACUUM ANALYZE audit_event")


def _binary_copy(source: str, target: str, scratch: Path) -> float:
    """Seconds to COPY the source's events, in binary, into the target."""
    import psycopg

    dump = scratch / "events.bin"
    with (
        psycopg.connect(source) as conn,
        conn.cursor() as cur,
        dump.open("wb") as out,
        cur.copy(
            f"COPY (SELECT {COLUMNS} FROM audit_event ORDER BY project_id, "
            "position) TO STDOUT (FORMAT binary)"
        ) as copy,
    ):
        for block in copy:
            out.write(block)
    with psycopg.connect(target) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        with (
            dump.open("rb") as src,
            cur.copy(
                f"COPY audit_event ({COLUMNS}) FROM STDIN (FORMAT binary)"
            ) as copy,
        ):
            while block := src.read(1 << 20):
                copy.write(block)
        conn.commit()
        elapsed = time.perf_counter() - started
    dump.unlink()
    return elapsed


def main(argv: list[str]) -> int:
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        print("bench.export: skipped, it needs PostgreSQL (DATABASE_URL=postgres://).")
        return 0
    names = {k: f"{PREFIX}_{k}" for k in ("empty", "source", "copy", "import")}
    urls = {k: _url(base, v) for k, v in names.items()}
    _admin(
        base, *(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in names.values())
    )
    began = time.perf_counter()
    try:
        _admin(base, f'CREATE DATABASE "{names["empty"]}"')
        _manage(urls["empty"], "migrate", "--verbosity", "0")
        _admin(
            base,
            *(
                f'CREATE DATABASE "{names[k]}" TEMPLATE "{names["empty"]}"'
                for k in ("source", "copy", "import")
            ),
        )
        step = time.perf_counter()
        _fill(urls["source"])
        print(f"  loaded {EVENTS:,} events in {time.perf_counter() - step:.1f} s")
        with tempfile.TemporaryDirectory(prefix="bench-export-") as scratch:
            scratch_dir = Path(scratch)
            export_file = scratch_dir / "export.jsonl"
            export_s, export_cpu, export_mb = _measured(
                urls["source"], "export", "--output", str(export_file)
            )
            size_mb = export_file.stat().st_size / 2**20
            copy_s = _binary_copy(urls["source"], urls["copy"], scratch_dir)
            import_s, import_cpu, import_mb = _measured(
                urls["import"], "import", str(export_file)
            )
            check = _manage(urls["import"], "verify_audit_chain")
        copy_rate, import_rate = EVENTS / copy_s, EVENTS / import_s
        ratio = import_rate / copy_rate
        memory_ok, speed_ok = export_mb < MEMORY_GOAL_MB, ratio >= RATIO_GOAL
        print(
            f"  export: {export_s:.1f} s ({EVENTS / export_s:,.0f} events/s, "
            f"{export_cpu:.1f} s CPU), {size_mb:.0f} MB file, peak RSS "
            f"{export_mb:.0f} MB "
            f"(goal < {MEMORY_GOAL_MB} MB: {'met' if memory_ok else 'MISSED'})"
        )
        print(f"  binary COPY of the same rows: {copy_s:.1f} s ({copy_rate:,.0f}/s)")
        print(
            f"  import: {import_s:.1f} s ({import_rate:,.0f} events/s, "
            f"{import_cpu:.1f} s CPU), peak RSS {import_mb:.0f} MB"
        )
        print(
            f"Import/COPY rate ratio {ratio:.2f}: goal >= {RATIO_GOAL} "
            f"{'met' if speed_ok else 'MISSED'}. Audit chain: {check.strip()}. "
            f"Total {time.perf_counter() - began:.0f} s."
        )
        return 0 if memory_ok and speed_ok else 1
    finally:
        if "--keep" in argv:
            print(f"Kept the databases {', '.join(names.values())}.")
        else:
            _admin(
                base,
                *(
                    f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)'
                    for n in names.values()
                ),
            )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
