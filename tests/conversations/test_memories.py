"""The memory store over the API: put, upsert by key, search, change, delete."""

import io
import threading
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import close_old_connections
from django.utils import timezone

from audit.models import AuditLog, Event
from conversations.models import MEMORY_MAX_CONTENT_BYTES, Memory
from conversations.services import conversation_create, memory_put
from tasks.services import agent_register, task_create
from tests.conftest import assert_error, assert_fields, count_queries

pytestmark = pytest.mark.django_db

URL = "/api/v1/memories/"


def _put(api, body):
    return api.post(URL, body, format="json")


def _kinds(project) -> list[str]:
    return list(
        Event.objects.filter(project=project, kind__startswith="memory.")
        .order_by("position")
        .values_list("kind", flat=True)
    )


def test_put_creates_and_a_repeated_id_is_idempotent(api, project, agent, task):
    conversation = conversation_create(project=project)[0]
    body = {
        "id": str(uuid.uuid4()),
        "agent": str(agent.pk),
        "content": "The user prefers short answers.",
        "tags": ["prefs", "style"],
        "metadata": {"source": "chat"},
        "task": str(task.pk),
        "conversation": str(conversation.pk),
    }
    created = _put(api, body)
    assert created.status_code == 201, created.content
    data = created.json()
    assert data | {"created_at": None, "updated_at": None} == {
        "id": body["id"],
        "agent": str(agent.pk),
        "namespace": "default",
        "key": "",
        "content": body["content"],
        "tags": ["prefs", "style"],
        "metadata": {"source": "chat"},
        "task": str(task.pk),
        "conversation": str(conversation.pk),
        "expires_at": None,
        "version": 1,
        "created_at": None,
        "updated_at": None,
    }
    assert _put(api, body).status_code == 200
    assert_error(_put(api, body | {"content": "other"}), 409, "idempotency_conflict")
    assert Memory.objects.count() == 1
    event = Event.objects.get(kind="memory.created")
    assert (event.task_id, event.conversation_id) == (task.pk, conversation.pk)
    assert event.payload["memory"] == body["id"]
    assert AuditLog.objects.filter(action="memory.created").count() == 1
    assert api.get(f"{URL}{body['id']}/").json()["content"] == body["content"]


def test_a_key_upserts_the_entry_of_agent_and_namespace(api, project, agent):
    body = {"agent": str(agent.pk), "key": "prefs", "content": "tea"}
    first = _put(api, body)
    assert first.status_code == 201
    same = _put(api, body)
    assert (same.status_code, same.json()["version"]) == (200, 1)
    updated = _put(api, body | {"content": "coffee", "tags": ["drinks"]})
    assert updated.status_code == 200
    assert updated.json() | {"updated_at": None} == first.json() | {
        "content": "coffee",
        "tags": ["drinks"],
        "version": 2,
        "updated_at": None,
    }
    # Another namespace, no agent: other entries; the shared one is unique too.
    assert _put(api, body | {"namespace": "work"}).status_code == 201
    shared = {"key": "prefs", "content": "shared"}
    assert _put(api, shared).status_code == 201
    assert _put(api, shared | {"content": "shared 2"}).status_code == 200
    assert Memory.objects.filter(agent__isnull=True).count() == 1
    assert Memory.objects.count() == 3
    assert _kinds(project) == [
        "memory.created",
        "memory.updated",
        "memory.created",
        "memory.created",
        "memory.updated",
    ]
    event = Event.objects.filter(kind="memory.updated").order_by("position").first()
    assert event.payload["changes"] == ["content", "tags"]


def test_a_keyed_put_with_an_id_is_not_applied_twice(api, agent):
    body = {"id": str(uuid.uuid4()), "agent": str(agent.pk), "key": "k", "content": "1"}
    assert _put(api, body).status_code == 201
    _put(api, {"agent": str(agent.pk), "key": "k", "content": "2"})
    replay = _put(api, body)
    assert replay.status_code == 200
    assert (replay.json()["content"], replay.json()["version"]) == ("2", 2)
    update = {
        "id": str(uuid.uuid4()),
        "agent": str(agent.pk),
        "key": "k",
        "content": "3",
    }
    assert _put(api, update).json()["version"] == 3
    _put(api, {"agent": str(agent.pk), "key": "k", "content": "4"})
    assert _put(api, update).json()["content"] == "4"


def test_put_errors_name_the_field(api, agent, other_project):
    spy = agent_register(project=other_project, name="spy")[0]
    secret_task = task_create(project=other_project, title="secret")[0]
    cases = [
        ({}, "content"),
        ({"content": 5}, "content"),
        ({"content": "x" * (MEMORY_MAX_CONTENT_BYTES + 1)}, "content"),
        ({"content": "é" * (MEMORY_MAX_CONTENT_BYTES // 2 + 1)}, "content"),
        ({"content": "x", "tags": "a"}, "tags"),
        ({"content": "x", "tags": [""]}, "tags.0"),
        ({"content": "x", "agent": str(spy.pk)}, "agent"),
        ({"content": "x", "task": str(secret_task.pk)}, "task"),
        ({"content": "x", "namespace": ""}, "namespace"),
        ({"content": "x", "expires_at": "soon"}, "expires_at"),
        ({"content": "x", "metadata": [1]}, "metadata"),
        ({"content": "x", "version": 3}, "version"),
        ({"content": "x", "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        assert field in assert_fields(_put(api, body)), body
    assert _put(api, {"content": "x" * MEMORY_MAX_CONTENT_BYTES}).status_code == 201


def test_list_filters_newest_first_and_hides_expired(api, project, agent):
    other = agent_register(project=project, name="other")[0]
    past = timezone.now() - timedelta(minutes=1)
    later = timezone.now() + timedelta(hours=1)
    a = memory_put(project=project, content="alpha", agent=agent, tags=["x", "y"])[0]
    b = memory_put(project=project, content="beta", namespace="work", tags=["y"])[0]
    c = memory_put(project=project, content="gamma", agent=other, expires_at=later)[0]
    gone = memory_put(project=project, content="alpha gone", expires_at=past)[0]

    def ids(**params):
        response = api.get(URL, params)
        assert response.status_code == 200, response.content
        return [m["id"] for m in response.json()["results"]]

    assert ids() == [str(c.uuid), str(b.uuid), str(a.uuid)]
    assert ids(agent=str(agent.pk)) == [str(a.uuid)]
    assert ids(namespace="work") == [str(b.uuid)]
    assert ids(tag="y") == [str(b.uuid), str(a.uuid)]
    assert ids(tag="x", namespace="default") == [str(a.uuid)]
    assert ids(q="alpha") == [str(a.uuid)]
    assert ids(q="alpha", tag="y") == [str(a.uuid)]
    assert ids(q="nothing matches this") == []
    assert ids(q="   ") == []
    assert_error(api.get(f"{URL}{gone.uuid}/"), 404, "not_found")
    assert "agent" in assert_fields(api.get(URL, {"agent": "nope"}))
    assert "cursor" in assert_fields(api.get(URL, {"q": "alpha", "cursor": "zzz"}))


def test_search_pages_and_scores(api, project):
    for n in range(7):
        memory_put(project=project, content="needle " * (n + 1) + "hay " * 20)
    first = api.get(URL, {"q": "needle", "page_size": 3}).json()
    assert [m["content"].count("needle") for m in first["results"]] == [7, 6, 5]
    scores = [m["score"] for m in first["results"]]
    assert scores == sorted(scores, reverse=True)
    second = api.get(first["next"]).json()
    assert [m["content"].count("needle") for m in second["results"]] == [4, 3, 2]
    third = api.get(second["next"]).json()
    assert len(third["results"]) == 1 and third["next"] is None
    assert api.get(third["previous"]).json()["results"] == second["results"]


def test_patch_and_delete(api, project, agent):
    memory = memory_put(project=project, content="old", agent=agent, key="k")[0]
    url = f"{URL}{memory.uuid}/"
    operation = str(uuid.uuid4())
    patched = api.patch(url, {"content": "new", "id": operation}, format="json")
    assert patched.status_code == 200, patched.content
    assert (patched.json()["content"], patched.json()["version"]) == ("new", 2)
    api.patch(url, {"tags": ["later"]}, format="json")
    replay = api.patch(url, {"content": "new", "id": operation}, format="json")
    assert replay.json()["version"] == 3
    assert "key" in assert_fields(api.patch(url, {"key": "other"}, format="json"))
    assert "content" in assert_fields(api.patch(url, {"content": 1}, format="json"))
    assert api.get(URL, {"q": "new"}).json()["results"][0]["id"] == str(memory.uuid)
    assert api.get(URL, {"q": "old"}).json()["results"] == []

    assert api.delete(url).status_code == 204
    assert_error(api.delete(url), 404, "not_found")
    assert_error(api.get(url), 404, "not_found")
    assert api.get(URL, {"q": "new"}).json()["results"] == []
    assert _kinds(project) == [
        "memory.created",
        "memory.updated",
        "memory.updated",
        "memory.deleted",
    ]
    deleted = Event.objects.get(kind="memory.deleted")
    assert (deleted.payload["memory"], deleted.payload["key"]) == (
        str(memory.uuid),
        "k",
    )


def test_another_projects_memories_are_not_found(api, other_project):
    theirs = memory_put(project=other_project, content="secret plans")[0]
    url = f"{URL}{theirs.uuid}/"
    assert_error(api.get(url), 404, "not_found")
    assert_error(api.patch(url, {"content": "x"}, format="json"), 404, "not_found")
    assert_error(api.delete(url), 404, "not_found")
    assert_error(api.get(f"{URL}not-a-uuid/"), 404, "not_found")
    assert api.get(URL, {"q": "secret"}).json()["results"] == []
    assert_error(
        _put(api, {"id": str(theirs.uuid), "content": "secret plans"}),
        409,
        "idempotency_conflict",
    )


def test_list_queries_do_not_grow_with_rows(api, project):
    memory_put(project=project, content="one memory", tags=["t"])
    count_queries(api, URL)  # the key's first use is recorded once
    small = {p: count_queries(api, URL, **dict(p)) for p in ((), (("q", "memory"),))}
    for n in range(20):
        memory_put(project=project, content=f"memory {n}", tags=["t"])
    assert {p: count_queries(api, URL, **dict(p)) for p in small} == small


def test_prune_removes_expired_memories(project):
    past = timezone.now() - timedelta(seconds=1)
    memory_put(project=project, content="stale", expires_at=past)
    kept = memory_put(project=project, content="fresh")[0]
    call_command("prune", "--older-than", "90d", stdout=io.StringIO())
    assert list(Memory.objects.values_list("uuid", flat=True)) == [kept.uuid]


@pytest.mark.django_db(transaction=True)
def test_concurrent_puts_of_one_key_leave_one_entry(project, agent):
    statuses: list[bool] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def put(n):
        try:
            barrier.wait()
            _, created = memory_put(
                project=project, agent=agent, key="shared", content=f"v{n % 2}"
            )
            statuses.append(created)
        except BaseException as exc:
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=put, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert sorted(statuses) == [False, False, False, True]
    assert Memory.objects.filter(key="shared").count() == 1
