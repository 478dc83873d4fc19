import importlib
import inspect

import django_filters
import pytest
from django.apps import apps

from audit.filters import AuditLogFilterSet
from conversations.filters import (
    ConversationFilterSet,
    MemoryFilterSet,
    MessageFeedFilterSet,
    MessageFilterSet,
)
from swarmsite.filters import EMPTY_FILTER_MESSAGE, StrictFilterSet
from tasks.filters import AgentFilterSet, RunFilterSet, TaskFilterSet, WorkflowFilterSet
from tasks.models import Task
from tests.conftest import assert_fields
from tests.conversations.factories import ConversationFactory

pytestmark = pytest.mark.django_db

# Every list with a FilterSet; `{conversation}` is filled in by the test.
LISTS = [
    ("/api/v1/agents/", AgentFilterSet),
    ("/api/v1/tasks/", TaskFilterSet),
    ("/api/v1/runs/", RunFilterSet),
    ("/api/v1/workflows/", WorkflowFilterSet),
    ("/api/v1/conversations/", ConversationFilterSet),
    ("/api/v1/conversations/{conversation}/messages/", MessageFilterSet),
    ("/api/v1/messages/", MessageFeedFilterSet),
    ("/api/v1/memories/", MemoryFilterSet),
    ("/api/v1/audit-logs/", AuditLogFilterSet),
]
EMPTY_FILTERS = [
    pytest.param(url, name, id=f"{url}?{name}=")
    for url, filterset in LISTS
    for name in filterset.base_filters
]


def _app_filtersets() -> list[type]:
    found = []
    for config in apps.get_app_configs():
        if config.name == "swarmsite":
            continue
        try:
            module = importlib.import_module(f"{config.name}.filters")
        except ModuleNotFoundError:
            continue
        found += [
            member
            for _, member in inspect.getmembers(module, inspect.isclass)
            if issubclass(member, django_filters.FilterSet)
            and member.__module__ == module.__name__
        ]
    return found


def test_every_app_filterset_refuses_empty_values_and_is_tested_here():
    filtersets = set(_app_filtersets())
    assert filtersets == {filterset for _, filterset in LISTS}
    assert all(issubclass(f, StrictFilterSet) for f in filtersets)


@pytest.mark.parametrize(("url", "name"), EMPTY_FILTERS)
def test_an_empty_filter_value_is_a_400_naming_it(api, project, url, name):
    conversation = ConversationFactory(project=project)
    url = url.format(conversation=conversation.pk)

    fields = assert_fields(api.get(url, {name: ""}))

    assert fields == {name: [EMPTY_FILTER_MESSAGE]}


@pytest.mark.parametrize(
    "query",
    ["status=", "status=%20", "status=running&status=", "key=&session_id=s"],
)
def test_a_blank_among_filter_values_is_refused(api, query):
    fields = assert_fields(api.get(f"/api/v1/tasks/?{query}"))

    assert set(fields) == {query.split("=")[0]}


@pytest.mark.parametrize("value", ["1", "0", "null", "yes"])
def test_a_boolean_filter_takes_true_or_false_only(api, value):
    fields = assert_fields(api.get("/api/v1/tasks/", {"blocked": [value, value]}))

    assert fields == {"blocked": ["Enter true or false."]}


def test_filters_with_values_still_filter(api, project, task):
    response = api.get("/api/v1/tasks/", {"status": "pending", "key": "none"})
    assert response.status_code == 200, response.content
    assert response.json()["results"] == []
    response = api.get("/api/v1/tasks/", {"status": "pending", "search": task.title})
    assert [row["id"] for row in response.json()["results"]] == [str(task.pk)]


def test_each_bad_filter_is_named_with_its_own_message():
    filterset = TaskFilterSet(
        {"created_after": "yesterday", "workflow": "", "status": [" "]},
        queryset=Task.objects.all(),
    )
    assert not filterset.is_valid()
    assert filterset.errors["workflow"] == [EMPTY_FILTER_MESSAGE]
    assert filterset.errors["status"] == [EMPTY_FILTER_MESSAGE]
    assert filterset.errors["created_after"] != [EMPTY_FILTER_MESSAGE]


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("/api/v1/events/", "task"),
        ("/api/v1/events/", "conversation"),
        ("/api/v1/events/", "kind"),
        ("/api/v1/stats/", "since"),
        ("/api/v1/stats/", "until"),
    ],
)
def test_empty_query_values_outside_filtersets_are_refused_too(api, url, name):
    assert assert_fields(api.get(url, {name: ""})) == {name: [EMPTY_FILTER_MESSAGE]}


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("/api/v1/events/", "after"),
        ("/api/v1/tasks/{task}/events/", "after"),
        ("/api/v1/tasks/", "fields"),
        ("/api/v1/messages/", "fields"),
    ],
)
def test_an_empty_position_or_fields_value_is_refused(api, task, url, name):
    url = url.format(task=task.pk)

    assert set(assert_fields(api.get(url, {name: ""}))) == {name}


def test_the_schema_documents_text_filters_as_non_empty(api):
    schema = api.get("/api/schema/?format=json").json()
    parameters = {
        p["name"]: p["schema"]
        for p in schema["paths"]["/api/v1/tasks/"]["get"]["parameters"]
    }
    assert parameters["key"]["minLength"] == 1
    assert parameters["workflow"] == {"type": "string", "format": "uuid"}
    events = schema["paths"]["/api/v1/events/"]["get"]["parameters"]
    (kind,) = (p["schema"] for p in events if p["name"] == "kind")
    assert kind["items"]["minLength"] == 1
