import uuid

import pytest
from rest_framework import serializers

from conversations.serializers import MemorySerializer
from swarmsite.serializers import (
    StrictBooleanField,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
    StrictUUIDField,
)
from tasks.serializers import TaskSerializer
from tests.conftest import assert_fields
from tests.conversations.factories import ConversationFactory

pytestmark = pytest.mark.django_db

NOT_TEXT = [123, 1.5, True, [], {}]


@pytest.mark.parametrize("value", NOT_TEXT)
def test_a_strict_char_field_refuses_anything_but_a_string(value):
    with pytest.raises(serializers.ValidationError):
        StrictCharField().run_validation(value)


def test_a_strict_char_field_keeps_the_char_field_rules():
    field = StrictCharField(max_length=3, trim_whitespace=False)
    assert field.run_validation(" ab") == " ab"
    with pytest.raises(serializers.ValidationError):
        field.run_validation("abcd")


@pytest.mark.parametrize("value", [0, 1, False, 2**100, []])
def test_a_strict_uuid_field_refuses_anything_but_a_string(value):
    with pytest.raises(serializers.ValidationError):
        StrictUUIDField().run_validation(value)


def test_a_strict_uuid_field_reads_a_uuid_string():
    value = uuid.uuid4()
    assert StrictUUIDField().run_validation(str(value)) == value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (StrictIntegerField(), "12"),
        (StrictIntegerField(), True),
        (StrictFloatField(), "1.5"),
        (StrictFloatField(), False),
        (StrictBooleanField(), "true"),
        (StrictBooleanField(), 1),
    ],
)
def test_strict_number_and_boolean_fields_refuse_other_json_types(field, value):
    with pytest.raises(serializers.ValidationError):
        field.run_validation(value)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        (StrictIntegerField(), 12, 12),
        (StrictIntegerField(), 12.0, 12),
        (StrictFloatField(), 2, 2.0),
        (StrictBooleanField(), False, False),
    ],
)
def test_strict_number_and_boolean_fields_read_their_json_types(field, value, expected):
    assert field.run_validation(value) == expected


@pytest.mark.parametrize(
    ("serializer", "names"),
    [
        (
            TaskSerializer,
            {
                "title": StrictCharField,
                "id": StrictUUIDField,
                "priority": StrictIntegerField,
            },
        ),
        (MemorySerializer, {"content": StrictCharField, "namespace": StrictCharField}),
    ],
)
def test_model_serializers_generate_strict_fields(serializer, names):
    fields = serializer().fields
    for name, field_class in names.items():
        assert type(fields[name]) is field_class


# One write per endpoint family, each with a number where text (or a UUID)
# belongs, or another JSON type where a number or a boolean does; `{task}`,
# `{workflow}` and `{conversation}` are filled in.
WRONG_TYPES = [
    ("/api/v1/agents/", {"name": 123}, "name"),
    ("/api/v1/tasks/", {"title": 123}, "title"),
    ("/api/v1/tasks/", {"title": "t", "description": 1.5}, "description"),
    ("/api/v1/tasks/", {"title": "t", "parent": 7}, "parent"),
    ("/api/v1/tasks/{task}/transition/", {"status": "running", "error": 1}, "error"),
    ("/api/v1/workflows/", {"name": "w", "description": 0}, "description"),
    ("/api/v1/workflows/{workflow}/cancel/", {"id": False}, "id"),
    ("/api/v1/runs/", {"task": "{task}", "output_summary": 1}, "output_summary"),
    ("/api/v1/conversations/", {"title": 5}, "title"),
    (
        "/api/v1/conversations/{conversation}/messages/",
        {"role": "user", "content": 42},
        "content",
    ),
    ("/api/v1/memories/", {"content": 1}, "content"),
    ("/api/v1/events/", {"kind": 7}, "kind"),
    ("/api/v1/audit-logs/", {"action": 1}, "action"),
    ("/api/v1/audit-logs/", {"action": "a.b", "duration_ms": False}, "duration_ms"),
    ("/api/v1/audit-logs/", {"action": "a.b", "success": "yes"}, "success"),
    ("/api/v1/tasks/{task}/progress/", {"progress": "50"}, "progress"),
]


@pytest.mark.parametrize(("url", "body", "name"), WRONG_TYPES)
def test_a_value_of_the_wrong_json_type_is_a_400_naming_it(
    api, project, task, url, body, name
):
    workflow = api.post("/api/v1/workflows/", {"name": "w"}, format="json").json()
    ids = {
        "task": task.pk,
        "workflow": workflow["id"],
        "conversation": ConversationFactory(project=project).pk,
    }
    body = {k: v.format(**ids) if isinstance(v, str) else v for k, v in body.items()}

    fields = assert_fields(api.post(url.format(**ids), body, format="json"))

    assert set(fields) == {name}


def test_an_ingest_item_with_a_number_for_text_is_an_error_naming_it(api):
    items = [{"type": "task", "data": {"title": 123}}]
    response = api.post("/api/v1/ingest/", {"items": items}, format="json")

    assert response.status_code == 207, response.content
    (result,) = response.json()["results"]
    assert result["status"] == "error"
    assert set(result["error"]["fields"]) == {"data.title"}


def test_a_patch_with_a_number_for_text_changes_nothing(api, task):
    response = api.patch(f"/api/v1/tasks/{task.pk}/", {"title": 9}, format="json")

    assert set(assert_fields(response)) == {"title"}
    task.refresh_from_db()
    assert task.title != "9"
