"""Request audit records under a real daphne: written in the background, and
the ones still queued when the server is told to stop are written on exit."""

import json
import time

import pytest

from tests.e2e.stack import Daphne, Http, base_env, fresh_database, manage, prepare

pytestmark = pytest.mark.slow

COUNT = """
import json
from audit.models import AuditLog
from audit.chain import audit_chain_verify
from swarmsite.models import Project
project = Project.objects.get(slug="default")
rows = AuditLog.objects.filter(action="api.request")
print("RESULT:" + json.dumps({
    "records": rows.count(),
    "failures": rows.filter(success=False).count(),
    "intact": audit_chain_verify(project_id=project.pk).intact,
}))
"""


def _stored(env) -> dict:
    out = manage(env, "shell", "-c", COUNT)
    line = [row for row in out.splitlines() if row.startswith("RESULT:")][-1]
    return json.loads(line[len("RESULT:") :])


def test_daphne_writes_request_records_in_the_background_and_at_shutdown(tmp_path):
    with fresh_database(tmp_path) as database_url:
        env = base_env(tmp_path, database_url, AUDIT_REQUEST_FLUSH_SECONDS="0.2")
        key = prepare(env)
        server = Daphne(env, tmp_path / "daphne.log")
        try:
            http = Http(server.port, key)
            for _ in range(20):
                assert http.request("GET", "/api/v1/tasks/")[0] == 200
            assert Http(server.port).request("GET", "/api/v1/tasks/")[0] == 401
            deadline = time.monotonic() + 20
            while _stored(env)["records"] < 21 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _stored(env) == {"records": 21, "failures": 1, "intact": True}
        finally:
            server.stop()

        # A long interval: these stay queued until the server exits.
        env["AUDIT_REQUEST_FLUSH_SECONDS"] = "3600"
        server = Daphne(env, tmp_path / "daphne.log")
        try:
            http = Http(server.port, key)
            for _ in range(15):
                assert http.request("GET", "/api/v1/agents/")[0] == 200
            assert _stored(env)["records"] == 21
        finally:
            server.stop()
        assert server.process.returncode == 0, server.log.read_text()
        assert _stored(env) == {"records": 36, "failures": 1, "intact": True}
