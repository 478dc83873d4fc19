"""`manage.py simulate` against a real daphne serving the test database."""

import os
import re
import time
from collections.abc import Iterator
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit.models import AuditLog, Event
from conversations.models import Message
from reports.selectors import project_stats, stats_window
from tasks.models import AgentRun, Task, TaskDependency
from tests.e2e.stack import Daphne

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    host = db["HOST"] or "localhost"
    return f"postgres://{auth}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def server(project, tmp_path) -> Iterator[str]:
    """A daphne process on a free port, on this test's database."""
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "DJANGO_DEBUG": "true",
        "AUDIT_REQUEST_FLUSH_SECONDS": "0.1",
        "API_THROTTLE_RATE": "100000/minute",
    }
    daphne = Daphne(env, tmp_path / "daphne.log", ready_path="/readyz")
    try:
        yield daphne.url
    finally:
        daphne.stop()


def _simulate(*args: str) -> str:
    out = StringIO()
    call_command("simulate", *args, stdout=out)
    return out.getvalue()


def _wait_for_request_audits(project, *, at_least: int) -> None:
    # The server writes request records in the background (every 0.1 s here).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if (
            AuditLog.objects.filter(project=project, action="api.request").count()
            >= at_least
        ):
            return
        time.sleep(0.1)


def test_simulation_runs_tasks_through_the_lifecycle_in_dependency_order(
    server, project
):
    # Stopped by finished goals, not by time: a loaded machine gets as far.
    out = _simulate(
        *("--url", server, "--project", "default", "--agents", "3", "--tasks", "3"),
        *("--duration", "120", "--rate", "400", "--fail-rate", "0.4", "--seed", "7"),
    )
    assert "Stopped: 3 goals finished" in out

    tasks = Task.objects.filter(project=project)
    assert tasks.filter(parent__isnull=True).count() >= 2
    assert tasks.filter(parent__isnull=False).count() >= 4
    reached = set(
        Event.objects.filter(project=project, kind="task.status_changed").values_list(
            "payload__to", flat=True
        )
    )
    assert {"queued", "running", "completed", "failed"} <= reached
    assert tasks.filter(status="completed").exists()

    # A subtask starts only once everything it depends on has completed.
    edges = TaskDependency.objects.filter(task__started_at__isnull=False)
    assert edges.exists()
    for edge in edges.select_related("task", "depends_on"):
        assert edge.depends_on.status == "completed"
        assert edge.depends_on.completed_at <= edge.task.started_at

    messages = Message.objects.filter(project=project)
    assert messages.filter(role="tool").exists()
    assert messages.exclude(model="").filter(prompt_tokens__gt=0).exists()
    runs = AgentRun.objects.filter(project=project)
    assert runs.filter(status="completed").exists()
    assert runs.filter(status="failed").exists()
    assert AuditLog.objects.filter(project=project, action="tool.invoke").exists()

    # No request of the simulation was refused or failed on the server.
    calls = int(re.search(r"and (\d+) API calls \(0 retried\)", out).group(1))
    _wait_for_request_audits(project, at_least=calls)
    api = project_stats(project=project, window=stats_window())["api"]
    assert (api["requests"], api["errors"]) == (calls, 0)


def test_simulation_stops_once_the_requested_goals_are_finished(server, project):
    out = _simulate(
        *("--url", server, "--agents", "2", "--tasks", "1", "--rate", "400"),
        *("--duration", "60", "--fail-rate", "0", "--seed", "3"),
    )
    assert "Stopped: 1 goals finished" in out
    (goal,) = Task.objects.filter(project=project, parent__isnull=True)
    assert goal.status == "completed"
    assert goal.subtasks.exclude(status="completed").count() == 0
    assert goal.subtasks.count() >= 2


def test_simulation_refuses_a_key_the_server_rejects(server):
    with pytest.raises(CommandError, match="refused the API key"):
        _simulate("--url", server, "--api-key", "ss_00000000_nope", "--duration", "1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--agents", "0"), "--agents must be from 1 to 100"),
        (("--rate", "0"), "--rate must be above 0"),
        (("--fail-rate", "2"), "--fail-rate must be from 0 to 1"),
        (("--url", "ftp://example.com"), "--url must be an http"),
        (("--project", "nope"), "No project 'nope'"),
    ],
)
def test_simulation_refuses_bad_options_before_any_request(args, message):
    with pytest.raises(CommandError, match=message):
        _simulate("--url", "http://127.0.0.1:9", *args)
