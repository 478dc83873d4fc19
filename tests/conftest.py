"""Shared fixtures (a project, an agent, a task, API and admin clients) and
the helpers that check the contract's error shape and count queries."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from audit.middleware import buffer as request_audits
from swarmsite.models import Project
from tests.swarmsite.factories import ApiKeyFactory, ProjectFactory
from tests.tasks.factories import AgentFactory, TaskFactory


@pytest.fixture
def project(db) -> Project:
    # Created by a migration, but transactional tests flush it away.
    return ProjectFactory(slug="default", name="Default")


@pytest.fixture
def other_project(db) -> Project:
    return ProjectFactory(slug="other", name="Other")


@pytest.fixture
def agent(project):
    return AgentFactory(project=project, name="worker-1", role="worker")


@pytest.fixture
def task(project, agent):
    return TaskFactory(project=project, title="Write the report", assigned_agent=agent)


@pytest.fixture
def staff_client(client, django_user_model):
    # No password: the client is logged in directly, and hashing one costs
    # a PBKDF2 run (about half a second) per test.
    user = django_user_model.objects.create_superuser(
        username="admin", email="admin@example.com", password=None
    )
    client.force_login(user)
    return client


def bearer_client(secret: str) -> APIClient:
    """An APIClient that sends `secret` as its bearer key."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def make_api_client():
    """Builds an APIClient holding a new key of `project` with `scopes`."""

    def make(project, *, scopes=("read", "write"), name="tests") -> APIClient:
        key = ApiKeyFactory(project=project, name=name, scopes=scopes)
        return bearer_client(key.secret)

    return make


@pytest.fixture
def api(project, make_api_client) -> APIClient:
    """An API client of the default project with read and write scopes."""
    return make_api_client(project)


@pytest.fixture
def reader(project, make_api_client) -> APIClient:
    """An API client of the default project with the read scope only."""
    return make_api_client(project, scopes=("read",), name="reader")


def assert_error(response, status: int, code: str) -> dict:
    """The error of `response`, checked against the contract's shape."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"], body
    return body["error"]


def assert_fields(response) -> dict:
    """The field messages of a 400 validation error."""
    return assert_error(response, 400, "validation_error")["fields"]


def count_queries(client, url: str, **params) -> int:
    """The queries of one GET of `url`, which must answer 200."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, params or None)
    assert response.status_code == 200, response.content
    return len(queries.captured_queries)


@pytest.fixture(autouse=True)
def _request_audits_flush_on_demand(settings):
    """API requests queue audit records (audit.middleware); a background
    thread would write them outside the test's transaction, so tests write
    them with `flush_request_audits()` and start with an empty queue."""
    settings.AUDIT_REQUEST_FLUSH_SECONDS = 0
    request_audits.clear()
    yield
    request_audits.clear()
