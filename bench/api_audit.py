"""Throughput of `GET /api/v1/tasks/` with and without request audit records.

A real daphne process serves a fresh database (PostgreSQL when DATABASE_URL
names one, else a SQLite file); client processes keep HTTP connections
open and request as fast as the server answers. Each mode runs twice,
alternating, and the better run counts, which damps noise from the machine.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/swarmsite_dev \\
        python -m bench.api_audit [--seconds 8] [--clients 16]

Goal: the audit middleware keeps more than half the throughput (ratio > 0.5),
and every answered request has its record once the server has exited.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

PATH = "/api/v1/tasks/"
TASKS = 50
GOAL = 0.5


SEED = f"""
from swarmsite.models import Project
from tasks.services import task_create
project = Project.objects.get(slug="default")
for n in range({TASKS}):
    task_create(project=project, title=f"Bench task {{n}}")
"""

COUNT = """
from audit.models import AuditLog
from audit.chain import audit_chain_verify
from swarmsite.models import Project
project = Project.objects.get(slug="default")
print(AuditLog.objects.filter(action="api.request").count())
print(audit_chain_verify(project_id=project.pk).intact)
"""


def _client(port: int, key: str, seconds: float, threads: int, out) -> None:
    """One client process: `threads` keep-alive connections for `seconds`."""
    counts = [0] * threads
    errors = [0] * threads
    stop_at = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {key}"}

    def loop(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop_at:
            conn.request("GET", PATH, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                counts[i] += 1
            else:
                errors[i] += 1
        conn.close()

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.put((sum(counts), sum(errors)))


def _load(port: int, key: str, seconds: float, clients: int) -> tuple[float, int]:
    """Requests per second over `seconds`, and how many were answered."""
    # Few client processes: on a small machine they compete with the server.
    processes = max(1, clients // 8)
    queue: multiprocessing.Queue = multiprocessing.Queue()
    started = time.perf_counter()
    procs = [
        multiprocessing.Process(
            target=_client,
            args=(port, key, seconds, max(1, clients // processes), queue),
        )
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    results = [queue.get() for _ in procs]
    for proc in procs:
        proc.join()
    elapsed = time.perf_counter() - started
    answered = sum(ok for ok, _ in results)
    failed = sum(bad for _, bad in results)
    if failed:
        raise SystemExit(f"{failed} requests did not answer 200")
    return answered / elapsed, answered


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.api_audit")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "swarmsite.settings")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import django

    django.setup()
    from tests.e2e.stack import Daphne, fresh_database, manage

    with (
        tempfile.TemporaryDirectory(prefix="swarmsite-bench-") as tmp_name,
        fresh_database(Path(tmp_name)) as database_url,
    ):
        tmp = Path(tmp_name)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AUDIT_REQUEST", "DJANGO_"))
        }
        env.pop("REDIS_URL", None)
        env.update(
            DATABASE_URL=database_url,
            SWARMSITE_DATA_DIR=str(tmp / "data"),
            # Production settings: DEBUG would keep every query in memory.
            DJANGO_DEBUG="false",
            DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
            DJANGO_ALLOWED_HOSTS="127.0.0.1",
            DJANGO_SECURE_SSL_REDIRECT="false",
            API_THROTTLE_RATE="100000000/minute",
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
        )
        manage(env, "migrate", "--noinput", "-v", "0")
        key = manage(
            env, "create_api_key", "--project", "default", "--name", "bench"
        ).splitlines()[-1]
        manage(env, "shell", "-c", SEED)
        log = tmp / "daphne.log"
        rates: dict[str, list[float]] = {"off": [], "on": []}
        answered_on = 0
        for _round in range(2):
            for mode in ("off", "on"):
                server = Daphne(
                    env | {"AUDIT_REQUESTS": str(mode == "on").lower()}, log
                )
                try:
                    _, warm = _load(server.port, key, 1.0, args.clients)
                    rate, answered = _load(server.port, key, args.seconds, args.clients)
                finally:
                    # SIGTERM: the server writes its queued records on exit.
                    server.stop()
                rates[mode].append(rate)
                if mode == "on":
                    answered_on += warm + answered
                print(f"  audit {mode:<3} {rate:8.0f} requests/s", flush=True)
        written, intact = manage(env, "shell", "-c", COUNT).split()[-2:]
        vendor = "PostgreSQL" if "postgres" in database_url else "SQLite"
        best_off, best_on = max(rates["off"]), max(rates["on"])
        ratio = best_on / best_off
        print(
            f"\nGET {PATH} ({TASKS} tasks) on daphne + {vendor}, "
            f"{args.clients} keep-alive clients, {args.seconds:.0f} s runs:"
        )
        print(f"  without audit middleware {best_off:8.0f} requests/s")
        print(f"  with audit middleware    {best_on:8.0f} requests/s")
        print(f"  ratio with/without       {ratio:8.2f}")
        print(
            f"  api.request records: {written} of {answered_on} requests "
            f"answered with audit on (chain intact: {intact})"
        )
        met = ratio > GOAL and int(written) == answered_on and intact == "True"
        verdict = "met" if met else "MISSED"
        print(f"Goal ratio > {GOAL}, every record written: {verdict}.")
        return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
