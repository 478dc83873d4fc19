"""Reading spans: what a span is, the values it carries, and the ids they give.

Ids are uuid5 of the project and the (trace id, span id) they come from, so
a re-sent export names the same rows.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from ingest.otlp.parsing import STATUS_ERROR, STATUS_OK, Span

AGENT, LLM, TOOL, OTHER = "agent", "llm", "tool", "span"

GENAI_AGENT_OPS = frozenset({"invoke_agent", "create_agent"})
GENAI_LLM_OPS = frozenset({"chat", "text_completion", "generate_content"})
GENAI_TOOL_OPS = frozenset({"execute_tool"})

EVENT_KIND = "otel.span"
TOOL_ACTION = "tool.invoke"

INT32_MAX = 2**31 - 1
TEXT_IN_DETAILS = 4000
SUMMARY_CHARS = 2000
TITLE_CHARS = 500
NAME_CHARS = 200
# JSON values (tool arguments, attribute values) kept this deep; Python's
# stack and the database's JSON parsers stop not far beyond.
MAX_DEPTH = 64


# Ids ----------------------------------------------------------------------


class Ids:
    """Deterministic ids of one project: uuid5 of a namespace and a path."""

    def __init__(self, project_key: Any) -> None:
        self.namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"swarmsite:otlp:{project_key}")
        self._seen: dict[str, str] = {}

    def of(self, *parts: Any) -> str:
        """str(uuid5(namespace, "part:part...")), without building a UUID."""
        name = ":".join(str(p) for p in parts)
        found = self._seen.get(name)
        if found is None:
            digest = bytearray(
                hashlib.sha1(self.namespace.bytes + name.encode()).digest()[:16]
            )
            digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
            digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
            h = digest.hex()
            found = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
            self._seen[name] = found
        return found

    def task(self, trace_id: str) -> str:
        return self.of("task", trace_id)

    def run(self, span: Span) -> str:
        return self.of("run", span.trace_id, span.span_id)

    def event(self, span: Span) -> str:
        return self.of("event", span.trace_id, span.span_id)

    def audit(self, span: Span) -> str:
        return self.of("audit", span.trace_id, span.span_id)

    def output(self, span: Span, index: int) -> str:
        return self.of("message", span.trace_id, span.span_id, "out", index)

    def agent(self, name: str) -> str:
        return self.of("agent", name)

    def conversation(self, span: Span) -> str:
        key = conversation_key(span)
        if key:
            return self.of("conversation", key)
        return self.of("conversation", "trace", span.trace_id)


# Reading spans ------------------------------------------------------------


def classify(span: Span) -> str:
    """`agent`, `llm`, `tool` or `span`, by GenAI operation or OpenInference kind."""
    attrs = span.attributes
    op = attrs.get("gen_ai.operation.name")
    if op in GENAI_AGENT_OPS:
        return AGENT
    if op in GENAI_LLM_OPS:
        return LLM
    if op in GENAI_TOOL_OPS:
        return TOOL
    kind = attrs.get("openinference.span.kind")
    if isinstance(kind, str):
        kind = kind.upper()
        if kind == "AGENT":
            return AGENT
        if kind == "LLM":
            return LLM
        if kind == "TOOL":
            return TOOL
    return OTHER


def text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.replace("\x00", "")
    return json.dumps(clean(value), sort_keys=True, default=str)


def clean(value: Any, depth: int = 0) -> Any:
    """JSON-safe copy without NUL characters (PostgreSQL refuses them);
    values nested deeper than MAX_DEPTH become "…"."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict | list | tuple) and depth >= MAX_DEPTH:
        return "…"
    if isinstance(value, dict):
        return {clean(str(k)): clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v, depth + 1) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return None
    return value


def short(value: Any, limit: int) -> str:
    value = text(value)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def agent_name(span: Span) -> str:
    """The agent an agent span is about (GenAI, OpenInference, span name)."""
    name = own_agent_name(span)
    if name:
        return name
    name = text(span.name)
    for prefix in ("invoke_agent ", "create_agent "):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    value = span.attributes.get("gen_ai.agent.id")
    if not name.strip() and isinstance(value, str):
        name = text(value)
    return short(name.strip() or "agent", NAME_CHARS)


def own_agent_name(span: Span) -> str:
    """An agent named on the span itself (not an agent span: the caller)."""
    for key in ("gen_ai.agent.name", "agent.name"):
        value = span.attributes.get(key)
        # Without NUL characters first: "\x00" alone names no agent.
        value = text(value).strip() if isinstance(value, str) else ""
        if value:
            return short(value, NAME_CHARS)
    return ""


def conversation_key(span: Span) -> str:
    for key in ("gen_ai.conversation.id", "session.id"):
        value = span.attributes.get(key)
        if isinstance(value, str | int) and str(value).strip():
            return short(str(value).strip(), TITLE_CHARS - 20)
    return ""


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None
    return max(0, min(number, INT32_MAX))


def usage(span: Span) -> dict[str, int]:
    """Prompt (cached included), completion and cached tokens of a model call.

    GenAI: `gen_ai.usage.input_tokens` counts every input token, cached ones
    included; `gen_ai.usage.cache_read.input_tokens` is the cached part.
    OpenInference: `llm.token_count.prompt` is the whole prompt and
    `llm.token_count.prompt_details.cache_read` the cached part. Swarmsite's
    `prompt_tokens` includes `cached_tokens` too, so both map straight; a
    producer whose cached count exceeds its prompt count reported fresh
    tokens only, and the two are added.
    """
    attrs = span.attributes

    def first(*keys: str) -> int | None:
        for key in keys:
            value = _count(attrs.get(key))
            if value is not None:
                return value
        return None

    prompt = first(
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.prompt_tokens",
        "llm.token_count.prompt",
    )
    completion = first(
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.completion_tokens",
        "llm.token_count.completion",
    )
    cached = first(
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_read_input_tokens",
        "llm.token_count.prompt_details.cache_read",
    )
    out: dict[str, int] = {}
    if prompt is not None or cached is not None:
        prompt, cached = prompt or 0, cached or 0
        if cached > prompt:
            prompt = min(prompt + cached, INT32_MAX)
        out["prompt_tokens"] = prompt
        out["cached_tokens"] = cached
    if completion is not None:
        out["completion_tokens"] = completion
    return out


_MICRO = Decimal("0.000001")


def cost(span: Span) -> str | None:
    """USD cost: OpenInference `llm.cost.total`, else prompt + completion."""
    attrs = span.attributes

    def dec(key: str) -> Decimal | None:
        value = attrs.get(key)
        if value is None or isinstance(value, bool):
            return None
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            return None
        return number if number.is_finite() and number >= 0 else None

    total = dec("llm.cost.total")
    if total is None:
        total = dec("gen_ai.usage.cost")
    if total is None:
        parts = [dec("llm.cost.prompt"), dec("llm.cost.completion")]
        if any(p is not None for p in parts):
            total = sum((p for p in parts if p is not None), start=Decimal(0))
    # Checked before rounding too: quantize() fails past 28 digits.
    if total is None or total >= Decimal(10) ** 10:
        return None
    total = total.quantize(_MICRO)
    # Rounding may carry it to 10 digits before the point (9999999999.9999999).
    return str(total) if total < Decimal(10) ** 10 else None


def model(span: Span) -> str:
    attrs = span.attributes
    for key in (
        "gen_ai.response.model",
        "gen_ai.request.model",
        "llm.model_name",
        "llm.response.model_name",
        "llm.request.model_name",
    ):
        value = attrs.get(key)
        if isinstance(value, str) and value:
            return short(value, NAME_CHARS)
    return ""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(ns: int) -> str | None:
    """A span time (nanoseconds since the epoch) as ISO 8601, to the microsecond."""
    if not ns:
        return None
    try:
        moment = _EPOCH + timedelta(microseconds=ns // 1000)
    except OverflowError:
        return None
    return moment.isoformat().replace("+00:00", "Z")


def error_text(span: Span) -> str:
    """Why a span failed: its status message, else its exception event."""
    if span.status_message:
        return text(span.status_message)
    for name, _, attrs in span.events:
        if name == "exception":
            kind = text(attrs.get("exception.type"))
            message = text(attrs.get("exception.message"))
            return f"{kind}: {message}" if kind and message else kind or message
    return text(span.attributes.get("error.type"))


def status_name(span: Span) -> str:
    if span.status_code == STATUS_ERROR:
        return "error"
    return "ok" if span.status_code == STATUS_OK else "unset"


def tool_name(span: Span) -> str:
    attrs = span.attributes
    for key in ("gen_ai.tool.name", "tool.name"):
        value = attrs.get(key)
        if isinstance(value, str) and value:
            return value
    name = span.name
    return name[len("execute_tool ") :] if name.startswith("execute_tool ") else name
