import json
import uuid
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.chain import audit_chain_verify
from audit.models import AuditLog, Event
from conversations.models import Conversation, Message, Participant
from conversations.services import conversation_create
from swarmsite.metrics import INGEST_ITEMS
from tasks.models import Agent, AgentRun, Task, TaskDependency
from tasks.services import run_create, task_create

pytestmark = pytest.mark.django_db

URL = "/api/v1/ingest/"


@pytest.fixture
def api(project, make_api_client):
    return make_api_client(project)


def _post(client, items, status=200):
    response = client.post(URL, {"items": items}, format="json")
    assert response.status_code == status, response.content
    return response.json()["results"]


def _statements(client, items: list[dict]) -> int:
    """SQL statements one batch costs; every item must be created."""
    with CaptureQueriesContext(connection) as ctx:
        results = _post(client, items)
    assert {r["status"] for r in results} == {"created"}
    return len(ctx.captured_queries)


def _ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def _mixed_batch() -> tuple[list[dict], dict[str, str]]:
    ids = dict(
        zip(
            ["agent", "task", "child", "conv", "m1", "m2", "run", "event", "audit"],
            _ids(9),
            strict=True,
        )
    )
    items = [
        {"type": "agent", "data": {"id": ids["agent"], "name": "ingest-bot"}},
        {
            "type": "task",
            "data": {
                "id": ids["task"],
                "title": "Parent",
                "assigned_agent": ids["agent"],
            },
        },
        {
            "type": "task",
            "data": {
                "id": ids["child"],
                "title": "Child",
                "parent": ids["task"],
                "depends_on": [ids["task"]],
            },
        },
        {
            "type": "transition",
            "data": {"task": ids["task"], "status": "running", "expected_version": 1},
        },
        {
            "type": "conversation",
            "data": {"id": ids["conv"], "task": ids["task"], "title": "Plan"},
        },
        {
            "type": "message",
            "data": {
                "conversation": ids["conv"],
                "id": ids["m1"],
                "role": "user",
                "content": "Go.",
                "prompt_tokens": 10,
                "cost": "0.5",
            },
        },
        {
            "type": "message",
            "data": {
                "conversation": ids["conv"],
                "id": ids["m2"],
                "role": "assistant",
                "content": "Done.",
                "sender": ids["agent"],
                "reply_to": ids["m1"],
                "completion_tokens": 5,
            },
        },
        {
            "type": "run",
            "data": {
                "id": ids["run"],
                "task": ids["task"],
                "agent": ids["agent"],
                "prompt_tokens": 7,
            },
        },
        {
            "type": "event",
            "data": {"id": ids["event"], "kind": "eval.scored", "task": ids["task"]},
        },
        {
            "type": "audit",
            "data": {"id": ids["audit"], "action": "tool.invoke", "target": "grep"},
        },
    ]
    return items, ids


def test_a_batch_of_every_type_applies_in_order_with_the_services_events(api, project):
    items, ids = _mixed_batch()

    results = _post(api, items)

    assert [r["status"] for r in results] == ["created"] * len(items)
    assert [r["index"] for r in results] == list(range(len(items)))
    assert results[3]["id"] == ids["task"]
    assert results[8]["id"] == ids["event"]
    parent = Task.objects.get(pk=ids["task"])
    assert (parent.status, parent.version) == ("running", 2)
    assert parent.prompt_tokens == 10 + 7
    assert parent.completion_tokens == 5
    assert parent.cost == Decimal("0.5")
    child = Task.objects.get(pk=ids["child"])
    assert child.parent_id == parent.pk
    assert TaskDependency.objects.filter(task=child, depends_on=parent).exists()
    conversation = Conversation.objects.get(pk=ids["conv"])
    assert conversation.message_count == 2
    assert conversation.prompt_tokens == 10
    assert list(
        Message.objects.filter(conversation=conversation).values_list("pk", "seq")
    ) == [(uuid.UUID(ids["m1"]), 1), (uuid.UUID(ids["m2"]), 2)]
    kinds = list(
        Event.objects.filter(project=project)
        .order_by("position")
        .values_list("kind", flat=True)
    )
    assert kinds == [
        "agent.registered",
        "task.created",
        "task.created",
        "task.status_changed",
        "conversation.created",
        "message.created",
        "message.created",
        "run.started",
        "eval.scored",
    ]
    assert AuditLog.objects.filter(uuid=ids["audit"], action="tool.invoke").exists()
    assert audit_chain_verify(project_id=project.pk).intact


def test_a_retried_batch_answers_duplicates_and_writes_nothing_twice(api, project):
    items, _ = _mixed_batch()
    _post(api, items)
    counts = (
        Event.objects.count(),
        AuditLog.objects.count(),
        Task.objects.count(),
        Message.objects.count(),
        AgentRun.objects.count(),
        Agent.objects.count(),
    )

    results = _post(api, items)

    assert [r["status"] for r in results] == ["duplicate"] * len(items)
    assert counts == (
        Event.objects.count(),
        AuditLog.objects.count(),
        Task.objects.count(),
        Message.objects.count(),
        AgentRun.objects.count(),
        Agent.objects.count(),
    )


def test_a_reused_id_with_another_body_is_an_idempotency_conflict(api):
    event_id, task_id = _ids(2)
    _post(
        api,
        [
            {"type": "event", "data": {"id": event_id, "kind": "a.b"}},
            {"type": "task", "data": {"id": task_id, "title": "One"}},
        ],
    )

    results = _post(
        api,
        [
            {"type": "event", "data": {"id": event_id, "kind": "a.c"}},
            {"type": "task", "data": {"id": task_id, "title": "Two"}},
        ],
        status=207,
    )

    for result, item_id in zip(results, (event_id, task_id), strict=True):
        assert result["status"] == "error"
        assert result["id"] == item_id
        assert result["error"]["code"] == "idempotency_conflict"
    assert Task.objects.get(pk=task_id).title == "One"


def test_one_invalid_item_answers_207_with_its_error_and_stores_the_others(api):
    ids = _ids(3)
    items = [{"type": "event", "data": {"id": i, "kind": "eval.scored"}} for i in ids]
    items.insert(1, {"type": "task", "data": {"priority": "high"}})

    results = _post(api, items, status=207)

    assert [r["status"] for r in results] == ["created", "error", "created", "created"]
    error = results[1]["error"]
    assert error["code"] == "validation_error"
    assert set(error["fields"]) == {"data.title", "data.priority"}
    assert error["message"]
    assert Event.objects.filter(uuid__in=ids).count() == 3


def test_an_item_refused_by_its_service_is_isolated_from_its_segment(api, project):
    ids = _ids(4)
    foreign = str(uuid.uuid4())
    items = [
        {"type": "event", "data": {"id": ids[0], "kind": "a.b"}},
        # Reserved kinds pass the serializer; the service refuses them.
        {"type": "event", "data": {"id": ids[1], "kind": "task.forged"}},
        {"type": "event", "data": {"id": ids[2], "kind": "a.b"}},
        {"type": "task", "data": {"id": ids[3], "title": "T", "parent": foreign}},
        {"type": "transition", "data": {"task": foreign, "status": "running"}},
    ]

    results = _post(api, items, status=207)

    assert [r["status"] for r in results] == [
        "created",
        "error",
        "created",
        "error",
        "error",
    ]
    assert "kind" in results[1]["error"]["fields"]
    assert "parent" in results[3]["error"]["fields"]
    assert "task" in results[4]["error"]["fields"]
    assert set(Event.objects.filter(uuid__in=ids).values_list("uuid", flat=True)) == {
        uuid.UUID(ids[0]),
        uuid.UUID(ids[2]),
    }
    assert not Task.objects.filter(pk=ids[3]).exists()
    assert audit_chain_verify(project_id=project.pk).intact


def test_one_bad_item_costs_a_few_bulk_calls_not_one_call_per_item(api, project):
    def statements(n: int) -> int:
        items = [{"type": "event", "data": {"id": i, "kind": "a.b"}} for i in _ids(n)]
        items[n // 3]["data"]["kind"] = "task.forged"  # refused by the service
        with CaptureQueriesContext(connection) as ctx:
            results = _post(api, items, status=207)
        statuses = [r["status"] for r in results]
        assert statuses.count("error") == 1 and statuses[n // 3] == "error"
        assert statuses.count("created") == n - 1
        return len(ctx.captured_queries)

    # Halving the failed segment: a few more calls per doubling of the
    # batch, where one call per item cost over a thousand statements here.
    assert statements(200) - statements(25) < 100


def test_an_illegal_transition_is_an_error_and_a_retried_one_a_duplicate(api, project):
    task, _ = task_create(project=project, title="T")
    move = {
        "type": "transition",
        "data": {"task": str(task.pk), "status": "running", "expected_version": 1},
    }
    illegal = {"type": "transition", "data": {"task": str(task.pk), "status": "queued"}}

    first = _post(api, [move, illegal], status=207)
    again = _post(api, [move])

    assert first[0]["status"] == "created"
    assert first[1]["error"]["code"] == "illegal_transition"
    assert again[0]["status"] == "duplicate"
    task.refresh_from_db()
    assert (task.status, task.version) == ("running", 2)
    assert (
        Event.objects.filter(task_id=task.pk, kind="task.status_changed").count() == 1
    )


def test_messages_of_interleaved_conversations_get_gap_free_seq(api, project):
    a, _ = conversation_create(project=project, title="a")
    b, _ = conversation_create(project=project, title="b")
    items = [
        {
            "type": "message",
            "data": {"conversation": str(c.pk), "role": "user", "content": str(i)},
        }
        for i, c in enumerate([a, a, b, a, b, b, a])
    ]
    items.insert(3, {"type": "message", "data": {"conversation": str(a.pk)}})

    results = _post(api, items, status=207)

    assert results[3]["status"] == "error"
    assert "data.role" in results[3]["error"]["fields"]
    for conversation, expected in ((a, 4), (b, 3)):
        seqs = list(
            Message.objects.filter(conversation=conversation)
            .order_by("seq")
            .values_list("seq", flat=True)
        )
        assert seqs == list(range(1, expected + 1))
        conversation.refresh_from_db()
        assert conversation.message_count == expected


def test_a_bad_message_does_not_take_down_the_rest_of_its_conversation(api, project):
    conversation, _ = conversation_create(project=project)
    items = [
        {
            "type": "message",
            "data": {
                "conversation": str(conversation.pk),
                "role": "user",
                "reply_to": str(uuid.uuid4()) if i == 1 else None,
            },
        }
        for i in range(3)
    ]

    results = _post(api, items, status=207)

    assert [r["status"] for r in results] == ["created", "error", "created"]
    assert "reply_to" in results[1]["error"]["fields"]
    assert list(
        Message.objects.filter(conversation=conversation)
        .order_by("seq")
        .values_list("seq", flat=True)
    ) == [1, 2]


def test_another_projects_objects_are_not_found(api, other_project):
    theirs, _ = task_create(project=other_project, title="Theirs")
    conversation, _ = conversation_create(project=other_project)
    items = [
        {"type": "task", "data": {"id": str(theirs.pk), "title": "Theirs"}},
        {"type": "transition", "data": {"task": str(theirs.pk), "status": "running"}},
        {
            "type": "message",
            "data": {"conversation": str(conversation.pk), "role": "user"},
        },
        {"type": "run", "data": {"task": str(theirs.pk)}},
    ]

    results = _post(api, items, status=207)

    assert [r["status"] for r in results] == ["error"] * 4
    assert results[0]["error"]["code"] == "idempotency_conflict"
    theirs.refresh_from_db()
    assert theirs.status == "pending"
    assert not Message.objects.exists()


def test_items_over_the_limit_answer_413_naming_it(api, settings):
    settings.INGEST_MAX_ITEMS = 3
    items = [{"type": "event", "data": {"kind": "a.b"}}] * 4

    response = api.post(URL, {"items": items}, format="json")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert "at most 3 items" in response.json()["error"]["message"]
    assert not Event.objects.filter(kind="a.b").exists()


def test_a_body_over_the_limit_answers_413_naming_it(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    items = [{"type": "event", "data": {"kind": "a.b", "payload": {"x": "y" * 2000}}}]

    response = api.post(URL, {"items": items}, format="json")

    assert response.status_code == 413
    assert "1000 bytes" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "items"),
        ({"items": {}}, "items"),
        ({"items": []}, "items"),
        ({"items": [], "extra": 1}, "extra"),
        ([], "items"),
    ],
)
def test_a_malformed_envelope_answers_400_naming_the_field(api, body, field):
    response = api.post(URL, body, format="json")

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ("nope", "non_field_errors"),
        ({"type": "spaceship", "data": {}}, "type"),
        ({"type": "event", "data": []}, "data"),
        ({"type": "event", "data": {"kind": "a.b"}, "extra": 1}, "extra"),
        ({"type": "task", "data": {"title": "t", "status": "done"}}, "data.status"),
        ({"type": "event", "data": {"kind": "a.b", "position": 5}}, "data.position"),
        ({"type": "message", "data": {"role": "user"}}, "data.conversation"),
        ({"type": "transition", "data": {"status": "running"}}, "data.task"),
    ],
)
def test_a_malformed_item_is_an_error_naming_the_field(api, item, field):
    results = _post(api, [item], status=207)

    assert results[0]["status"] == "error"
    assert field in results[0]["error"]["fields"]


def test_without_a_key_401_and_with_a_read_only_key_403(
    client, project, make_api_client
):
    body = json.dumps({"items": [{"type": "event", "data": {"kind": "a.b"}}]})
    reader = make_api_client(project, scopes=("read",), name="reader")

    anonymous = client.post(URL, body, content_type="application/json")
    read_only = reader.post(URL, body, content_type="application/json")

    assert anonymous.status_code == 401
    assert read_only.status_code == 403
    assert not Event.objects.filter(kind="a.b").exists()


def test_items_are_counted_by_result_after_commit(
    api, django_capture_on_commit_callbacks
):
    def count(status: str) -> float:
        return INGEST_ITEMS.labels(status=status)._value.get()

    before = {s: count(s) for s in ("created", "duplicate", "error")}
    event = {"type": "event", "data": {"id": str(uuid.uuid4()), "kind": "a.b"}}
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _post(api, [event, {"type": "event", "data": {}}], status=207)
    assert count("created") == before["created"]
    for callback in callbacks:
        callback()
    with django_capture_on_commit_callbacks(execute=True):
        _post(api, [event])

    assert count("created") - before["created"] == 1
    assert count("duplicate") - before["duplicate"] == 1
    assert count("error") - before["error"] == 1


def test_items_are_written_with_bulk_statements(api, project):
    conversation, _ = conversation_create(project=project)

    def batch(n: int) -> list[dict]:
        return (
            [
                item
                for _ in range(n)
                for item in (
                    {"type": "event", "data": {"id": str(uuid.uuid4()), "kind": "a.b"}},
                )
            ]
            + [
                {"type": "task", "data": {"id": str(uuid.uuid4()), "title": "t"}}
                for _ in range(n)
            ]
            + [
                {
                    "type": "message",
                    "data": {"conversation": str(conversation.pk), "role": "user"},
                }
                for _ in range(n)
            ]
        )

    def queries(n: int) -> int:
        return _statements(api, batch(n))

    # 570 more items cost only the extra chunks of SQLite's bulk INSERTs
    # (PostgreSQL needs none): far less than a query per 20 items.
    assert queries(200) - queries(10) < 570 / 20
    assert Message.objects.filter(conversation=conversation).count() == 210


def test_a_replayed_batch_costs_no_query_per_item(api, project, agent):
    conversation, _ = conversation_create(project=project)
    parent = task_create(project=project, title="p")[0]

    def batch(n: int) -> list[dict]:
        tasks = [str(uuid.uuid4()) for _ in range(n)]
        return (
            [
                {
                    "type": "task",
                    "data": {
                        "id": t,
                        "title": "t",
                        "parent": str(parent.pk),
                        "assigned_agent": str(agent.pk),
                    },
                }
                for t in tasks
            ]
            + [
                {"type": "run", "data": {"task": t, "agent": str(agent.pk)}}
                for t in tasks
            ]
            + [
                {
                    "type": "message",
                    "data": {
                        "id": str(uuid.uuid4()),
                        "conversation": str(conversation.pk),
                        "role": "assistant",
                        "sender": str(agent.pk),
                    },
                }
                for _ in range(n)
            ]
        )

    def replayed(n: int) -> int:
        items = batch(n)
        for item in items:
            if item["type"] == "run":
                item["data"]["id"] = str(uuid.uuid4())
        _post(api, items)
        with CaptureQueriesContext(connection) as ctx:
            results = _post(api, items)
        assert {r["status"] for r in results} == {"duplicate"}
        return len(ctx.captured_queries)

    # Each replay is judged against its stored row: read with the batch,
    # never one query per row for its task, agent or parent.
    assert replayed(20) == replayed(2)


def test_conversations_and_their_messages_cost_no_query_per_conversation(
    api, project, agent
):
    def batch(n: int) -> list[dict]:
        ids = [str(uuid.uuid4()) for _ in range(n)]
        return [{"type": "conversation", "data": {"id": i}} for i in ids] + [
            {
                "type": "message",
                "data": {
                    "conversation": i,
                    "role": "assistant",
                    "sender": str(agent.pk),
                    "prompt_tokens": 3,
                },
            }
            for i in ids
        ]

    def queries(n: int) -> int:
        return _statements(api, batch(n))

    queries(1)  # The key's first use is recorded once.
    assert queries(20) == queries(2)
    agent.refresh_from_db()
    assert (agent.messages_count, agent.prompt_tokens) == (23, 69)
    assert Participant.objects.filter(agent=agent, message_count=1).count() == 23


def test_transitions_of_a_batch_cost_the_same_statements_for_2_or_20_tasks(
    api, project
):
    def batch(n: int) -> list[dict]:
        ids = [str(uuid.uuid4()) for _ in range(n)]
        return (
            [{"type": "task", "data": {"id": i, "title": "t"}} for i in ids]
            + [
                {
                    "type": "transition",
                    "data": {"task": i, "status": "running", "id": str(uuid.uuid4())},
                }
                for i in ids
            ]
            + [
                {"type": "transition", "data": {"task": i, "status": "completed"}}
                for i in ids
            ]
        )

    def queries(n: int) -> int:
        return _statements(api, batch(n))

    queries(1)  # The key's first use is recorded once.
    # One UPDATE per distinct change, not per task; SQLite may add an
    # INSERT chunk.
    assert queries(20) - queries(2) <= 1
    assert Task.objects.filter(project=project, status="completed").count() == 23


def test_runs_of_one_batch_roll_up_into_their_tasks_once(api, project, agent):
    task, _ = task_create(project=project, title="T")
    run_ids = _ids(3)
    items = [
        {
            "type": "run",
            "data": {
                "id": run_id,
                "task": str(task.pk),
                "agent": str(agent.pk),
                "prompt_tokens": 10,
                "cost": "0.25",
            },
        }
        for run_id in run_ids
    ]

    _post(api, items)
    results = _post(api, items)

    assert [r["status"] for r in results] == ["duplicate"] * 3
    task.refresh_from_db()
    assert (task.prompt_tokens, task.cost) == (30, Decimal("0.75"))
    assert AgentRun.objects.filter(task=task).count() == 3
    assert list(task.agents.all()) == [agent]
    assert Event.objects.filter(task_id=task.pk, kind="run.started").count() == 3


def test_agent_update_items_change_an_agent_as_its_patch_does(api, project):
    boss, worker = _ids(2)
    _post(
        api,
        [
            {"type": "agent", "data": {"id": boss, "name": "boss"}},
            {"type": "agent", "data": {"id": worker, "name": "worker"}},
            {"type": "agent_update", "data": {"agent": worker, "parent": boss}},
            {"type": "agent_update", "data": {"agent": worker, "role": "search"}},
        ],
    )
    agent = Agent.objects.get(pk=worker)
    assert (str(agent.parent_id), agent.role) == (boss, "search")
    changes = [
        e.payload["changes"]
        for e in Event.objects.filter(project=project, kind="agent.updated").order_by(
            "position"
        )
    ]
    assert changes == [{"parent": [None, boss]}, {"role": ["", "search"]}]

    results = _post(
        api,
        [
            {"type": "agent_update", "data": {"agent": boss, "parent": worker}},
            {"type": "agent_update", "data": {"agent": str(uuid.uuid4())}},
            {"type": "agent_update", "data": {"agent": worker, "id": boss}},
        ],
        status=207,
    )
    assert [r["status"] for r in results] == ["error"] * 3
    assert [sorted(r["error"]["fields"]) for r in results] == [
        ["parent"],
        ["agent"],
        ["data.id"],
    ]
    assert Agent.objects.get(pk=boss).parent_id is None


def test_message_sender_fill_items_give_stored_messages_their_sender_once(api, project):
    boss, worker, conv, m1, m2, m3 = _ids(6)
    _post(
        api,
        [
            {"type": "agent", "data": {"id": boss, "name": "boss"}},
            {"type": "agent", "data": {"id": worker, "name": "worker"}},
            {"type": "conversation", "data": {"id": conv}},
            *(
                {
                    "type": "message",
                    "data": {
                        "conversation": conv,
                        "id": m,
                        "role": "assistant",
                        "prompt_tokens": 10,
                        "latency_ms": 5,
                    },
                }
                for m in (m1, m2)
            ),
            {
                "type": "message",
                "data": {
                    "conversation": conv,
                    "id": m3,
                    "role": "user",
                    "sender": boss,
                },
            },
        ],
    )
    fills = [
        {"type": "message_sender_fill", "data": {"message": m1, "sender": worker}},
        {"type": "message_sender_fill", "data": {"message": m2, "sender": worker}},
    ]

    first = _post(api, fills)
    again = _post(api, fills)

    assert [(r["id"], r["status"]) for r in first] == [
        (m1, "created"),
        (m2, "created"),
    ]
    assert [r["status"] for r in again] == ["duplicate", "duplicate"]
    agent = Agent.objects.get(pk=worker)
    assert (agent.messages_count, agent.prompt_tokens, agent.latency_count) == (
        2,
        20,
        2,
    )
    assert Participant.objects.get(conversation_id=conv, agent=agent).message_count == 2
    assert Event.objects.filter(project=project, kind="message.updated").count() == 2

    # A bad item is refused on its own; the good one next to it is written.
    results = _post(
        api,
        [
            {"type": "message_sender_fill", "data": {"message": m3, "sender": worker}},
            {
                "type": "message_sender_fill",
                "data": {"message": m1, "sender": _ids(1)[0]},
            },
            {
                "type": "message_sender_fill",
                "data": {"message": _ids(1)[0], "sender": boss},
            },
            {"type": "message_sender_fill", "data": {"message": m1}},
            {"type": "message_sender_fill", "data": {"message": m1, "sender": worker}},
        ],
        status=207,
    )
    assert [r["status"] for r in results] == ["error"] * 4 + ["duplicate"]
    assert results[0]["error"]["code"] == "conflict"
    assert [sorted(r["error"].get("fields", [])) for r in results[1:4]] == [
        ["sender"],
        ["message"],
        ["data.sender"],
    ]
    assert str(Message.objects.get(pk=m3).sender_id) == boss


def test_run_metadata_fill_items_cost_the_same_statements_for_2_or_20_runs(
    api, project, task
):
    def statements(n: int) -> int:
        runs = [run_create(project=project, task=task)[0] for _ in range(n)]
        fills = [
            {
                "type": "run_metadata_fill",
                "data": {"run": str(run.pk), "metadata": {"otel": {"by": "boss"}}},
            }
            for run in runs
        ]
        count = _statements(api, fills)
        assert all(
            r.metadata == {"otel": {"by": "boss"}}
            for r in AgentRun.objects.filter(pk__in=[run.pk for run in runs])
        )
        return count

    statements(1)  # the key's first use records its last_used_at
    assert statements(20) == statements(2)


def test_run_metadata_fill_items_add_what_a_run_lacks(api, project):
    agent, task, run = _ids(3)
    _post(
        api,
        [
            {"type": "agent", "data": {"id": agent, "name": "worker"}},
            {"type": "task", "data": {"id": task, "title": "T"}},
            {
                "type": "run",
                "data": {
                    "id": run,
                    "task": task,
                    "agent": agent,
                    "status": "completed",
                    "metadata": {"otel": {"span_id": "ab"}},
                },
            },
        ],
    )
    fill = {
        "type": "run_metadata_fill",
        "data": {"run": run, "metadata": {"otel": {"delegated_by": "boss"}}},
    }

    assert [r["status"] for r in _post(api, [fill])] == ["created"]
    assert [r["status"] for r in _post(api, [fill])] == ["duplicate"]
    assert AgentRun.objects.get(pk=run).metadata == {
        "otel": {"span_id": "ab", "delegated_by": "boss"}
    }
    results = _post(
        api,
        [
            {
                "type": "run_metadata_fill",
                "data": {"run": run, "metadata": {"otel": {"delegated_by": "x"}}},
            },
            {"type": "run_metadata_fill", "data": {"run": _ids(1)[0], "metadata": {}}},
            {"type": "run_metadata_fill", "data": {"run": run, "metadata": []}},
        ],
        status=207,
    )
    assert [r["status"] for r in results] == ["error"] * 3
    assert results[0]["error"]["code"] == "conflict"
    assert [sorted(r["error"].get("fields", [])) for r in results[1:]] == [
        ["run"],
        ["data.metadata"],
    ]
    assert Event.objects.filter(project=project, kind="run.updated").count() == 1
