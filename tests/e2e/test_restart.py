"""Data written before a server restart is there after it.

Real processes on a fresh database (not the test database): migrate, daphne,
a write through the services, SIGKILL, a second daphne, a read.
"""

import json
import os
import signal

import pytest

from tests.e2e.stack import Daphne, Http, fresh_database, manage

pytestmark = pytest.mark.slow

MARK = "RESULT:"

WRITE = f"""
import json
from swarmsite.models import Project
from tasks.services import task_create, task_transition
from conversations.services import conversation_create, message_append_one
project = Project.objects.get(slug="default")
task, _ = task_create(project=project, title="survives a restart")
task_transition(task=task, status="running")
conversation, _ = conversation_create(project=project, task=task)
message_append_one(conversation=conversation, role="user", content="hello")
print("{MARK}" + json.dumps({{"task": str(task.pk)}}))
"""


def read_script(task_id: str) -> str:
    return f"""
import json
from audit.models import Event
from audit.chain import audit_chain_verify
from tasks.models import Task
task = Task.objects.get(pk="{task_id}")
kinds = list(
    Event.objects.filter(task_id=task.pk)
    .order_by("position")
    .values_list("kind", flat=True)
)
print("{MARK}" + json.dumps({{
    "title": task.title,
    "status": task.status,
    "version": task.version,
    "messages": sum(c.message_count for c in task.conversations.all()),
    "kinds": kinds,
    "chain_intact": audit_chain_verify(project_id=task.project_id).intact,
}}))
"""


def shell(env: dict[str, str], code: str) -> dict:
    out = manage(env, "shell", "-c", code)
    lines = [line for line in out.splitlines() if line.startswith(MARK)]
    assert lines, out
    return json.loads(lines[-1][len(MARK) :])


def test_a_task_written_before_a_server_kill_is_there_after_restart(tmp_path):
    with fresh_database(tmp_path) as database_url:
        env = os.environ.copy()
        # The database is what must survive; the channel layer is left out.
        env.pop("REDIS_URL", None)
        env.update(
            DJANGO_DEBUG="true",
            DATABASE_URL=database_url,
            SWARMSITE_DATA_DIR=str(tmp_path / "data"),
            PYTHONUNBUFFERED="1",
        )
        log = tmp_path / "daphne.log"
        manage(env, "migrate", "--noinput", "-v", "0")

        server = Daphne(env, log)
        try:
            assert Http(server.port).request("GET", "/healthz") == (
                200,
                {"status": "ok"},
            )
            task_id = shell(env, WRITE)["task"]
        finally:
            server.kill()
        assert server.process.returncode == -signal.SIGKILL

        server = Daphne(env, log, ready_path="/readyz")
        try:
            assert Http(server.port).request("GET", "/readyz") == (
                200,
                {"status": "ok"},
            )
            stored = shell(env, read_script(task_id))
        finally:
            server.kill()

    assert stored == {
        "title": "survives a restart",
        "status": "running",
        "version": 2,
        "messages": 1,
        "kinds": [
            "task.created",
            "task.status_changed",
            "conversation.created",
            "message.created",
        ],
        "chain_intact": True,
    }
