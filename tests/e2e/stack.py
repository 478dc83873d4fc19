"""Real processes for stream tests and benchmarks: daphne, redis-server, HTTP.

Each stack gets a database of its own (a SQLite file, or a fresh PostgreSQL
database when the tests run on PostgreSQL) and ports the OS picked.
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path

from django.conf import settings

BASE_DIR = Path(settings.BASE_DIR)
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _admin_params(db: dict) -> dict:
    return {
        "host": db["HOST"] or "localhost",
        "port": db["PORT"] or 5432,
        "user": db["USER"],
        "password": db["PASSWORD"] or None,
        "dbname": "postgres",
        "autocommit": True,
    }


def _postgres_url(db: dict, name: str) -> str:
    params = _admin_params(db)
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{params['host']}:{params['port']}/{name}"


_template: dict[str, str] = {}


def _migrated_template() -> str:
    """A database `migrate` made, once per test process, that fresh ones copy.

    Migrating takes about 8 s of CPU (Django renders the model states of
    every migration); a copy takes milliseconds. Dropped when the process
    ends.
    """
    if "name" in _template:
        return _template["name"]
    db = settings.DATABASES["default"]
    env = {**os.environ, "DJANGO_DEBUG": "true"}
    env.pop("DATABASE_TEST_NAME", None)
    if db["ENGINE"] == "django.db.backends.sqlite3":
        folder = Path(tempfile.mkdtemp(prefix="swarmsite-template-"))
        name = str(folder / "template.sqlite3")
        atexit.register(shutil.rmtree, folder, True)
        env["DATABASE_URL"] = f"sqlite:///{name}"
    else:
        import psycopg

        name = f"swarmsite_template_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(**_admin_params(db)) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')

        def drop() -> None:
            with psycopg.connect(**_admin_params(db)) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        atexit.register(drop)
        env["DATABASE_URL"] = _postgres_url(db, name)
    manage(env, "migrate", "--noinput", "-v", "0")
    _template["name"] = name
    return name


@contextmanager
def fresh_database(tmp_path: Path) -> Iterator[str]:
    """A DATABASE_URL for a migrated database made for this stack, removed after.

    A copy of `_migrated_template()`: the state `migrate` leaves, as if it
    had just run (running it again applies nothing).
    """
    db = settings.DATABASES["default"]
    template = _migrated_template()
    if db["ENGINE"] == "django.db.backends.sqlite3":
        path = tmp_path / "e2e.sqlite3"
        with (
            closing(sqlite3.connect(template)) as source,
            closing(sqlite3.connect(path)) as target,
        ):
            source.backup(target)
        yield f"sqlite:///{path}"
        return
    import psycopg

    name = f"swarmsite_e2e_{uuid.uuid4().hex[:12]}"
    params = _admin_params(db)
    with psycopg.connect(**params) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield _postgres_url(db, name)
    finally:
        with psycopg.connect(**params) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def base_env(tmp_path: Path, database_url: str, **extra: str) -> dict[str, str]:
    env = os.environ.copy()
    for name in ("REDIS_URL", "CHANNEL_LAYER_BACKEND"):
        env.pop(name, None)
    env.update(
        DJANGO_DEBUG="true",
        DATABASE_URL=database_url,
        SWARMSITE_DATA_DIR=str(tmp_path / "data"),
        PYTHONUNBUFFERED="1",
        API_THROTTLE_RATE="1000000/minute",
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def prepare(env: dict[str, str]) -> str:
    """Migrate and return a read/write API key of the default project."""
    manage(env, "migrate", "--noinput", "-v", "0")
    out = manage(
        env,
        "create_api_key",
        "--project",
        "default",
        "--name",
        f"streams-{uuid.uuid4().hex[:8]}",
        "--scopes",
        "read,write",
    )
    return out.strip().splitlines()[-1]


READY_SECONDS = 120


class Daphne:
    """One daphne process on a free port, logging to a file.

    Ready once `ready_path` answers 200 (`/readyz` also waits for the
    database).
    """

    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        ready_path: str = "/healthz",
        port: int | None = None,
    ) -> None:
        # `port`: restart on the port of a killed predecessor, so clients
        # keep their address.
        self.port = port or free_port()
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    str(BIN / "daphne"),
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "swarmsite.asgi:application",
                ],
                cwd=BASE_DIR,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.wait_ready(ready_path)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v1/events/"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, path: str = "/healthz") -> None:
        # Generous: on a loaded 2-core machine Django's start alone can take
        # tens of seconds, and a slow start is not what these tests check.
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                status, _ = Http(self.port).request("GET", path)
            except OSError:
                status = 0
            if status == 200:
                return
            time.sleep(0.1)
        raise AssertionError(f"daphne never answered:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, as a supervisor stops it: queued work is written first."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def postgres_binaries() -> Path | None:
    """The bin folder of the newest PostgreSQL server installed, if any."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: (
            int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0
        ),
    )
    return found[-1].parent if found else None


class PostgresCluster:
    """A private PostgreSQL cluster on a free port in a temporary folder.

    Never the machine's shared server: its own data folder, port and socket
    folder. As root, it runs as the `postgres` OS user (initdb refuses root).
    """

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="swarmsite-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.prefix:
            shutil.chown(self.root, user="postgres")

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self.prefix, str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c max_connections=60"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "pg.log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self, name: str) -> str:
        """A new database in the cluster; its DATABASE_URL."""
        self._run(
            "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            name,
        )  # fmt: skip
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def destroy(self) -> None:
        """Stop the cluster if it runs and remove its folder."""
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [*self.prefix, str(self.bin / "pg_ctl"), "-D", str(self.data),
                 "-m", "immediate", "-w", "stop"],
                capture_output=True, timeout=60,
            )  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def log_text(self) -> str:
        path = self.root / "pg.log"
        return path.read_text(errors="replace") if path.exists() else ""


class Redis:
    """A private redis-server on a free port that a test may stop and start."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.dir = tmp_path
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


class Http:
    """A keep-alive JSON client of one server, for one thread."""

    def __init__(self, port: int, key: str | None = None) -> None:
        self.port = port
        self.key = key
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body=None) -> tuple[int, object]:
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        payload = json.dumps(body) if body is not None else None
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, 10)
            try:
                self.conn.request(method, path, payload, headers)
                response = self.conn.getresponse()
                data = response.read()
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
                continue
            try:
                return response.status, json.loads(data) if data else None
            except ValueError:
                return response.status, data.decode(errors="replace")
        raise AssertionError("unreachable")

    def append(self, **fields) -> dict:
        status, body = self.request(
            "POST", "/api/v1/events/", {"kind": "e2e", **fields}
        )
        assert status == 201, (status, body)
        return body

    def positions(self, query: str = "") -> list[int]:
        """Every position the database holds for a filter, in order."""
        found: list[int] = []
        after = 0
        while True:
            status, body = self.request(
                "GET", f"/api/v1/events/?after={after}&page_size=500{query}"
            )
            assert status == 200, body
            found += [e["position"] for e in body["results"]]
            if not body["results"]:
                return found
            after = body["next_after"]


class Answer:
    """One attempt of a request: status 0 when no HTTP answer came."""

    __slots__ = ("status", "error", "retry_after", "body", "started", "ended")

    def __init__(self, status, error, retry_after, body, started, ended) -> None:
        self.status = status
        self.error = error
        self.retry_after = retry_after
        self.body = body
        self.started = started
        self.ended = ended

    def __repr__(self) -> str:
        what = self.error if self.status == 0 else str(self.body)[:300]
        return f"<{self.status} {what} retry_after={self.retry_after}>"


class RetryingIngest:
    """A client that resends the same ingest batch until it gets an answer.

    Connection errors (refused, reset, timeouts), 429 and 5xx are retried
    with the same items (and so the same ids), after `Retry-After` (capped
    at `max_wait`) or `pause`. Every attempt is kept in `answers`.
    """

    RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

    def __init__(
        self,
        port: int,
        key: str,
        *,
        timeout: float = 30,
        pause: float = 0.05,
        max_wait: float = 1.0,
        give_up_after: float = 120,
        max_attempts: int = 5000,
    ) -> None:
        self.port = port
        self.key = key
        self.timeout = timeout
        self.pause = pause
        self.max_wait = max_wait
        self.give_up_after = give_up_after
        self.max_attempts = max_attempts
        self.conn: http.client.HTTPConnection | None = None
        self.answers: list[Answer] = []

    def _attempt(self, payload: bytes) -> Answer:
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.key}",
        }
        started = time.monotonic()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=self.timeout
                )
            self.conn.request("POST", "/api/v1/ingest/", payload, headers)
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return Answer(0, type(exc).__name__, None, None, started, time.monotonic())
        try:
            body = json.loads(data) if data else None
        except ValueError:
            body = data.decode(errors="replace")
        if response.getheader("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = None
        return Answer(
            response.status,
            "",
            response.getheader("Retry-After"),
            body,
            started,
            time.monotonic(),
        )

    def send(self, items: list[dict]) -> Answer:
        """The first answer that is not retried (200, 207, 4xx)."""
        payload = json.dumps({"items": items}).encode()
        deadline = time.monotonic() + self.give_up_after
        for _ in range(self.max_attempts):
            answer = self._attempt(payload)
            self.answers.append(answer)
            if answer.status != 0 and answer.status not in self.RETRY_STATUSES:
                return answer
            if time.monotonic() > deadline:
                break
            wait = self.pause
            if answer.retry_after:
                with suppress(ValueError):
                    wait = min(float(answer.retry_after), self.max_wait)
            time.sleep(wait)
        raise AssertionError(f"gave up on a batch; last answer {answer}")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
