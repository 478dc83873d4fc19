"""/readyz follows a PostgreSQL outage without a server restart.

A private PostgreSQL cluster (initdb + pg_ctl on a free port in a temporary
folder) is stopped and started under a real daphne; the shared server is
never touched.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings

from tests.e2e.stack import free_port
from tests.utils import postgres_only

pytestmark = [pytest.mark.slow, postgres_only]

BASE_DIR = Path(settings.BASE_DIR)
PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PrivateCluster:
    """A throw-away PostgreSQL cluster owned by this test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "pgdata"
        self.port = free_port()
        # initdb refuses to run as root: run the cluster as `postgres` then.
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [*self.prefix, *args], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def init(self) -> None:
        if self.prefix:
            shutil.chown(self.root, user="postgres")
        self._run(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U",
            "postgres", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l",
            str(self.root / "pg.log"), "-o", options, "-w", "start",
        )  # fmt: skip

    def stop(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"


@contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"no PostgreSQL server binaries in {PG_BIN}")
    root = Path(tempfile.mkdtemp(prefix="swarmsite-readyz-"))
    cluster = PrivateCluster(root)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        subprocess.run(
            [*cluster.prefix, str(PG_BIN / "pg_ctl"), "-D", str(cluster.data),
             "-m", "immediate", "stop"],
            capture_output=True, timeout=60,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def get(port: int, path: str) -> tuple[int, dict, float]:
    """Status, body and seconds taken by one GET."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}{path}", timeout=10
        ) as response:
            return response.status, json.load(response), time.monotonic() - started
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc), time.monotonic() - started


def wait_for_ready(port: int, server: subprocess.Popen, log: Path) -> float:
    """Seconds until /readyz answers 200."""
    started = time.monotonic()
    while time.monotonic() - started < 60:
        assert server.poll() is None, log.read_text()
        try:
            if get(port, "/readyz")[0] == 200:
                return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"/readyz never answered 200:\n{log.read_text()}")


def test_readyz_answers_503_quickly_while_postgres_is_down_and_200_after(tmp_path):
    with private_cluster() as cluster:
        env = os.environ.copy()
        env.pop("REDIS_URL", None)
        env.update(
            DJANGO_DEBUG="true",
            DATABASE_URL=cluster.url,
            SWARMSITE_DATA_DIR=str(tmp_path / "data"),
            PYTHONUNBUFFERED="1",
        )
        migrate = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert migrate.returncode == 0, migrate.stderr
        port = free_port()
        log = tmp_path / "daphne.log"
        with log.open("ab") as out:
            server = subprocess.Popen(
                [str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1",
                 "-p", str(port), "swarmsite.asgi:application"],
                cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_for_ready(port, server, log)
            # Fill the pool with connections that the outage will break.
            for _ in range(5):
                assert get(port, "/readyz")[0] == 200

            cluster.stop()
            down = [get(port, "/readyz") for _ in range(4)]
            for status, body, seconds in down:
                assert status == 503, body
                assert body["status"] == "unavailable"
                assert body["problems"][0].startswith("database: ")
                assert seconds < 2.0, f"/readyz took {seconds:.2f}s"
            assert get(port, "/healthz")[0] == 200

            cluster.start()
            recovered_in = wait_for_ready(port, server, log)
            assert recovered_in < 30
            for _ in range(5):
                assert get(port, "/readyz")[0] == 200
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGKILL)
            server.wait(10)
