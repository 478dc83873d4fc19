"""The OpenAPI schema and its interactive docs."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.contrib.staticfiles import finders
from rest_framework.test import APIClient

from tests.conftest import assert_error

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def test_the_schema_answers_for_a_key_and_refuses_anonymous_callers(
    project, make_api_client
):
    response = make_api_client(project, scopes=("read",)).get(
        "/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json"
    )
    assert response.status_code == 200, response.content
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/audit-logs/" in schema["paths"]
    assert APIClient().get("/api/schema/").status_code == 401
    anonymous = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert_error(anonymous, 401, "not_authenticated")


def test_the_schema_types_path_ids_as_uuids(project, make_api_client):
    response = make_api_client(project).get("/api/schema/?format=json")
    paths = response.json()["paths"]
    ids = [
        parameter["schema"]
        for path, item in paths.items()
        if "{id}" in path
        for operation in item.values()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path"
    ]
    assert ids
    assert all(schema == {"type": "string", "format": "uuid"} for schema in ids)


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/api/v1/conversations/{id}/messages/", "post", {"200", "201"}),
        ("/api/v1/conversations/{id}/participants/{agent_id}/", "delete", {"200"}),
    ],
)
def test_the_schema_documents_every_success_an_operation_answers(
    project, make_api_client, path, method, statuses
):
    schema = make_api_client(project).get("/api/schema/?format=json").json()
    responses = schema["paths"][path][method]["responses"]
    assert {code for code in responses if code.startswith("2")} == statuses


def test_the_docs_page_loads_its_scripts_and_styles_from_our_static_files(
    project, make_api_client, staff_client
):
    for client in (make_api_client(project), staff_client):
        response = client.get("/api/docs/")
        assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css|png))"', html)
    assert any(a.endswith(".js") for a in assets)
    assert any(a.endswith(".css") for a in assets)
    static = "/" + settings.STATIC_URL.lstrip("/")
    for asset in assets:
        assert asset.startswith(static), asset
        assert finders.find(asset[len(static) :]), asset
    assert "cdn" not in html.lower()
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html)
    assert APIClient().get("/api/docs/").status_code == 401


def test_schema_generation_is_clean_with_validation_and_warnings_as_errors(
    tmp_path,
):
    out = tmp_path / "schema.yml"
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "spectacular",
            "--validate",
            "--fail-on-warn",
            "--file",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    assert yaml.safe_load(out.read_text())["info"]["title"] == "Swarmsite API"
