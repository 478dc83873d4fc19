"""Building OTLP export requests in tests, as an exporter would send them."""

from __future__ import annotations

import json
import os
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

PROTOBUF = "application/x-protobuf"
BASE_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


def new_trace() -> bytes:
    return os.urandom(16)


def new_span_id() -> bytes:
    return os.urandom(8)


def value(v: Any) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, list | tuple):
        out = AnyValue()
        out.array_value.values.extend(value(x) for x in v)
        return out
    if isinstance(v, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(
            KeyValue(key=k, value=value(x)) for k, x in v.items()
        )
        return out
    return AnyValue(string_value=str(v))


def attrs(mapping: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=value(v)) for k, v in mapping.items()]


def span(
    trace: bytes,
    name: str,
    *,
    span_id: bytes | None = None,
    parent: bytes = b"",
    start_ms: int = 0,
    duration_ms: int = 10,
    error: str | None = None,
    ok: bool = False,
    events: list[tuple[str, dict]] = (),
    **attributes: Any,
) -> Span:
    """A span; attribute names use `__` for dots (gen_ai__agent__name)."""
    out = Span(
        trace_id=trace,
        span_id=span_id or new_span_id(),
        parent_span_id=parent,
        name=name,
        kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=BASE_NS + start_ms * 1_000_000,
        end_time_unix_nano=BASE_NS + (start_ms + duration_ms) * 1_000_000,
    )
    named = {k.replace("__", "."): v for k, v in attributes.items()}
    out.attributes.extend(attrs(named))
    for event_name, event_attrs in events:
        event = out.events.add()
        event.name = event_name
        event.time_unix_nano = out.start_time_unix_nano
        event.attributes.extend(attrs(event_attrs))
    if error is not None:
        out.status.code = Status.STATUS_CODE_ERROR
        out.status.message = error
    elif ok:
        out.status.code = Status.STATUS_CODE_OK
    return out


def agent_span(trace: bytes, agent: str, **kwargs: Any) -> Span:
    """An `invoke_agent` span of agent `agent` (GenAI conventions)."""
    return span(
        trace,
        f"invoke_agent {agent}",
        gen_ai__operation__name="invoke_agent",
        gen_ai__agent__name=agent,
        **kwargs,
    )


def history_calls(trace: bytes, calls: int, **kwargs: Any) -> list[Span]:
    """Model calls of one conversation, each re-sending the history so far,
    as chat instrumentations do: call n sends questions 0..n and answers
    0..n-1, and answers n."""
    history: list[dict] = []
    spans = []
    for n in range(calls):
        history.append({"role": "user", "parts": [text(f"Question {n}?")]})
        answer = {"role": "assistant", "parts": [text(f"Answer {n}.")]}
        spans.append(
            span(
                trace,
                "chat",
                start_ms=n * 10,
                gen_ai__operation__name="chat",
                gen_ai__input__messages=json.dumps(history),
                gen_ai__output__messages=json.dumps([answer]),
                **kwargs,
            )
        )
        history.append(answer)
    return spans


def request(*spans: Span, service: str = "tests") -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    resource_spans = req.resource_spans.add()
    resource_spans.resource.attributes.extend(attrs({"service.name": service}))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "tests"
    scope_spans.spans.extend(spans)
    return req


def to_json(req: ExportTraceServiceRequest) -> bytes:
    """OTLP/JSON: protobuf's JSON mapping with trace and span ids in hex."""
    from google.protobuf import json_format

    data = json_format.MessageToDict(req)
    for resource_spans in data.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for item in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if item.get(key):
                        import base64

                        item[key] = base64.b64decode(item[key]).hex()
    return json.dumps(data).encode()


def text(content: str) -> dict:
    return {"type": "text", "content": content}


def hexid(raw: bytes) -> str:
    return raw.hex()


def three_agent_trace() -> tuple[bytes, list[Span]]:
    """planner delegates to researcher (chat + tool) and to writer (fails)."""
    trace = new_trace()
    root = new_span_id()
    researcher = new_span_id()
    writer = new_span_id()
    spans = [
        span(
            trace,
            "invoke_agent planner",
            span_id=root,
            start_ms=0,
            duration_ms=1000,
            error="writer gave up",
            gen_ai__operation__name="invoke_agent",
            gen_ai__agent__name="planner",
        ),
        span(
            trace,
            "invoke_agent researcher",
            span_id=researcher,
            parent=root,
            start_ms=10,
            duration_ms=400,
            ok=True,
            gen_ai__operation__name="invoke_agent",
            gen_ai__agent__name="researcher",
        ),
        span(
            trace,
            "chat gpt-5",
            parent=researcher,
            start_ms=20,
            duration_ms=250,
            gen_ai__operation__name="chat",
            gen_ai__request__model="gpt-5",
            gen_ai__response__model="gpt-5-2026",
            gen_ai__usage__input_tokens=1200,
            gen_ai__usage__output_tokens=80,
            gen_ai__usage__cache_read__input_tokens=1000,
            gen_ai__input__messages=json.dumps(
                [
                    {"role": "system", "parts": [text("Be brief.")]},
                    {"role": "user", "parts": [text("Find X.")]},
                ]
            ),
            gen_ai__output__messages=json.dumps(
                [
                    {
                        "role": "assistant",
                        "parts": [
                            {"type": "text", "content": "Searching."},
                            {
                                "type": "tool_call",
                                "id": "call_1",
                                "name": "search",
                                "arguments": {"q": "X"},
                            },
                        ],
                        "finish_reason": "tool_call",
                    }
                ]
            ),
        ),
        span(
            trace,
            "execute_tool search",
            parent=researcher,
            start_ms=300,
            duration_ms=50,
            gen_ai__operation__name="execute_tool",
            gen_ai__tool__name="search",
            gen_ai__tool__call__id="call_1",
            gen_ai__tool__call__arguments='{"q": "X"}',
            gen_ai__tool__call__result="X is 42",
        ),
        span(
            trace,
            "invoke_agent writer",
            span_id=writer,
            parent=root,
            start_ms=500,
            duration_ms=400,
            error="out of ink",
            gen_ai__operation__name="invoke_agent",
            gen_ai__agent__name="writer",
        ),
        span(
            trace,
            "execute_tool pen",
            parent=writer,
            start_ms=510,
            duration_ms=30,
            error="pen broke",
            gen_ai__operation__name="execute_tool",
            gen_ai__tool__name="pen",
        ),
    ]
    return trace, spans
