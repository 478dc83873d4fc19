"""One real daphne for the client's tests, on its own database.

The server is shared by the tests of the session; a test that kills it
starts it again on the same port (`Server.restart`), so the others keep
their URL. Each test works on its own tasks, kinds and conversations.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import BASE_DIR, BIN, Daphne, base_env, fresh_database, prepare


class Server(Daphne):
    """A daphne that can be SIGKILLed and started again on the same port."""

    def __init__(self, env: dict[str, str], log: Path, port: int | None = None):
        if port is None:
            super().__init__(env, log)
        else:
            self._start(env, log, port)
        self.env = env

    def _start(self, env: dict[str, str], log: Path, port: int) -> None:
        self.port = port
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    str(BIN / "daphne"),
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "swarmsite.asgi:application",
                ],
                cwd=BASE_DIR,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.wait_ready("/readyz")

    def restart(self) -> None:
        """SIGKILL (if running), then a new daphne on the same port and DB."""
        self.kill()
        self._start(self.env, self.log, self.port)

    def ensure_running(self) -> None:
        if self.process.poll() is not None:
            self._start(self.env, self.log, self.port)


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[Server]:
    tmp_path = tmp_path_factory.mktemp("client-stack")
    with fresh_database(tmp_path) as database_url:
        env = base_env(tmp_path, database_url)
        key = prepare(env)
        daphne = Server(env, tmp_path / "daphne.log")
        daphne.key = key
        try:
            yield daphne
        finally:
            daphne.kill()


@pytest.fixture
def live(server) -> Server:
    """The shared server, running (a test before may have killed it)."""
    server.ensure_running()
    return server


@pytest.fixture
def client(live):
    from swarmsite_client import Client

    with Client(live.url, live.key) as c:
        yield c
