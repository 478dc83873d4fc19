"""The real OpenTelemetry SDK and OTLP/HTTP exporter against a real daphne.

Acceptance of issue 12: a three-agent trace with chat, tool and error spans
becomes the rows docs/otlp.md promises; the same export sent twice changes
nothing; JSON and gzip work; malformed, unauthenticated and oversized
requests get 400, 401 and 413; OpenInference's LangChain instrumentor around
a chain on langchain_core's fake chat model arrives as messages and events.
"""

from __future__ import annotations

import gzip
import json

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import Status, StatusCode

from tests.e2e.stack import Daphne, Http, base_env, fresh_database, prepare
from tests.ingest.otlp import builder

pytestmark = pytest.mark.slow

BODY_LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("otlp-e2e")
    with fresh_database(tmp_path) as database_url:
        env = base_env(tmp_path, database_url, API_MAX_BODY_BYTES=str(BODY_LIMIT))
        key = prepare(env)
        daphne = Daphne(env, tmp_path / "daphne.log")
        try:
            yield daphne, key
        finally:
            daphne.stop()


def recorded(build) -> list:
    """The finished spans of `build(tracer)`, from a private tracer provider."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "e2e"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    build(provider.get_tracer("e2e"))
    provider.shutdown()
    return list(memory.get_finished_spans())


def three_agents(tracer) -> None:
    with tracer.start_as_current_span(
        "invoke_agent planner",
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "e2e-planner",
        },
    ) as root:
        with tracer.start_as_current_span(
            "invoke_agent researcher",
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "e2e-researcher",
            },
        ):
            with tracer.start_as_current_span(
                "chat gpt-5",
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "gpt-5",
                    "gen_ai.usage.input_tokens": 1500,
                    "gen_ai.usage.output_tokens": 120,
                    "gen_ai.usage.cache_read.input_tokens": 1024,
                    "gen_ai.input.messages": json.dumps(
                        [{"role": "user", "parts": [builder.text("What is X?")]}]
                    ),
                    "gen_ai.output.messages": json.dumps(
                        [
                            {
                                "role": "assistant",
                                "parts": [builder.text("X is 42.")],
                                "finish_reason": "stop",
                            }
                        ]
                    ),
                },
            ):
                pass
            with tracer.start_as_current_span(
                "execute_tool lookup",
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": "lookup",
                },
            ):
                pass
        with tracer.start_as_current_span(
            "invoke_agent critic",
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "e2e-critic",
            },
        ) as critic:
            with tracer.start_as_current_span(
                "execute_tool judge",
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": "judge",
                },
            ) as judge:
                judge.record_exception(ValueError("no verdict"))
                judge.set_status(Status(StatusCode.ERROR, "no verdict"))
            critic.set_status(Status(StatusCode.ERROR, "critic failed"))
        root.set_status(Status(StatusCode.ERROR, "critic failed"))


def exporter(daphne, key, **kwargs) -> OTLPSpanExporter:
    return OTLPSpanExporter(
        endpoint=f"{daphne.url}/otlp/v1/traces",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
        **kwargs,
    )


def everything(http: Http, task_id: str) -> dict:
    """The trace's rows, read back over the REST API."""
    _, task = http.request("GET", f"/api/v1/tasks/{task_id}/")
    _, runs = http.request("GET", f"/api/v1/runs/?task={task_id}&page_size=100")
    _, talks = http.request("GET", f"/api/v1/conversations/?task={task_id}")
    messages = []
    for talk in talks["results"]:
        _, page = http.request(
            "GET",
            f"/api/v1/conversations/{talk['id']}/messages/?page_size=500&fields=full",
        )
        messages += page["results"]
    _, audits = http.request(
        "GET", "/api/v1/audit-logs/?action=tool.invoke&page_size=500"
    )
    _, events = http.request("GET", f"/api/v1/events/?task={task_id}&page_size=500")
    _, agents = http.request("GET", "/api/v1/agents/?page_size=500")
    return {
        "task": task,
        "runs": runs["results"],
        "messages": messages,
        "audits": audits["results"],
        "events": events["results"],
        "agents": agents["results"],
    }


def test_three_agent_trace_through_the_sdk_exporter_twice(server):
    daphne, key = server
    spans = recorded(three_agents)
    assert len(spans) == 6
    task_id = None
    for _ in range(2):
        result = exporter(daphne, key, compression=Compression.Gzip).export(spans)
        assert result == SpanExportResult.SUCCESS
        http = Http(daphne.port, key)
        _, tasks = http.request("GET", "/api/v1/tasks/?search=invoke_agent")
        if task_id is None:
            (task,) = [t for t in tasks["results"] if t["title"].endswith("planner")]
            task_id = task["id"]
            first = everything(http, task_id)
    again = everything(http, task_id)
    assert again == first

    task = first["task"]
    assert task["status"] == "failed"
    assert (task["prompt_tokens"], task["completion_tokens"]) == (1500, 120)
    assert task["cached_tokens"] == 1024
    by_id = {a["id"]: a["name"] for a in first["agents"]}
    parents = {
        a["name"]: by_id.get(a["parent"])
        for a in first["agents"]
        if a["name"].startswith("e2e-")
    }
    assert parents == {
        "e2e-planner": None,
        "e2e-researcher": "e2e-planner",
        "e2e-critic": "e2e-planner",
    }
    runs = {by_id[r["agent"]]: r["status"] for r in first["runs"]}
    assert runs == {
        "e2e-planner": "failed",
        "e2e-researcher": "completed",
        "e2e-critic": "failed",
    }
    assert [(m["role"], m["content"]) for m in first["messages"]] == [
        ("user", "What is X?"),
        ("assistant", "X is 42."),
    ]
    reply = first["messages"][1]
    assert (reply["prompt_tokens"], reply["completion_tokens"]) == (1500, 120)
    assert reply["cached_tokens"] == 1024
    assert by_id[reply["sender"]] == "e2e-researcher"
    tools = {a["target"]: (a["success"], a["error"]) for a in first["audits"]}
    assert tools["lookup"] == (True, "")
    assert tools["judge"] == (False, "no verdict")
    spans_seen = [e for e in first["events"] if e["kind"] == "otel.span"]
    assert len(spans_seen) == 6


def test_json_gzip_and_the_error_answers(server):
    daphne, key = server
    trace = builder.new_trace()
    req = builder.request(builder.span(trace, "json root"))
    auth = {"Authorization": f"Bearer {key}"}
    url = f"{daphne.url}/otlp/v1/traces"
    with httpx.Client(timeout=30) as client:
        ok = client.post(
            url,
            content=gzip.compress(builder.to_json(req)),
            headers=auth
            | {"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert ok.status_code == 200
        assert ok.headers["content-type"] == "application/json"
        _, tasks = Http(daphne.port, key).request("GET", "/api/v1/tasks/?search=json")
        assert [t["title"] for t in tasks["results"]] == ["json root"]

        malformed = client.post(
            url, content=b"\x0a\xff", headers=auth | {"Content-Type": builder.PROTOBUF}
        )
        assert malformed.status_code == 400
        assert malformed.json()["error"]["code"] == "parse_error"

        anonymous = client.post(
            url,
            content=req.SerializeToString(),
            headers={"Content-Type": builder.PROTOBUF},
        )
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "not_authenticated"

        big = builder.request(builder.span(trace, "big", note="x" * BODY_LIMIT))
        raw = big.SerializeToString()
        for body, extra in (
            (raw, {}),
            (gzip.compress(raw), {"Content-Encoding": "gzip"}),
        ):
            oversized = client.post(
                url,
                content=body,
                headers=auth | {"Content-Type": builder.PROTOBUF} | extra,
            )
            assert oversized.status_code == 413
    # The SDK's exporter treats 401 as final: it reports failure, no retry.
    assert (
        exporter(daphne, "wrong-key").export(recorded(three_agents))
        == SpanExportResult.FAILURE
    )


def test_openinference_langchain_spans_arrive_as_messages_and_events(server):
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.prompts import ChatPromptTemplate
    from openinference.instrumentation.langchain import LangChainInstrumentor

    daphne, key = server
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "lc"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    instrumentor = LangChainInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        prompt = ChatPromptTemplate.from_messages(
            [("system", "You answer in one word."), ("human", "Capital of {country}?")]
        )
        chain = prompt | FakeListChatModel(responses=["Paris"])
        assert chain.invoke({"country": "France"}).content == "Paris"
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
    spans = list(memory.get_finished_spans())
    kinds = {s.attributes.get("openinference.span.kind") for s in spans}
    assert "LLM" in kinds
    assert exporter(daphne, key).export(spans) == SpanExportResult.SUCCESS

    http = Http(daphne.port, key)
    trace_hex = format(spans[0].context.trace_id, "032x")
    _, tasks = http.request("GET", "/api/v1/tasks/?page_size=500")
    (task,) = [
        t for t in tasks["results"] if t["metadata"]["otel"]["trace_id"] == trace_hex
    ]
    assert task["status"] == "completed"
    _, talks = http.request("GET", f"/api/v1/conversations/?task={task['id']}")
    (talk,) = talks["results"]
    _, page = http.request(
        "GET", f"/api/v1/conversations/{talk['id']}/messages/?fields=full"
    )
    assert [(m["role"], m["content"]) for m in page["results"]] == [
        ("system", "You answer in one word."),
        ("user", "Capital of France?"),
        ("assistant", "Paris"),
    ]
    _, events = http.request(
        "GET", f"/api/v1/events/?task={task['id']}&kind=otel.span&page_size=500"
    )
    assert len(events["results"]) == len(spans)
    assert {e["payload"]["type"] for e in events["results"]} >= {"llm", "span"}


def test_the_exporter_configured_by_environment_reaches_the_endpoint(
    server, monkeypatch
):
    """OTEL_EXPORTER_OTLP_ENDPOINT=http://HOST/otlp and the Authorization
    header in OTEL_EXPORTER_OTLP_HEADERS, as the contract tells users."""
    daphne, key = server
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"{daphne.url}/otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer {key}")
    spans = recorded(lambda tracer: tracer.start_span("configured by env").end())
    assert OTLPSpanExporter().export(spans) == SpanExportResult.SUCCESS
    _, tasks = Http(daphne.port, key).request("GET", "/api/v1/tasks/?search=configured")
    assert [t["title"] for t in tasks["results"]] == ["configured by env"]
