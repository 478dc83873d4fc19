"""Shared fixtures: a project, an agent, a task, an admin client."""

import pytest
from rest_framework.test import APIClient

from audit.middleware import buffer as request_audits
from swarmsite.models import Project
from swarmsite.services import api_key_create, project_create
from tasks.services import agent_register, task_create


@pytest.fixture
def project(db) -> Project:
    # Created by a migration, but transactional tests flush it away.
    return project_create(slug="default", name="Default")[0]


@pytest.fixture
def other_project(db) -> Project:
    return project_create(slug="other", name="Other")[0]


@pytest.fixture
def agent(project):
    return agent_register(project=project, name="worker-1", role="worker")[0]


@pytest.fixture
def task(project, agent):
    return task_create(project=project, title="Write the report", assigned_agent=agent)[
        0
    ]


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser(
        username="admin", email="admin@example.com", password="pw-for-tests-only"
    )
    client.force_login(user)
    return client


@pytest.fixture
def make_api_client():
    """Builds an APIClient holding a new key of `project` with `scopes`."""

    def make(project, *, scopes=("read", "write"), name="tests") -> APIClient:
        _, secret = api_key_create(project=project, name=name, scopes=list(scopes))
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return client

    return make


@pytest.fixture(autouse=True)
def _request_audits_flush_on_demand(settings):
    """API requests queue audit records (audit.middleware); a background
    thread would write them outside the test's transaction, so tests write
    them with `flush_request_audits()` and start with an empty queue."""
    settings.AUDIT_REQUEST_FLUSH_SECONDS = 0
    request_audits.clear()
    yield
    request_audits.clear()
