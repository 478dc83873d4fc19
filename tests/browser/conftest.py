"""A real stack for the browser tests: daphne on a database of its own, a staff
user, an API key, and Debian's chromium driven by Playwright.

They run on SQLite only (see `pytestmark` in the tests): the pages and their
script are the same on both databases, the snapshot's queries are tested on
both in tests/reports/test_swarm.py, and one run of a browser stack is enough
time spent in CI.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.stack import Daphne, Http, base_env, fresh_database, manage, prepare

CHROMIUM = Path("/usr/bin/chromium")
ADMIN_PASSWORD = f"pw-{uuid.uuid4().hex[:12]}"

try:
    from playwright import sync_api
except ImportError:  # requirements-dev.txt installs it
    sync_api = None


@dataclass
class Stack:
    url: str
    key: str
    env: dict[str, str]
    daphne: Daphne

    def api(self) -> Http:
        return Http(self.daphne.port, self.key)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("browser-stack")
    with fresh_database(tmp) as database_url:
        env = base_env(
            tmp,
            database_url,
            ADMIN_PASSWORD=ADMIN_PASSWORD,
            AUDIT_REQUEST_FLUSH_SECONDS="0.5",
        )
        key = prepare(env)
        manage(env, "ensure_admin")
        daphne = Daphne(env, tmp / "daphne.log", ready_path="/readyz")
        try:
            yield Stack(url=daphne.url, key=key, env=env, daphne=daphne)
        finally:
            daphne.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if sync_api is None:
        pytest.skip("playwright is not installed (requirements-dev.txt)")
    if not CHROMIUM.exists() and not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    with sync_api.sync_playwright() as playwright:
        binary = CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")
        chromium = playwright.chromium.launch(
            executable_path=str(binary), args=["--no-sandbox"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


class JsErrors(list):
    """Console errors and uncaught exceptions of a page.

    The browser's own request for /favicon.ico (the admin has no icon) is
    not the page's error and is left out.
    """

    def watch(self, page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.append(f"pageerror: {error}"))

    def _console(self, message) -> None:
        if message.type != "error":
            return
        url = (message.location or {}).get("url", "")
        if url.endswith("/favicon.ico"):
            return
        self.append(f"console: {message.text} ({url})")


def log_in(page, stack: Stack, next_path: str = "/admin/swarm/") -> None:
    """Through the admin's real login form."""
    page.goto(f"{stack.url}/admin/login/?next={next_path}")
    page.fill("#id_username", "admin")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{stack.url}{next_path}*")


@pytest.fixture(scope="module")
def login_state(browser, stack, tmp_path_factory) -> str:
    """A logged-in staff session, saved for the pages of later tests."""
    context = browser.new_context()
    page = context.new_page()
    log_in(page, stack)
    path = tmp_path_factory.mktemp("browser-state") / "state.json"
    context.storage_state(path=str(path))
    context.close()
    return str(path)


@pytest.fixture
def staff_page(browser, login_state) -> Iterator[tuple[object, JsErrors]]:
    context = browser.new_context(
        storage_state=login_state, viewport={"width": 1440, "height": 1000}
    )
    page = context.new_page()
    errors = JsErrors()
    errors.watch(page)
    try:
        yield page, errors
    finally:
        context.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    """Where the tests save what the pages looked like: `SWARM_SCREENSHOTS`
    or a temporary folder; the tests print it."""
    folder = os.environ.get("SWARM_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("swarm-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
