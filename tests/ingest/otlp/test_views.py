"""`POST /otlp/v1/traces` through Django's test client: the mapping, rule by
rule, idempotency, order, the body formats and the error answers."""

from __future__ import annotations

import gzip
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from audit.models import AuditLog, Event
from conversations.models import Conversation, Message, Participant
from tasks.models import Agent, AgentRun, Task
from tasks.services import task_transition
from tests.ingest.otlp import builder

URL = "/otlp/v1/traces"
PROTOBUF = "application/x-protobuf"

pytestmark = pytest.mark.django_db


def post(client, req, *, content_type=PROTOBUF, encoding=None, body=None):
    if body is None:
        body = (
            builder.to_json(req)
            if content_type == "application/json"
            else req.SerializeToString()
        )
    extra = {"HTTP_CONTENT_ENCODING": encoding} if encoding else {}
    if encoding == "gzip":
        body = gzip.compress(body)
    return client.generic("POST", URL, body, content_type=content_type, **extra)


def partial(response) -> ExportTraceServiceResponse:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == PROTOBUF
    out = ExportTraceServiceResponse()
    out.ParseFromString(response.content)
    return out


def state(project) -> dict:
    """Everything the mapping writes, without ids, comparable across projects."""
    return {
        "tasks": sorted(
            (t.title.startswith("Trace "), t.status, t.prompt_tokens, t.cached_tokens)
            for t in Task.objects.filter(project=project)
        ),
        "agents": sorted(
            (
                a.name,
                a.parent.name if a.parent else None,
                a.runs_count,
                a.messages_count,
                a.prompt_tokens,
                a.completion_tokens,
                a.cached_tokens,
                str(a.cost),
                a.latency_total_ms,
                a.latency_count,
            )
            for a in Agent.objects.filter(project=project)
        ),
        "runs": sorted(
            (
                r.agent.name,
                r.status,
                r.error,
                r.started_at.isoformat(),
                r.metadata["otel"].get("delegated_by"),
            )
            for r in AgentRun.objects.filter(project=project)
        ),
        "conversations": sorted(
            (
                c.title.startswith("Trace "),
                c.message_count,
                c.prompt_tokens,
                c.completion_tokens,
                c.cached_tokens,
                str(c.cost),
            )
            for c in Conversation.objects.filter(project=project)
        ),
        "participants": sorted(
            (p.agent.name, p.message_count)
            for p in Participant.objects.filter(conversation__project=project)
        ),
        "messages": sorted(
            (
                m.role,
                m.content,
                json.dumps(m.tool_calls),
                m.model,
                m.prompt_tokens,
                m.completion_tokens,
                m.cached_tokens,
                m.latency_ms,
                m.sender.name if m.sender else "",
            )
            for m in Message.objects.filter(project=project)
        ),
        "audits": sorted(
            (a.action, a.target, a.success, a.error, a.duration_ms)
            for a in AuditLog.objects.filter(project=project, action="tool.invoke")
        ),
        "events": sorted(
            e.kind for e in Event.objects.filter(project=project, kind="otel.span")
        ),
    }


@pytest.fixture
def otlp(project, make_api_client):
    return make_api_client(project)


def test_three_agent_trace_maps_to_task_agents_runs_messages_audits_events(
    otlp, project
):
    trace, spans = builder.three_agent_trace()
    assert partial(post(otlp, builder.request(*spans))).ByteSize() == 0

    task = Task.objects.get(project=project)
    assert task.title == "invoke_agent planner"
    assert task.status == "failed"  # the root span failed
    assert task.error == "writer gave up"
    assert task.metadata == {"otel": {"trace_id": trace.hex()}}

    agents = {a.name: a for a in Agent.objects.filter(project=project)}
    assert set(agents) == {"planner", "researcher", "writer"}
    assert agents["planner"].parent is None
    assert agents["researcher"].parent == agents["planner"]
    assert agents["writer"].parent == agents["planner"]

    runs = {r.agent.name: r for r in AgentRun.objects.filter(task=task)}
    assert {n: r.status for n, r in runs.items()} == {
        "planner": "failed",
        "researcher": "completed",
        "writer": "failed",
    }
    assert runs["writer"].error == "out of ink"
    assert (
        runs["researcher"].started_at.isoformat() == "2026-01-01T00:00:00.010000+00:00"
    )
    assert runs["researcher"].metadata["otel"]["duration_ms"] == 400.0
    assert runs["researcher"].metadata["otel"]["delegated_by"] == "planner"

    conversation = Conversation.objects.get(project=project)
    assert conversation.task == task
    messages = list(conversation.messages.order_by("seq"))
    assert [(m.seq, m.role, m.content) for m in messages] == [
        (1, "system", "Be brief."),
        (2, "user", "Find X."),
        (3, "assistant", "Searching."),
    ]
    reply = messages[2]
    assert reply.tool_calls == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "search", "arguments": '{"q": "X"}'},
        }
    ]
    assert reply.model == "gpt-5-2026"
    assert reply.sender == agents["researcher"]
    assert (reply.prompt_tokens, reply.completion_tokens, reply.cached_tokens) == (
        1200,
        80,
        1000,
    )
    assert reply.latency_ms == 250.0
    task.refresh_from_db()
    assert (task.prompt_tokens, task.completion_tokens, task.cached_tokens) == (
        1200,
        80,
        1000,
    )

    audits = {
        a.target: a
        for a in AuditLog.objects.filter(project=project, action="tool.invoke")
    }
    assert audits["search"].success is True
    assert audits["search"].duration_ms == 50.0
    assert audits["search"].details["result"] == "X is 42"
    assert audits["search"].details["tool_call_id"] == "call_1"
    assert audits["pen"].success is False
    assert audits["pen"].error == "pen broke"

    events = Event.objects.filter(project=project, kind="otel.span")
    assert events.count() == len(spans)
    assert all(e.task_id == task.pk for e in events)
    chat = events.get(payload__type="llm")
    assert chat.conversation_id == conversation.pk
    assert chat.payload["usage"] == {
        "prompt_tokens": 1200,
        "cached_tokens": 1000,
        "completion_tokens": 80,
    }
    root = events.get(payload__name="invoke_agent planner")
    assert root.payload["status"] == "error"
    assert "parent_span_id" not in root.payload
    # The domain services wrote their own events on the same path.
    kinds = set(Event.objects.filter(project=project).values_list("kind", flat=True))
    assert {"task.created", "run.started", "message.created"} <= kinds


def test_the_same_export_sent_twice_changes_nothing(otlp, project):
    _, spans = builder.three_agent_trace()
    req = builder.request(*spans)
    post(otlp, req)
    before = state(project), Event.objects.count(), AuditLog.objects.count()
    assert partial(post(otlp, req)).ByteSize() == 0
    assert (state(project), Event.objects.count(), AuditLog.objects.count()) == before


def test_span_order_within_an_export_does_not_matter(
    project, other_project, make_api_client
):
    _, spans = builder.three_agent_trace()
    post(make_api_client(project), builder.request(*spans))
    post(make_api_client(other_project), builder.request(*reversed(spans)))
    assert state(project) == state(other_project)


def test_children_first_in_separate_exports_give_the_same_rows(
    project, other_project, make_api_client
):
    """Each span in its own export, leaves first, as a batch processor may
    send a long trace. An agent gets its parent, a message its sender and a
    run its delegation when the span above arrives: the rows, roll-ups and
    participants end as when the trace came in one export."""
    _, spans = builder.three_agent_trace()
    post(make_api_client(project), builder.request(*spans))
    late = make_api_client(other_project)
    for span in reversed(spans):
        assert partial(post(late, builder.request(span))).ByteSize() == 0
    together, apart = state(project), state(other_project)
    assert apart["agents"][1][:2] == ("researcher", "planner")
    assert ("researcher", 1) in apart["participants"]
    assert apart == together
    task = Task.objects.get(project=other_project)
    assert task.status == "failed"
    # Sent again, the exports write nothing: the fills are duplicates.
    before = state(other_project), Event.objects.count(), AuditLog.objects.count()
    for span in reversed(spans):
        assert partial(post(late, builder.request(span))).ByteSize() == 0
    assert (state(other_project), Event.objects.count(), AuditLog.objects.count()) == (
        before
    )


def delegation_trace() -> list:
    """lead -> step (not an agent) -> coder; coder's calls write two and one
    assistant messages, lead's call (under the step) one, and a call naming
    its own agent (reviewer) one."""
    trace = builder.new_trace()
    lead, step, coder = (builder.new_span_id() for _ in range(3))

    def chat(name, parent, start, outputs, **extra):
        return builder.span(
            trace,
            name,
            parent=parent,
            start_ms=start,
            duration_ms=40 + start,
            gen_ai__operation__name="chat",
            gen_ai__request__model="m",
            gen_ai__usage__input_tokens=100 + start,
            gen_ai__usage__output_tokens=10,
            gen_ai__usage__cache_read__input_tokens=start,
            gen_ai__input__messages=json.dumps(
                [{"role": "user", "parts": [builder.text(f"ask {name}")]}]
            ),
            gen_ai__output__messages=json.dumps(
                [
                    {"role": "assistant", "parts": [builder.text(f"{name} {i}")]}
                    for i in range(outputs)
                ]
            ),
            **extra,
        )

    return [
        builder.agent_span(trace, "lead", span_id=lead, duration_ms=1000),
        builder.span(trace, "plan", span_id=step, parent=lead, start_ms=5),
        builder.agent_span(
            trace, "coder", span_id=coder, parent=step, start_ms=10, duration_ms=500
        ),
        chat("write", coder, 20, 2),
        chat("fix", coder, 200, 1),
        chat("sum up", step, 600, 1),
        chat("review", step, 700, 1, gen_ai__agent__name="reviewer"),
    ]


# Exports of delegation_trace's spans, by index: 0 lead, 1 plan, 2 coder,
# 3-6 the calls.
ORDERS = {
    "leaves first": [[6], [5], [4], [3], [2], [1], [0]],
    "the step last": [[3], [4], [5], [6], [2], [0], [1]],
    "agents last": [[3, 4, 5, 6], [1], [2], [0]],
    "root first, then leaves": [[0], [3], [6], [5], [4], [1], [2]],
    "calls again with their agent": [[3, 5], [4], [2, 3], [1, 5], [0, 6]],
}


@pytest.mark.parametrize("order", ORDERS)
def test_any_order_of_exports_gives_the_rows_of_one_export(
    project, other_project, make_api_client, order
):
    spans = delegation_trace()
    post(make_api_client(project), builder.request(*spans))
    late = make_api_client(other_project)
    for export in ORDERS[order]:
        request = builder.request(*(spans[i] for i in export))
        assert partial(post(late, request)).ByteSize() == 0

    together = state(project)
    assert together["runs"] == [
        ("coder", "completed", "", "2026-01-01T00:00:00.010000+00:00", "lead"),
        ("lead", "completed", "", "2026-01-01T00:00:00+00:00", None),
    ]
    senders = {m[1]: m[-1] for m in together["messages"] if m[0] == "assistant"}
    assert senders == {
        "write 0": "coder",
        "write 1": "coder",
        "fix 0": "coder",
        "sum up 0": "lead",
        "review 0": "reviewer",
    }
    assert state(other_project) == together
    # Each message got its sender once.
    filled = Event.objects.filter(project=other_project, kind="message.updated")
    assert filled.count() == len({e.payload["message"] for e in filled})


def test_parents_first_in_separate_exports_give_the_same_rows(
    project, other_project, make_api_client
):
    """Each span in its own export, roots first: agents, senders and
    delegations are found among the spans earlier exports wrote."""
    _, spans = builder.three_agent_trace()
    post(make_api_client(project), builder.request(*spans))
    late = make_api_client(other_project)
    for span in spans:
        assert partial(post(late, builder.request(span))).ByteSize() == 0
    assert state(other_project) == state(project)
    delegated = {
        r.agent.name: r.metadata["otel"].get("delegated_by")
        for r in AgentRun.objects.filter(project=other_project)
    }
    assert delegated == {"planner": None, "researcher": "planner", "writer": "planner"}


def test_a_stored_span_whose_id_looks_like_a_number_is_still_an_ancestor(otlp, project):
    trace = builder.new_trace()
    boss = bytes.fromhex("0e12345678901234")  # a JSON number, read as text
    for span in (
        builder.agent_span(trace, "boss", span_id=boss),
        builder.agent_span(trace, "worker", parent=boss),
    ):
        post(otlp, builder.request(span))
    worker = Agent.objects.get(project=project, name="worker")
    assert worker.parent.name == "boss"


def test_a_parent_found_later_is_set_once_and_never_replaced(otlp, project):
    trace = builder.new_trace()
    boss, worker = builder.new_span_id(), builder.new_span_id()
    child = builder.agent_span(trace, "worker", span_id=worker, parent=boss)
    root = builder.agent_span(trace, "boss", span_id=boss)
    post(otlp, builder.request(child))
    assert Agent.objects.get(project=project, name="worker").parent is None
    post(otlp, builder.request(root))
    boss_agent = Agent.objects.get(project=project, name="boss")
    assert Agent.objects.get(project=project, name="worker").parent == boss_agent
    updates = Event.objects.filter(project=project, kind="agent.updated")
    assert [e.payload["changes"]["parent"] for e in updates] == [
        [None, str(boss_agent.pk)]
    ]

    # Another trace where someone else delegates to the worker changes nothing.
    other = builder.new_trace()
    chief = builder.new_span_id()
    post(
        otlp,
        builder.request(
            builder.agent_span(other, "chief", span_id=chief),
            builder.agent_span(other, "worker", parent=chief),
        ),
    )
    assert Agent.objects.get(project=project, name="worker").parent == boss_agent
    assert updates.count() == 1


def test_json_with_hex_ids_and_gzip_are_accepted(otlp, project):
    trace, spans = builder.three_agent_trace()
    response = post(
        otlp, builder.request(*spans), content_type="application/json", encoding="gzip"
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {}
    task = Task.objects.get(project=project)
    assert task.metadata["otel"]["trace_id"] == trace.hex()
    assert AgentRun.objects.filter(task=task).count() == 3
    # The protobuf export of the same spans is a duplicate of the JSON one.
    before = state(project)
    post(otlp, builder.request(*spans), encoding="gzip")
    assert state(project) == before


def test_openinference_llm_span_keeps_prompt_cached_and_cost_apart(otlp, project):
    trace = builder.new_trace()
    span = builder.span(
        trace,
        "ChatOpenAI",
        openinference__span__kind="LLM",
        llm__model_name="gpt-4o-mini",
        llm__token_count__prompt=900,
        llm__token_count__completion=30,
        llm__token_count__prompt_details__cache_read=512,
        llm__cost__total=0.0012345678,
        session__id="chat-42",
        **{
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": "You are terse.",
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.contents.0.message_content.type": "text",
            "llm.input_messages.1.message.contents.0.message_content.text": "Hi",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": "Hello.",
        },
    )
    assert partial(post(otlp, builder.request(span))).ByteSize() == 0
    conversation = Conversation.objects.get(project=project)
    assert conversation.title == "chat-42"
    assert conversation.task is None  # a session spans traces
    rows = list(conversation.messages.order_by("seq"))
    assert [(m.role, m.content) for m in rows] == [
        ("system", "You are terse."),
        ("user", "Hi"),
        ("assistant", "Hello."),
    ]
    reply = rows[-1]
    assert (reply.prompt_tokens, reply.cached_tokens, reply.completion_tokens) == (
        900,
        512,
        30,
    )
    assert str(reply.cost) == "0.001235"
    assert reply.model == "gpt-4o-mini"


def test_a_named_conversation_collects_calls_of_several_traces_once(otlp, project):
    history = [{"role": "user", "parts": [builder.text("Plan a trip.")]}]
    turns = []
    for answer in ("Where to?", "Booked."):
        turns.append(
            builder.span(
                builder.new_trace(),
                "chat",
                gen_ai__operation__name="chat",
                gen_ai__conversation__id="trip",
                gen_ai__input__messages=json.dumps(history),
                gen_ai__output__messages=json.dumps(
                    [{"role": "assistant", "parts": [builder.text(answer)]}]
                ),
            )
        )
        history = [
            *history,
            {"role": "assistant", "parts": [builder.text(answer)]},
            {"role": "user", "parts": [builder.text("Rome.")]},
        ]
    for turn in turns:
        post(otlp, builder.request(turn))
    conversation = Conversation.objects.get(project=project)
    assert [m.content for m in conversation.messages.order_by("seq")] == [
        "Plan a trip.",
        "Where to?",
        "Rome.",
        "Booked.",
    ]
    assert Task.objects.filter(project=project).count() == 2


def test_calls_resending_their_history_cost_the_statements_of_two_calls(otlp, project):
    def statements(calls: int) -> int:
        spans = builder.history_calls(builder.new_trace(), calls)
        with CaptureQueriesContext(connection) as ctx:
            assert partial(post(otlp, builder.request(*spans))).ByteSize() == 0
        return len(ctx.captured_queries)

    statements(1)  # the project's first write creates its journal head
    # A message planned twice (the history) made ingest write them one by one.
    assert statements(8) == statements(2)
    assert Message.objects.filter(project=project).count() == 2 + 8 * 2 + 2 * 2


def test_a_model_call_without_captured_messages_still_records_its_usage(otlp, project):
    span = builder.span(
        builder.new_trace(),
        "chat",
        gen_ai__operation__name="chat",
        gen_ai__usage__input_tokens=10,
        gen_ai__usage__output_tokens=5,
    )
    post(otlp, builder.request(span))
    message = Message.objects.get(project=project)
    assert (message.role, message.content, message.prompt_tokens) == (
        "assistant",
        "",
        10,
    )


def test_a_trace_task_cancelled_before_its_root_arrives_keeps_the_root_span(
    otlp, project
):
    """A person cancelled the task while the agents ran: the cancel stands,
    and the root span is written and not refused (its end is settled)."""
    spans = delegation_trace()
    assert partial(post(otlp, builder.request(*spans[1:]))).ByteSize() == 0
    task_transition(task=Task.objects.get(project=project), status="cancelled")
    assert partial(post(otlp, builder.request(spans[0]))).ByteSize() == 0
    assert Task.objects.get(project=project).status == "cancelled"
    assert AgentRun.objects.filter(agent__name="lead").exists()
    assert Event.objects.filter(project=project, kind="otel.span").count() == len(spans)


def test_children_written_before_their_root_keep_the_task_open(otlp, project):
    trace, spans = builder.three_agent_trace()
    post(otlp, builder.request(*spans[1:]))
    task = Task.objects.get(project=project)
    assert task.title == f"Trace {trace.hex()}"
    assert task.status == "running"
    post(otlp, builder.request(spans[0]))
    task.refresh_from_db()
    assert task.status == "failed"
    assert task.title == "invoke_agent planner"


def test_spans_with_unusable_ids_are_rejected_in_partial_success(otlp, project):
    trace = builder.new_trace()
    good = builder.span(trace, "fine")
    bad = builder.span(trace, "no id", span_id=b"\x00" * 8)
    short = builder.span(trace, "short trace")
    short.trace_id = b"\x01\x02"
    answer = partial(post(otlp, builder.request(good, bad, short)))
    assert answer.partial_success.rejected_spans == 2
    assert "span_id" in answer.partial_success.error_message
    assert Event.objects.filter(project=project, kind="otel.span").count() == 1


def test_remote_parent_makes_a_span_the_root_of_its_task(otlp, project):
    span = builder.span(
        builder.new_trace(), "handle request", parent=builder.new_span_id()
    )
    span.flags = 0x300  # the parent is known to be remote
    post(otlp, builder.request(span))
    assert Task.objects.get(project=project).status == "completed"


@pytest.mark.parametrize(
    ("body", "content_type", "encoding", "status", "code"),
    [
        (b"\xff\xff\xff", PROTOBUF, None, 400, "parse_error"),
        (b"{not json", "application/json", None, 400, "parse_error"),
        (b"[1, 2]", "application/json", None, 400, "parse_error"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            "application/json",
            None,
            400,
            "parse_error",
        ),
        (b"\x1f\x8b\x08\x00garbage", PROTOBUF, "gzip", 400, "parse_error"),
        (b"", "text/plain", None, 415, "unsupported_media_type"),
        (b"", PROTOBUF, "br", 415, "unsupported_media_type"),
    ],
)
def test_bad_bodies_get_the_api_error_shape(
    otlp, body, content_type, encoding, status, code
):
    extra = {"HTTP_CONTENT_ENCODING": encoding} if encoding else {}
    response = otlp.generic("POST", URL, body, content_type=content_type, **extra)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_unauthenticated_and_read_only_keys_are_refused(
    client, project, make_api_client
):
    body = builder.request(builder.span(builder.new_trace(), "x")).SerializeToString()
    response = client.generic("POST", URL, body, content_type=PROTOBUF)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    reader = make_api_client(project, scopes=("read",))
    assert reader.generic("POST", URL, body, content_type=PROTOBUF).status_code == 403
    assert not Event.objects.filter(kind="otel.span").exists()


def test_bodies_over_the_limit_get_413_before_and_after_decompression(otlp, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    big = builder.request(
        builder.span(builder.new_trace(), "x", note="a" * 10_000)
    ).SerializeToString()
    assert len(gzip.compress(big)) < 4096
    response = otlp.generic("POST", URL, big, content_type=PROTOBUF)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    response = otlp.generic(
        "POST",
        URL,
        gzip.compress(big),
        content_type=PROTOBUF,
        HTTP_CONTENT_ENCODING="gzip",
    )
    assert response.status_code == 413
    assert not Event.objects.filter(kind="otel.span").exists()


def test_a_span_repeated_or_regrouped_in_later_exports_is_not_refused(otlp, project):
    _, spans = builder.three_agent_trace()
    chat = spans[2]
    # Twice in one export: written once.
    assert partial(post(otlp, builder.request(chat, chat))).ByteSize() == 0
    assert Message.objects.filter(project=project, role="assistant").count() == 1
    # Regrouped with its agent: the message first written without a sender
    # keeps its body and gets the sender; nothing is reported refused.
    assert partial(post(otlp, builder.request(*spans))).ByteSize() == 0
    reply = Message.objects.get(project=project, role="assistant")
    assert reply.sender.name == "researcher"
    assert Message.objects.filter(project=project, role="assistant").count() == 1
    assert AgentRun.objects.filter(project=project).count() == 3
