"""GET /metrics: Prometheus text, denied by default, counters that move."""

import pytest
from django.db import connection, transaction
from django.test import override_settings
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from swarmsite.metrics import UNMATCHED_ROUTE
from tasks.services import task_create
from tests.conftest import assert_error
from tests.swarmsite.factories import ApiKeyFactory
from tests.utils import postgres_only

pytestmark = pytest.mark.django_db

TOKEN = "scraper-token-for-tests-0123456789"


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _scrape(client, secret: str = TOKEN) -> dict[str, list]:
    with override_settings(METRICS_TOKEN=TOKEN):
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    families = text_string_to_metric_families(response.content.decode())
    return {family.name: family.samples for family in families}


def test_metrics_refuses_a_request_without_credentials(client):
    with override_settings(METRICS_TOKEN=TOKEN):
        response = client.get("/metrics")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_metrics_refuses_a_wrong_token(client):
    with override_settings(METRICS_TOKEN=TOKEN):
        response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token")
    assert_error(response, 401, "authentication_failed")


def test_metrics_without_a_configured_token_accepts_no_empty_bearer(client):
    with override_settings(METRICS_TOKEN=""):
        response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer ")
        assert response.status_code == 401
        response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer x")
    assert response.status_code == 401


def test_metrics_refuses_a_key_without_admin_scope(client, project):
    secret = ApiKeyFactory(project=project, scopes=["read", "write"]).secret
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert_error(response, 403, "permission_denied")


def test_metrics_accepts_an_admin_scope_key(client, project):
    secret = ApiKeyFactory(project=project, scopes=["admin"]).secret
    families = _scrape(client, secret)
    assert "swarmsite_http_requests" in families


def test_metrics_accepts_the_configured_token(client):
    families = _scrape(client)
    assert "swarmsite_events_written" in families
    assert "swarmsite_websocket_connections" in families
    assert "swarmsite_notification_failures" in families
    assert "swarmsite_ingest_items" in families


def test_requests_are_counted_and_timed_by_route_name_not_path(client, api, project):
    task = task_create(project=project, title="counted")[0]
    labels = {"route": "tasks:task-detail", "method": "GET", "status": "200"}
    before = _sample("swarmsite_http_requests_total", **labels)
    timed_before = _sample(
        "swarmsite_http_request_duration_seconds_count",
        route="tasks:task-detail",
        method="GET",
    )
    assert api.get(f"/api/v1/tasks/{task.pk}/").status_code == 200
    assert api.get(f"/api/v1/tasks/{task.pk}/").status_code == 200

    families = _scrape(client)
    assert _sample("swarmsite_http_requests_total", **labels) == before + 2
    assert (
        _sample(
            "swarmsite_http_request_duration_seconds_count",
            route="tasks:task-detail",
            method="GET",
        )
        == timed_before + 2
    )
    routes = {s.labels.get("route") for s in families["swarmsite_http_requests"]}
    assert not any(str(task.pk) in (route or "") for route in routes)


def test_unknown_paths_share_one_route_label(client):
    labels = {"route": UNMATCHED_ROUTE, "method": "GET", "status": "404"}
    before = _sample("swarmsite_http_requests_total", **labels)
    client.get("/no-such-page-1")
    client.get("/no-such-page-2")
    assert _sample("swarmsite_http_requests_total", **labels) == before + 2


def test_refused_requests_are_counted_with_their_status(client):
    labels = {"route": "tasks:task-list", "method": "GET", "status": "401"}
    before = _sample("swarmsite_http_requests_total", **labels)
    assert client.get("/api/v1/tasks/").status_code == 401
    assert _sample("swarmsite_http_requests_total", **labels) == before + 1


def test_events_written_counts_committed_events_only(client, project):
    before = _sample("swarmsite_events_written_total")
    with pytest.raises(RuntimeError), transaction.atomic():
        task_create(project=project, title="rolled back")
        raise RuntimeError("roll back")
    assert _sample("swarmsite_events_written_total") == before

    task_create(project=project, title="one event")

    assert _sample("swarmsite_events_written_total") == before + 1
    families = _scrape(client)
    (sample,) = families["swarmsite_events_written"]
    assert sample.value == before + 1


@postgres_only
def test_database_pool_usage_is_reported_on_postgresql(client):
    connection.ensure_connection()
    families = _scrape(client)
    sizes = {s.labels["alias"]: s.value for s in families["swarmsite_db_pool_size"]}
    maxes = {s.labels["alias"]: s.value for s in families["swarmsite_db_pool_max"]}
    assert maxes["default"] == connection.settings_dict["OPTIONS"]["pool"]["max_size"]
    assert 1 <= sizes["default"] <= maxes["default"]
