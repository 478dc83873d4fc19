"""The typed client against a real daphne: endpoints, errors, pages, retries."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from swarmsite_client import (
    AsyncClient,
    AuthenticationFailed,
    Client,
    Conflict,
    ConnectionFailed,
    IdempotencyConflict,
    IllegalTransition,
    NotFound,
    PermissionDenied,
    RetryPolicy,
    Unavailable,
    ValidationError,
    VersionConflict,
)
from swarmsite_client._core import next_params
from swarmsite_client.errors import BadRequest, ServerError, error_from_body
from tests.client.faults import FaultyProxy
from tests.e2e.stack import manage


def test_error_code_picks_the_class_and_unknown_codes_fall_back_on_status():
    body = {"error": {"code": "illegal_transition", "message": "no"}}
    assert type(error_from_body(body, status=409)) is IllegalTransition
    assert isinstance(error_from_body(body, status=409), Conflict)
    unknown = {"error": {"code": "brand_new_code", "message": "?"}}
    assert type(error_from_body(unknown, status=404)) is NotFound
    assert type(error_from_body(unknown, status=400)) is BadRequest
    assert type(error_from_body(unknown, status=500)) is ServerError
    error = error_from_body(unknown, status=409)
    assert type(error) is Conflict and error.code == "brand_new_code"
    assert type(error_from_body("<html>bad gateway</html>", status=502)) is Unavailable


def test_retry_delay_uses_retry_after_and_backs_off_exponentially_within_its_cap():
    policy = RetryPolicy(base=0.1, cap=1.0, total=5.0)
    assert 2.0 <= policy.delay(1, 2.0) <= 2.1
    assert policy.delay(1, 60.0) <= 5.1  # never past the total budget
    assert all(policy.delay(n, None) <= 1.0 for n in range(1, 30))
    assert max(policy.delay(1, None) for _ in range(200)) <= 0.1


def test_next_link_keeps_only_its_query_for_the_same_path():
    assert next_params("http://internal:8000/api/v1/events/?after=5&kind=a&kind=b") == {
        "after": "5",
        "kind": ["a", "b"],
    }
    assert next_params(None) is None


pytestmark_slow = pytest.mark.slow


@pytestmark_slow
def test_every_core_resource_round_trips_as_dicts(client):
    agent = client.agents.register(name=f"worker-{uuid.uuid4().hex[:6]}", role="w")
    assert client.agents.register(name=agent["name"])["id"] == agent["id"]
    assert client.agents.get(agent["id"])["role"] == "w"
    assert client.agents.update(agent["id"], model="m-1")["model"] == "m-1"
    assert client.agents.heartbeat(agent["id"], status="busy")["status"] == "busy"

    task = client.tasks.create(title="Round trip", assigned_agent=agent["id"])
    assert (task["status"], task["progress"], task["version"]) == ("pending", 0, 1)
    # The id was made on the client: sending the same create again is harmless.
    again = client.tasks.create(
        id=task["id"], title="Round trip", assigned_agent=agent["id"]
    )
    assert again["id"] == task["id"]
    updated = client.tasks.update(task["id"], description="Longer")
    assert updated["description"] == "Longer"
    running = client.tasks.transition(task["id"], status="running")
    assert running["status"] == "running"
    assert running["version"] == updated["version"] + 1
    assert client.tasks.progress(task["id"], 60)["progress"] == 60
    kinds = [e["kind"] for e in client.tasks.events(task["id"])]
    assert kinds[:3] == ["task.created", "task.updated", "task.status_changed"]
    assert kinds[-1] == "task.progress"

    conversation = client.conversations.create(task=task["id"], title="Chat")
    one = client.conversations.append(
        conversation["id"], {"role": "user", "content": "hi"}
    )
    many = client.conversations.append(
        conversation["id"],
        [
            {"role": "assistant", "content": "hello", "sender": agent["id"]},
            {"role": "tool", "content": "42", "tool_call_id": "c1"},
        ],
    )
    assert [one["seq"], *[m["seq"] for m in many]] == [1, 2, 3]
    listed = list(client.conversations.messages(conversation["id"], fields="full"))
    assert [m["content"] for m in listed] == ["hi", "hello", "42"]
    assert client.conversations.get(conversation["id"])["message_count"] == 3

    run = client.runs.create(task=task["id"], agent=agent["id"], status="running")
    done = client.runs.update(run["id"], status="completed", prompt_tokens=5)
    assert (done["status"], done["prompt_tokens"]) == ("completed", 5)
    assert [r["id"] for r in client.runs.list(task=task["id"])] == [run["id"]]

    kind = f"test.{uuid.uuid4().hex[:8]}"
    event = client.events.create(kind=kind, task=task["id"], payload={"n": 1})
    assert [e["id"] for e in client.events.list(kind=kind)] == [event["id"]]
    action = f"tool.{uuid.uuid4().hex[:8]}"
    entry = client.audit_logs.create(action=action, target="search", duration_ms=3)
    assert [a["id"] for a in client.audit_logs.list(action=action)] == [entry["id"]]

    result = client.ingest(
        [
            {"type": "event", "data": {"id": str(uuid.uuid4()), "kind": kind}},
            {"type": "event", "data": {"kind": "task.reserved"}},
        ]
    )
    assert [r["status"] for r in result["results"]] == ["created", "error"]
    assert "tasks" in client.stats()


@pytestmark_slow
def test_errors_raise_the_class_of_their_code(client, live):
    with pytest.raises(NotFound) as missing:
        client.tasks.get(uuid.uuid4())
    assert missing.value.status == 404 and missing.value.request_id

    task = client.tasks.create(title="Errors")
    with pytest.raises(IllegalTransition) as illegal:
        client.tasks.transition(task["id"], status="pending")
    assert illegal.value.code == "illegal_transition"
    client.tasks.transition(task["id"], status="running")
    with pytest.raises(VersionConflict):
        client.tasks.transition(task["id"], status="completed", expected_version=1)
    with pytest.raises(IdempotencyConflict):
        client.tasks.create(id=task["id"], title="Another title")

    conversation = client.conversations.create()
    with pytest.raises(ValidationError) as invalid:
        client.conversations.append(conversation["id"], {"role": "robot"})
    assert list(invalid.value.fields) == ["role"]

    with (
        Client(live.url, "ss_nope_nope") as stranger,
        pytest.raises(AuthenticationFailed),
    ):
        stranger.tasks.get(task["id"])
    read_only = manage(
        live.env, "create_api_key", "--project", "default", "--name",
        f"ro-{uuid.uuid4().hex[:6]}", "--scopes", "read",
    ).strip().splitlines()[-1]  # fmt: skip
    with Client(live.url, read_only) as reader:
        assert reader.tasks.get(task["id"])["id"] == task["id"]
        with pytest.raises(PermissionDenied):
            reader.tasks.create(title="Not allowed")


@pytestmark_slow
def test_lists_walk_every_page_and_fetch_a_page_only_when_needed(client, live):
    session = uuid.uuid4().hex
    made = [
        client.tasks.create(title=f"t{n}", session_id=session)["id"] for n in range(7)
    ]
    proxy = FaultyProxy(live.port, [])
    try:
        with Client(proxy.url, live.key) as counted:
            pages = counted.tasks.list(session_id=session, page_size=3)
            assert proxy.seen == []  # nothing asked before iterating
            first = next(pages)
            assert len(proxy.seen) == 1
            rest = list(pages)
            assert len(proxy.seen) == 3
    finally:
        proxy.close()
    assert [first["id"], *[t["id"] for t in rest]] == made[::-1]  # newest first


@pytestmark_slow
def test_503_and_429_are_retried_after_their_retry_after(live):
    proxy = FaultyProxy(live.port, [(503, "1"), (429, "1")])
    try:
        with Client(proxy.url, live.key) as c:
            started = time.monotonic()
            task = c.tasks.create(title="Retried")
            elapsed = time.monotonic() - started
    finally:
        proxy.close()
    posts = [seen for seen in proxy.seen if seen[1] == "POST"]
    assert len(posts) == 3
    assert posts[1][0] - posts[0][0] >= 1.0 and posts[2][0] - posts[1][0] >= 1.0
    assert elapsed >= 2.0
    with Client(live.url, live.key) as c:
        assert c.tasks.get(task["id"])["title"] == "Retried"


@pytestmark_slow
def test_retries_stop_within_their_total_budget(live):
    proxy = FaultyProxy(live.port, [(503, "1")] * 10)
    try:
        with Client(proxy.url, live.key, retry=RetryPolicy(total=1.5)) as c:
            started = time.monotonic()
            with pytest.raises(Unavailable) as away:
                c.tasks.list().__next__()
    finally:
        proxy.close()
    assert away.value.retry_after == 1.0
    assert time.monotonic() - started < 3.0
    assert len(proxy.seen) == 2  # the first answer, and one retry after 1 s


def test_an_unreachable_server_raises_connection_failed_after_the_retries():
    policy = RetryPolicy(max_attempts=3, base=0.01)
    with Client("http://127.0.0.1:9", "key", retry=policy) as c:
        started = time.monotonic()
        with pytest.raises(ConnectionFailed):
            c.tasks.get(uuid.uuid4())
    assert time.monotonic() - started < 2


@pytestmark_slow
def test_async_client_has_the_same_surface(live):
    async def main() -> tuple[dict, list[dict], type]:
        async with AsyncClient(live.url, live.key) as c:
            session = uuid.uuid4().hex
            task = await c.tasks.create(title="Async", session_id=session)
            await c.tasks.transition(task["id"], status="running")
            listed = [t async for t in c.tasks.list(session_id=session)]
            try:
                await c.tasks.transition(task["id"], status="pending")
            except IllegalTransition as exc:
                return task, listed, type(exc)
        raise AssertionError("no error")

    task, listed, error = asyncio.run(main())
    assert [t["id"] for t in listed] == [task["id"]]
    assert listed[0]["status"] == "running"
    assert error is IllegalTransition
