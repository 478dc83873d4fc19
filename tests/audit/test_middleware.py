import time
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from audit.chain import audit_chain_verify
from audit.middleware import buffer, flush_request_audits
from audit.models import AuditLog
from audit.services import ApiRequestRecord
from swarmsite.actors import SYSTEM

pytestmark = pytest.mark.django_db


def _requests(project=None):
    entries = AuditLog.objects.filter(action="api.request")
    if project is not None:
        entries = entries.filter(project=project)
    return list(entries.order_by("seq"))


def test_an_api_request_is_queued_then_written_with_its_context(
    project, make_api_client
):
    api = make_api_client(project, name="recorder")
    response = api.get(
        "/api/v1/tasks/?status=pending",
        HTTP_USER_AGENT="agent-sdk/1.0",
        HTTP_X_REQUEST_ID="req-42",
    )
    assert response.status_code == 200
    assert _requests() == []

    assert flush_request_audits() == 1
    [entry] = _requests(project)
    assert entry.method == "GET"
    assert entry.path == "/api/v1/tasks/"
    assert entry.target == "tasks:task-list"
    assert entry.status_code == 200
    assert entry.success is True
    assert entry.duration_ms >= 0
    assert entry.ip == "127.0.0.1"
    assert entry.user_agent == "agent-sdk/1.0"
    assert entry.request_id == response["X-Request-ID"] == "req-42"
    assert (entry.actor_type, entry.actor_label) == ("api_key", "recorder")
    assert audit_chain_verify(project_id=project.pk).intact


def test_failed_requests_are_recorded_as_failures_of_the_callers_project(project, api):
    api.post("/api/v1/tasks/", {"title": ""}, format="json")
    api.get(f"/api/v1/tasks/{uuid.uuid4()}/")
    flush_request_audits()
    assert [(e.method, e.status_code, e.success) for e in _requests(project)] == [
        ("POST", 400, False),
        ("GET", 404, False),
    ]


def test_requests_without_a_valid_key_are_recorded_on_default_as_anonymous(
    project, other_project
):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer ss_0badc0de_not-the-secret")
    assert client.get("/api/v1/tasks/").status_code == 401
    assert APIClient().get("/api/v1/events/").status_code == 401
    flush_request_audits()
    entries = _requests(project)
    assert [(e.path, e.status_code, e.actor_label) for e in entries] == [
        ("/api/v1/tasks/", 401, "anonymous"),
        ("/api/v1/events/", 401, "anonymous"),
    ]
    assert entries[0].details == {"key_prefix": "0badc0de"}
    assert entries[1].details == {}
    assert "not-the-secret" not in str(entries[0].details)
    assert _requests(other_project) == []


def test_a_staff_session_is_recorded_on_the_default_project(project, staff_client):
    assert staff_client.get("/api/v1/tasks/").status_code == 200
    flush_request_audits()
    [entry] = _requests(project)
    assert (entry.actor_type, entry.actor_label) == ("user", "admin")


def test_unknown_api_paths_are_recorded_and_other_paths_are_not(project):
    client = APIClient()
    assert client.get("/api/v2/nothing").status_code == 404
    assert client.get("/healthz").status_code == 200
    assert client.get("/admin/login/").status_code == 200
    flush_request_audits()
    assert [(e.path, e.status_code) for e in _requests()] == [("/api/v2/nothing", 404)]


def test_a_path_with_a_nul_character_is_stored_without_it(project):
    APIClient().get("/api/v1/x%00y/")
    assert flush_request_audits() == 1
    assert _requests(project)[0].path == "/api/v1/x\ufffdy/"


def test_a_flush_writes_in_bulk_with_a_query_count_independent_of_its_size(
    project, api
):

    def flush_queries(requests: int) -> int:
        for _ in range(requests):
            api.get("/api/v1/agents/")
        with CaptureQueriesContext(connection) as ctx:
            assert flush_request_audits() == requests
        return len(ctx.captured_queries)

    flush_queries(1)
    # 30 rows fit in one INSERT even under SQLite's 999-parameter limit.
    assert flush_queries(2) == flush_queries(30)
    seqs = [e.seq for e in _requests(project)]
    assert seqs == list(range(seqs[0], seqs[0] + 33))
    assert audit_chain_verify(project_id=project.pk).intact


def test_flushes_split_into_batches(project, make_api_client, settings):
    settings.AUDIT_REQUEST_BATCH_SIZE = 4
    api = make_api_client(project)
    for _ in range(10):
        api.get("/api/v1/agents/")
    with CaptureQueriesContext(connection) as ctx:
        assert flush_request_audits() == 10
    inserts = [
        q for q in ctx.captured_queries if 'INSERT INTO "audit_auditlog"' in q["sql"]
    ]
    assert len(inserts) == 3


def test_a_full_queue_drops_new_records_and_counts_them_never_failing_requests(
    project, make_api_client, settings
):
    settings.AUDIT_REQUEST_QUEUE_SIZE = 3
    api = make_api_client(project)
    dropped = buffer.dropped
    for _ in range(5):
        assert api.get("/api/v1/agents/").status_code == 200
    assert buffer.dropped - dropped == 2
    assert flush_request_audits() == 3


def test_a_batch_the_database_refuses_is_logged_counted_and_dropped(
    project, api, caplog
):
    api.get("/api/v1/agents/")
    broken = ApiRequestRecord(
        project_id=project.pk,
        actor=SYSTEM,
        method="GET",
        path="/api/v1/x/",
        route="",
        status_code=200,
        duration_ms=1.0,
        ip=None,
        user_agent="",
        request_id="r",
        occurred_at=timezone.now(),
        details={"not json": object()},
    )
    buffer.add(broken)
    failures, dropped = buffer.failures, buffer.dropped
    assert flush_request_audits() == 0
    assert (buffer.failures - failures, buffer.dropped - dropped) == (1, 2)
    assert "Could not write 2 API request audit records" in caplog.text
    assert _requests() == []
    assert audit_chain_verify(project_id=project.pk).intact


def test_records_of_a_deleted_project_are_skipped_and_counted(
    project, other_project, make_api_client
):
    make_api_client(other_project).get("/api/v1/agents/")
    make_api_client(project, name="mine").get("/api/v1/agents/")
    other_project.api_keys.all().delete()
    other_project.delete()
    dropped = buffer.dropped
    assert flush_request_audits() == 1
    assert buffer.dropped - dropped == 1


@pytest.mark.django_db(transaction=True)
def test_the_background_thread_writes_queued_records_within_its_interval(
    project, make_api_client, settings
):
    settings.AUDIT_REQUEST_FLUSH_SECONDS = 0.05
    api = make_api_client(project)
    try:
        assert api.get("/api/v1/agents/").status_code == 200
        deadline = time.monotonic() + 10
        while not _requests(project) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(_requests(project)) == 1
        assert len(buffer) == 0
    finally:
        buffer.stop()
