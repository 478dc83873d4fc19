from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from audit.models import Event
from swarmsite import errors
from swarmsite.exceptions import exception_handler
from swarmsite.pagination import CreatedCursorPagination
from swarmsite.services import api_key_create, api_key_revoke
from swarmsite.throttling import PrincipalRateThrottle
from tests.conftest import assert_error, bearer_client
from tests.swarmsite.factories import ApiKeyFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def key_and_secret(project):
    return api_key_create(project=project, name="tests")


# Authentication -----------------------------------------------------------


def test_no_credentials_answer_401_with_a_bearer_challenge():
    response = APIClient().get("/api/v1/tasks/")
    error = assert_error(response, 401, "not_authenticated")
    assert "fields" not in error
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize(
    "header",
    [
        "Bearer ss_deadbeef_nope",
        "Bearer not-a-key",
        "Bearer",
        "Bearer two parts",
        "bearer ss_",
    ],
)
def test_a_bad_key_answers_401(header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert_error(client.get("/api/v1/tasks/"), 401, "authentication_failed")


def test_a_revoked_or_expired_key_answers_401(project, key_and_secret):
    key, secret = key_and_secret
    api_key_revoke(key=key)
    assert_error(
        bearer_client(secret).get("/api/v1/tasks/"), 401, "authentication_failed"
    )
    expiring, secret2 = api_key_create(
        project=project, name="soon", expires_at=timezone.now() + timedelta(hours=1)
    )
    assert bearer_client(secret2).get("/api/v1/tasks/").status_code == 200
    type(expiring).objects.filter(pk=expiring.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert_error(
        bearer_client(secret2).get("/api/v1/tasks/"), 401, "authentication_failed"
    )


def test_a_key_sees_only_its_own_project(api, other_project, task):
    other_secret = ApiKeyFactory(project=other_project).secret
    other = bearer_client(other_secret)
    assert other.get("/api/v1/tasks/").json()["results"] == []
    assert_error(other.get(f"/api/v1/tasks/{task.pk}/"), 404, "not_found")
    assert len(api.get("/api/v1/tasks/").json()["results"]) == 1


def test_an_admin_scope_key_may_read_and_write(project):
    secret = ApiKeyFactory(project=project, scopes=["admin"]).secret
    client = bearer_client(secret)
    assert client.get("/api/v1/tasks/").status_code == 200
    assert (
        client.post("/api/v1/tasks/", {"title": "t"}, format="json").status_code == 201
    )


def test_a_write_only_key_cannot_read(project):
    secret = ApiKeyFactory(project=project, scopes=["write"]).secret
    client = bearer_client(secret)
    assert_error(client.get("/api/v1/tasks/"), 403, "permission_denied")
    assert (
        client.post("/api/v1/tasks/", {"title": "t"}, format="json").status_code == 201
    )


def test_a_staff_session_acts_on_the_default_project(staff_client, task):
    response = staff_client.get("/api/v1/tasks/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert [t["id"] for t in response.json()["results"]] == [str(task.pk)]
    created = staff_client.post(
        "/api/v1/events/",
        {"kind": "note.added"},
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["actor"]["type"] == "user"
    assert created.json()["actor"]["label"] == "admin"


def test_the_browsable_api_renders_for_staff(staff_client, task):
    response = staff_client.get("/api/v1/tasks/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert b"Write the report" in response.content


def test_a_non_staff_session_is_forbidden(client, django_user_model):
    user = django_user_model.objects.create_user(username="u", password="pw-x-123")
    client.force_login(user)
    response = client.get("/api/v1/tasks/", HTTP_ACCEPT="application/json")
    assert_error(response, 403, "permission_denied")


# Request id and actor ------------------------------------------------------


def test_the_request_id_is_echoed_and_becomes_the_correlation_id(api):
    response = api.post(
        "/api/v1/events/",
        {"kind": "note.added"},
        format="json",
        HTTP_X_REQUEST_ID="run-42.step:3",
    )
    assert response["X-Request-ID"] == "run-42.step:3"
    event = Event.objects.get(uuid=response.json()["id"])
    assert event.correlation_id == "run-42.step:3"
    assert (event.actor_type, event.actor_label) == ("api_key", "tests")


def test_a_malformed_request_id_is_replaced_by_a_fresh_one(api):
    response = api.get("/api/v1/tasks/", HTTP_X_REQUEST_ID="bad id\n" * 20)
    assert len(response["X-Request-ID"]) == 32
    other = api.get("/api/v1/tasks/")
    assert other["X-Request-ID"] != response["X-Request-ID"]


# Error shape -------------------------------------------------------------


def test_malformed_json_answers_400_parse_error(api):
    response = api.generic(
        "POST", "/api/v1/tasks/", "{not json", content_type="application/json"
    )
    assert_error(response, 400, "parse_error")


def test_deeply_nested_json_answers_400_not_500(api):
    body = "[" * 100_000 + "]" * 100_000
    response = api.generic(
        "POST", "/api/v1/tasks/", body, content_type="application/json"
    )
    assert response.status_code == 400


def test_a_form_body_answers_415(api):
    response = api.post("/api/v1/tasks/", {"title": "t"})
    assert_error(response, 415, "unsupported_media_type")


def test_a_body_over_the_limit_answers_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = api.post("/api/v1/tasks/", {"title": "t" * 200}, format="json")
    assert_error(response, 413, "request_too_large")


def test_an_unknown_api_path_answers_a_json_404(api):
    assert_error(api.get("/api/v1/nothing-here/"), 404, "not_found")
    assert_error(APIClient().post("/api/v2/tasks/"), 404, "not_found")


def test_paths_work_with_and_without_the_trailing_slash(api):
    assert api.get("/api/v1/tasks").status_code == 200
    assert api.post("/api/v1/tasks", {"title": "t"}, format="json").status_code == 201


def test_throttled_requests_answer_429_with_retry_after(api, monkeypatch):
    monkeypatch.setattr(PrincipalRateThrottle, "THROTTLE_RATES", {"principal": "2/m"})
    statuses = [api.get("/api/v1/tasks/").status_code for _ in range(3)]
    assert statuses[:2] == [200, 200]
    response = api.get("/api/v1/tasks/")
    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) >= 0


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (errors.ValidationError({"title": "Required."}), 400, "validation_error"),
        (errors.NotFound("No task x."), 404, "not_found"),
        (errors.Conflict("Busy."), 409, "conflict"),
        (errors.IdempotencyConflict("Taken."), 409, "idempotency_conflict"),
        (
            errors.IllegalTransition(current="a", requested="b"),
            409,
            "illegal_transition",
        ),
        (errors.VersionConflict(expected=1, actual=2), 409, "version_conflict"),
        (exceptions.Throttled(wait=3), 429, "throttled"),
        (exceptions.NotAcceptable(), 406, "not_acceptable"),
    ],
)
def test_the_exception_handler_maps_every_error_to_one_shape(exc, status, code):
    response = exception_handler(exc, {})
    assert response.status_code == status
    assert response.data["error"]["code"] == code
    assert response.data["error"]["message"]
    if code == "validation_error":
        assert response.data["error"]["fields"] == {"title": ["Required."]}
    else:
        assert "fields" not in response.data["error"]


def test_nested_validation_errors_are_flattened_to_dotted_names():
    exc = exceptions.ValidationError(
        {"agents": {0: ["Must be a valid UUID."]}, "title": ["Required."]}
    )
    fields = exception_handler(exc, {}).data["error"]["fields"]
    assert fields == {"agents.0": ["Must be a valid UUID."], "title": ["Required."]}


# Pagination ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "size"),
    [("", 50), ("page_size=10", 10), ("page_size=100000", 500)],
)
def test_a_large_page_size_is_clamped_never_refused(query, size):
    request = Request(APIRequestFactory().get(f"/api/v1/tasks/?{query}"))
    assert CreatedCursorPagination().get_page_size(request) == size


@pytest.mark.parametrize("value", ["x", "0", "-5", "", "1.5"])
def test_a_page_size_that_is_no_whole_number_is_a_400(value):
    request = Request(APIRequestFactory().get(f"/api/v1/tasks/?page_size={value}"))
    with pytest.raises(ValidationError) as exc:
        CreatedCursorPagination().get_page_size(request)
    assert "page_size" in exc.value.detail
