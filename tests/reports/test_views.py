import uuid
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from audit.middleware import buffer, flush_request_audits
from tasks.services import agent_register, task_create
from tests.conftest import assert_error, assert_fields, count_queries
from tests.reports.factories import SINCE, UNTIL, api_requests, task_at

pytestmark = pytest.mark.django_db

URL = "/api/v1/stats/"
KNOWN = URL + "?" + urlencode({"since": SINCE.isoformat(), "until": UNTIL.isoformat()})


def test_stats_report_the_known_figures(api, known):
    response = api.get(KNOWN)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["window"] == {
        "since": "2026-01-10T00:00:00Z",
        "until": "2026-01-11T00:00:00Z",
    }
    tasks = body["tasks"]
    assert (tasks["total"], tasks["finished"]) == (10, 7)
    assert tasks["by_status"]["completed"] == 5
    assert tasks["completion_rate"] == 0.714286
    assert tasks["duration_seconds"] == {
        "count": 5,
        "avg": 40.0,
        "p50": 30.0,
        "p95": 88.0,
    }
    assert body["usage"] == {
        "messages": 3,
        "runs": 1,
        "prompt_tokens": 1300,
        "completion_tokens": 650,
        "cached_tokens": 10,
        "total_tokens": 1950,
        "cost": "0.024500",
    }
    worker = body["by_agent"][0]
    assert worker["agent"] == str(known["worker"].pk)
    assert (worker["name"], worker["cost"], worker["tasks"]) == (
        "worker",
        "0.023000",
        3,
    )
    assert [m["model"] for m in body["by_model"]] == ["claude", "gpt-4o", ""]
    api_block = body["api"]
    assert (api_block["requests"], api_block["errors"]) == (5, 2)
    assert api_block["error_rate"] == 0.4
    assert api_block["by_endpoint"][0] == {
        "method": "GET",
        "endpoint": "tasks:task-detail",
        "requests": 3,
        "errors": 1,
        "server_errors": 0,
        "error_rate": 0.333333,
        "avg_duration_ms": 20.0,
    }


def test_stats_count_only_the_callers_project(other_project, make_api_client, known):
    body = make_api_client(other_project, scopes=("read",)).get(KNOWN).json()
    assert body["tasks"]["total"] == 1
    assert body["usage"]["prompt_tokens"] == 5000
    assert [a["name"] for a in body["by_agent"]] == ["spy"]
    assert body["api"]["requests"] == 1


def test_stats_default_to_the_last_24_hours(api, project):
    agent = agent_register(project=project, name="now")[0]
    task_create(project=project, title="fresh", assigned_agent=agent)
    task_at(project, created=timezone.now() - timedelta(hours=25))
    body = api.get(URL).json()
    assert body["tasks"]["total"] == 1
    assert body["by_agent"][0]["name"] == "now"
    since = timezone.datetime.fromisoformat(body["window"]["since"])
    until = timezone.datetime.fromisoformat(body["window"]["until"])
    assert until - since == timedelta(hours=24)
    assert abs(timezone.now() - until) < timedelta(minutes=1)


def test_stats_accept_an_unencoded_plus_offset_and_naive_times(api, known):
    plus = api.get(URL + "?since=2026-01-10T02:00:00+02:00&until=2026-01-11T00:00:00")
    assert plus.status_code == 200, plus.content
    assert plus.json()["window"]["since"] == "2026-01-10T00:00:00Z"
    assert plus.json()["tasks"]["total"] == 10


def test_stats_count_requests_recorded_by_the_audit_middleware(api, project, task):
    buffer.clear()
    api.get(f"/api/v1/tasks/{task.pk}/")
    api.get(f"/api/v1/tasks/{task.pk}/")
    api.get(f"/api/v1/tasks/{uuid.uuid4()}/")
    flush_request_audits()
    body = api.get(URL).json()["api"]
    assert (body["requests"], body["errors"]) == (3, 1)
    (group,) = body["by_endpoint"]
    assert (group["method"], group["endpoint"]) == ("GET", "tasks:task-detail")
    assert (group["requests"], group["errors"], group["server_errors"]) == (3, 1, 0)


def test_stats_refuse_empty_values_naming_them(api):
    response = api.get(URL + "?since=&until=%20&format=json")
    assert set(assert_fields(response)) == {"since", "until"}


def test_staff_session_sees_the_default_project(staff_client, known):
    response = staff_client.get(KNOWN)
    assert response.status_code == 200
    assert response.json()["tasks"]["total"] == 10


# Refusals -----------------------------------------------------------------


def test_stats_without_a_key_answer_401():
    assert_error(APIClient().get(URL), 401, "not_authenticated")


def test_stats_with_a_bad_key_answer_401():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-key")
    assert_error(client.get(URL), 401, "authentication_failed")


def test_stats_with_a_key_lacking_read_scope_answer_403(project, make_api_client):
    writer = make_api_client(project, scopes=("write",))
    assert_error(writer.get(URL), 403, "permission_denied")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01T00:00:00Z"}, "until"),
        ({"since": "2026-01-11T00:00:00Z", "until": "2026-01-10T00:00:00Z"}, "until"),
        ({"since": "2026-01-10T00:00:00Z", "until": "2026-01-10T00:00:00Z"}, "until"),
        ({"since": "2026-01-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"}, "since"),
        ({"from": "2026-01-01T00:00:00Z"}, "from"),
    ],
)
def test_stats_refuse_a_bad_window_naming_the_field(api, query, field):
    body = assert_error(api.get(URL + "?" + urlencode(query)), 400, "validation_error")
    assert list(body["fields"]) == [field]


def test_stats_window_limit_comes_from_settings(api, settings):
    settings.STATS_MAX_WINDOW_DAYS = 2
    query = {"since": "2026-01-01T00:00:00Z", "until": "2026-01-03T00:00:01Z"}
    body = assert_error(api.get(URL + "?" + urlencode(query)), 400, "validation_error")
    assert body["fields"] == {"since": ["The window may span at most 2 days."]}


def test_stats_refuse_writes(project, make_api_client):
    client = make_api_client(project, scopes=("read", "write"))
    assert_error(client.post(URL, {}, format="json"), 405, "method_not_allowed")


# Cost ---------------------------------------------------------------------


def test_stats_queries_do_not_grow_with_agents_or_endpoints(api, project, known):
    count_queries(api, KNOWN)  # the key's first use records its last-used time
    before = count_queries(api, KNOWN)
    for n in range(15):
        agent = agent_register(project=project, name=f"more-{n}")[0]
        task_at(project, status="completed", agent=agent, seconds=n + 1)
        api_requests(project, [("PATCH", f"app:route-{n}", 200, 2.0)])
    assert count_queries(api, KNOWN) == before
