"""Spans to ingest items: the OTLP mapping of docs/otlp.md, as pure functions.

Nothing here reads or writes the database. `map_spans` takes the spans of
one export (and what the caller read: stored agent ids by name, which trace
tasks and conversations exist) and returns the items of
`POST /api/v1/ingest/` that express them, each with the spans it came from.

Every id is a uuid5 of the project and the (trace id, span id) it comes
from, so a re-sent export names the same rows and the ingest path answers
`duplicate`. Relations point at derived ids (a run's task is the trace's
task), so a child span can be written before its parent arrives.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
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

ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "model": "assistant",
    "tool": "tool",
    "function": "tool",
    "ipython": "tool",
}

# Legacy GenAI span events (semantic conventions before gen_ai.input.messages).
_LEGACY_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
_MESSAGE_ATTRIBUTES = (
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
)


# Ids ----------------------------------------------------------------------


class Ids:
    """Deterministic ids of one project: uuid5 of a namespace and a path."""

    def __init__(self, project_key: Any) -> None:
        self.namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"swarmsite:otlp:{project_key}")

    def of(self, *parts: Any) -> str:
        return str(uuid.uuid5(self.namespace, ":".join(str(p) for p in parts)))

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


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.replace("\x00", "")
    return json.dumps(clean(value), sort_keys=True, default=str)


def clean(value: Any) -> Any:
    """JSON-safe copy without NUL characters (PostgreSQL refuses them)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {clean(str(k)): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return None
    return value


def _short(value: Any, limit: int) -> str:
    text = _text(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def agent_name(span: Span) -> str:
    """The agent an agent span is about (GenAI, OpenInference, span name)."""
    attrs = span.attributes
    for key in ("gen_ai.agent.name", "agent.name"):
        value = attrs.get(key)
        if isinstance(value, str) and value.strip():
            return _short(value.strip(), NAME_CHARS)
    name = span.name
    for prefix in ("invoke_agent ", "create_agent "):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    value = attrs.get("gen_ai.agent.id")
    if not name.strip() and isinstance(value, str):
        name = value
    return _short(name.strip() or "agent", NAME_CHARS)


def own_agent_name(span: Span) -> str:
    """An agent named on the span itself (not an agent span: the caller)."""
    for key in ("gen_ai.agent.name", "agent.name"):
        value = span.attributes.get(key)
        if isinstance(value, str) and value.strip():
            return _short(value.strip(), NAME_CHARS)
    return ""


def conversation_key(span: Span) -> str:
    for key in ("gen_ai.conversation.id", "session.id"):
        value = span.attributes.get(key)
        if isinstance(value, str | int) and str(value).strip():
            return _short(str(value).strip(), TITLE_CHARS - 20)
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
    if total is None or total >= Decimal(10) ** 10:
        return None
    return str(total.quantize(_MICRO))


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
            return _short(value, NAME_CHARS)
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
        return _text(span.status_message)
    for name, _, attrs in span.events:
        if name == "exception":
            kind = _text(attrs.get("exception.type"))
            message = _text(attrs.get("exception.message"))
            return f"{kind}: {message}" if kind and message else kind or message
    return _text(span.attributes.get("error.type"))


def status_name(span: Span) -> str:
    if span.status_code == STATUS_ERROR:
        return "error"
    return "ok" if span.status_code == STATUS_OK else "unset"


# Messages -----------------------------------------------------------------


@dataclass
class Msg:
    role: str
    content: str = ""
    tool_calls: list | None = None
    tool_call_id: str = ""
    finish_reason: str = ""


def _role(value: Any) -> str:
    return ROLES.get(str(value or "").lower(), "user")


def _loads(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _arguments(value: Any) -> str:
    if isinstance(value, str):
        return value.replace("\x00", "")
    return json.dumps(clean(value), sort_keys=True, default=str)


def _genai_message(raw: Any, default_role: str) -> Msg | None:
    if not isinstance(raw, dict):
        return None
    msg = Msg(role=_role(raw.get("role") or default_role))
    texts: list[str] = []
    calls: list[dict] = []
    parts = raw.get("parts")
    if not isinstance(parts, list):
        # Also accept {"role", "content"} as older producers send it.
        parts = [{"type": "text", "content": raw.get("content")}]
    for part in parts:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text" and part.get("content") is not None:
            texts.append(_text(part.get("content")))
        elif kind == "tool_call":
            calls.append(
                {
                    "id": _text(part.get("id")),
                    "type": "function",
                    "function": {
                        "name": _text(part.get("name")),
                        "arguments": _arguments(part.get("arguments")),
                    },
                }
            )
        elif kind == "tool_call_response":
            msg.tool_call_id = _short(part.get("id"), 200)
            texts.append(_text(part.get("response", part.get("result"))))
    msg.content = "\n".join(texts)
    msg.tool_calls = calls or None
    msg.finish_reason = _text(raw.get("finish_reason"))
    return msg


def _genai_messages(value: Any, default_role: str) -> list[Msg]:
    data = _loads(value)
    if not isinstance(data, list):
        return []
    return [m for m in (_genai_message(r, default_role) for r in data) if m]


def _system_instructions(value: Any) -> list[Msg]:
    data = _loads(value)
    if isinstance(data, str):
        return [Msg(role="system", content=data)]
    if not isinstance(data, list):
        return []
    texts = [
        _text(p.get("content"))
        for p in data
        if isinstance(p, dict) and p.get("type") == "text"
    ]
    return [Msg(role="system", content="\n".join(texts))] if texts else []


def _indexed(attrs: dict[str, Any], prefix: str) -> dict[int, dict[str, Any]]:
    """`prefix.N.rest` attributes grouped by N, keyed by rest."""
    groups: dict[int, dict[str, Any]] = {}
    size = len(prefix)
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        index, _, rest = key[size:].partition(".")
        if index.isdigit():
            groups.setdefault(int(index), {})[rest] = value
    return groups


def _openinference_messages(attrs: dict[str, Any], prefix: str) -> list[Msg]:
    out: list[Msg] = []
    groups = _indexed(attrs, prefix)
    for index in sorted(groups):
        fields = groups[index]
        msg = Msg(role=_role(fields.get("message.role")))
        content = fields.get("message.content")
        if content is None:
            parts = _indexed(fields, "message.contents.")
            content = "\n".join(
                _text(parts[i].get("message_content.text"))
                for i in sorted(parts)
                if parts[i].get("message_content.text") is not None
            )
        msg.content = _text(content)
        calls = _indexed(fields, "message.tool_calls.")
        msg.tool_calls = [
            {
                "id": _text(calls[i].get("tool_call.id")),
                "type": "function",
                "function": {
                    "name": _text(calls[i].get("tool_call.function.name")),
                    "arguments": _arguments(
                        calls[i].get("tool_call.function.arguments", "")
                    ),
                },
            }
            for i in sorted(calls)
        ] or None
        msg.tool_call_id = _short(fields.get("message.tool_call_id"), 200)
        out.append(msg)
    return out


def _legacy_event_messages(span: Span) -> tuple[list[Msg], list[Msg]]:
    inputs: list[Msg] = []
    outputs: list[Msg] = []
    for name, _, attrs in span.events:
        role = _LEGACY_EVENTS.get(name)
        if role is not None:
            body = _loads(attrs.get("content"))
            content = body if isinstance(body, str) else attrs.get("content")
            inputs.append(
                Msg(
                    role=role,
                    content=_text(content),
                    tool_call_id=_short(attrs.get("id"), 200),
                )
            )
        elif name == "gen_ai.choice":
            body = _loads(attrs.get("message"))
            if isinstance(body, dict):
                content = body.get("content")
            else:
                content = attrs.get("message", attrs.get("content"))
            outputs.append(
                Msg(
                    role="assistant",
                    content=_text(content),
                    finish_reason=_text(attrs.get("finish_reason")),
                )
            )
    return inputs, outputs


def messages(span: Span) -> tuple[list[Msg], list[Msg]]:
    """The input and output messages a model-call span captured, if any."""
    attrs = span.attributes
    found = {k: attrs[k] for k in _MESSAGE_ATTRIBUTES if k in attrs}
    for _, _, event_attrs in span.events:
        for key in _MESSAGE_ATTRIBUTES:
            if key in event_attrs and key not in found:
                found[key] = event_attrs[key]
    if found:
        inputs = _system_instructions(found.get("gen_ai.system_instructions"))
        inputs += _genai_messages(found.get("gen_ai.input.messages"), "user")
        outputs = _genai_messages(found.get("gen_ai.output.messages"), "assistant")
        return inputs, outputs
    inputs = _openinference_messages(attrs, "llm.input_messages.")
    outputs = _openinference_messages(attrs, "llm.output_messages.")
    if inputs or outputs:
        return inputs, outputs
    return _legacy_event_messages(span)


# The plan -----------------------------------------------------------------


@dataclass
class Plan:
    """Ingest items in write order, and for each the spans it expresses."""

    items: list[dict[str, Any]] = field(default_factory=list)
    owners: list[tuple[int, ...]] = field(default_factory=list)
    # Agent names this plan registers, with the id it assumed for each.
    agent_ids: dict[str, str] = field(default_factory=dict)

    def add(
        self,
        type_: str,
        data: dict[str, Any],
        owners: Iterable[int],
    ) -> None:
        self.items.append({"type": type_, "data": data})
        self.owners.append(tuple(owners))


def agent_names(spans: Iterable[Span]) -> set[str]:
    """Every agent name the mapping of `spans` refers to."""
    names: set[str] = set()
    for span in spans:
        kind = classify(span)
        if kind == AGENT:
            names.add(agent_name(span))
        elif kind == LLM:
            own = own_agent_name(span)
            if own:
                names.add(own)
    return names


def _nearest_agents(spans: list[Span], kinds: list[str]) -> list[int | None]:
    """For each span, the index of its nearest ancestor agent span in `spans`.

    Linear in the number of spans, however deep the tree; a parent cycle
    (a malformed export) ends the walk.
    """
    by_id = {(s.trace_id, s.span_id): i for i, s in enumerate(spans)}
    parent_of = [by_id.get((s.trace_id, s.parent_span_id)) for s in spans]
    out: list[int | None] = [None] * len(spans)
    done = [False] * len(spans)
    for start in range(len(spans)):
        path: list[int] = []
        on_path: set[int] = set()
        at: int | None = start
        while at is not None and not done[at] and at not in on_path:
            on_path.add(at)
            path.append(at)
            at = parent_of[at]
        for k in reversed(path):
            parent = parent_of[k]
            if parent is None or not done[parent]:  # a root, or a cycle
                out[k] = None
            else:
                out[k] = parent if kinds[parent] == AGENT else out[parent]
            done[k] = True
    return out


def _input_id(ids: Ids, conversation: str, position: int, msg: Msg) -> str:
    digest = hashlib.sha256(
        json.dumps(
            [msg.role, msg.content, msg.tool_calls, msg.tool_call_id],
            sort_keys=True,
            ensure_ascii=False,
        ).encode()
    ).hexdigest()
    return ids.of("input", conversation, position, digest)


def map_spans(
    spans: list[Span],
    *,
    ids: Ids,
    agents: dict[str, str],
    existing: set[str] = frozenset(),
    stored_titles: dict[str, str] | None = None,
) -> Plan:
    """The ingest items of one export's spans (`docs/otlp.md`, rule by rule).

    `agents` maps names of stored agents to their ids; other names get a
    derived id and an `agent` item. `existing` holds the ids of trace tasks
    and conversations already stored, whose placeholders are left out.
    `stored_titles` (task id -> stored title) tells whether the root still
    has to rename its task.
    Spans are taken in start order, so messages of one export get their
    `seq` in the order the calls were made.
    """
    order = sorted(range(len(spans)), key=lambda i: (spans[i].start_ns, i))
    kinds = [classify(s) for s in spans]
    nearest = _nearest_agents(spans, kinds)
    plan = Plan()
    agent_ids = dict(agents)
    by_trace: dict[str, list[int]] = {}
    for i in order:
        by_trace.setdefault(spans[i].trace_id, []).append(i)

    # Agents, parents first; the parent is the agent of the nearest ancestor
    # agent span: who delegated to whom.
    def register(i: int) -> None:
        # Up to the first agent already known, then registered top down.
        chain: list[int] = []
        names: set[str] = set()
        at: int | None = i
        while at is not None:
            name = agent_name(spans[at])
            if name in agent_ids or name in names:
                break
            names.add(name)
            chain.append(at)
            at = nearest[at]
        for k in reversed(chain):
            name = agent_name(spans[k])
            data: dict[str, Any] = {"name": name, "id": ids.agent(name)}
            parent = nearest[k]
            if parent is not None:
                parent_id = agent_ids.get(agent_name(spans[parent]))
                if parent_id and parent_id != data["id"]:
                    data["parent"] = parent_id
            if model(spans[k]):
                data["model"] = model(spans[k])
            description = spans[k].attributes.get("gen_ai.agent.description")
            if isinstance(description, str) and description:
                data["metadata"] = {"description": _short(description, 1000)}
            agent_ids[name] = plan.agent_ids[name] = data["id"]
            plan.add("agent", data, [k])

    for i in order:
        if kinds[i] == AGENT:
            register(i)
    for i in order:
        own = own_agent_name(spans[i]) if kinds[i] == LLM else ""
        if own and own not in agent_ids:
            data = {"name": own, "id": ids.agent(own)}
            agent_ids[own] = plan.agent_ids[own] = data["id"]
            plan.add("agent", data, [i])

    # A trace is a task.
    tasks = {trace: ids.task(trace) for trace in by_trace}
    # The earliest root span of each trace names and ends its task.
    roots = {spans[i].trace_id: i for i in reversed(order) if spans[i].is_root}
    titles = {
        trace: _short(spans[root].name or f"Trace {trace}", TITLE_CHARS)
        for trace, root in roots.items()
    }
    for trace, members in by_trace.items():
        if tasks[trace] not in existing:
            plan.add(
                "task",
                {
                    "id": tasks[trace],
                    "title": titles.get(trace, f"Trace {trace}"),
                    "metadata": {"otel": {"trace_id": trace}},
                },
                members,
            )
    for trace, members in by_trace.items():
        root = roots.get(trace)
        if (
            root is not None
            and tasks[trace] in existing
            and (stored_titles or {}).get(tasks[trace]) != titles[trace]
        ):
            # Children created the task first, titled by its trace.
            plan.add(
                "task_update",
                {
                    "task": tasks[trace],
                    "id": ids.of("title", trace),
                    "title": titles[trace],
                },
                [root],
            )
        if tasks[trace] not in existing:
            # A stored trace task went running in the batch that created it.
            running = {"task": tasks[trace], "status": "running"}
            plan.add("transition", running | {"id": ids.of("running", trace)}, members)

    # Conversations: one per gen_ai.conversation.id / session.id, else one
    # per trace (then it belongs to the trace's task).
    talks: dict[str, list[int]] = {}
    for i in order:
        if kinds[i] == LLM:
            talks.setdefault(ids.conversation(spans[i]), []).append(i)
    for conversation, members in talks.items():
        if conversation in existing:
            continue
        span = spans[members[0]]
        key = conversation_key(span)
        if key:
            data = {
                "id": conversation,
                "title": key,
                "metadata": {"otel": {"conversation_id": key}},
            }
        else:
            data = {
                "id": conversation,
                "title": f"Trace {span.trace_id}",
                "task": tasks[span.trace_id],
                "metadata": {"otel": {"trace_id": span.trace_id}},
            }
        plan.add("conversation", data, members)

    # Agent spans: a run of the trace's task, in its final state.
    for i in order:
        if kinds[i] != AGENT or spans[i].attributes.get("gen_ai.operation.name") == (
            "create_agent"
        ):
            continue
        span = spans[i]
        failed = span.status_code == STATUS_ERROR
        otel: dict[str, Any] = {
            "trace_id": span.trace_id,
            "span_id": span.span_id,
            "end_time": iso(span.end_ns),
            "duration_ms": span.duration_ms,
        }
        if span.parent_span_id:
            otel["parent_span_id"] = span.parent_span_id
        if nearest[i] is not None:
            otel["delegated_by"] = agent_name(spans[nearest[i]])
        spent = usage(span)
        if spent:
            otel["usage"] = spent
        data = {
            "id": ids.run(span),
            "task": tasks[span.trace_id],
            "agent": agent_ids[agent_name(span)],
            "status": "failed" if failed else "completed",
            "metadata": {"otel": otel},
        }
        started = iso(span.start_ns)
        if started:
            data["started_at"] = started
        if model(span):
            data["model"] = model(span)
        if failed:
            data["error"] = error_text(span) or "The span ended with status ERROR."
        summary = _agent_output(span)
        if summary:
            data["output_summary"] = _short(summary, SUMMARY_CHARS)
        plan.add("run", data, [i])

    # Model calls: messages, one conversation after the other so that each
    # conversation's messages are appended with one statement.
    for members in talks.values():
        for i in members:
            _map_llm(plan, spans[i], i, ids, agent_ids, nearest, spans)

    # Tool calls: tool.invoke audit records.
    for i in order:
        if kinds[i] == TOOL:
            _map_tool(plan, spans[i], i, ids)

    # Every span: an otel.span event.
    for i in order:
        span = spans[i]
        data = {
            "id": ids.event(span),
            "kind": EVENT_KIND,
            "task": tasks[span.trace_id],
            "payload": _event_payload(span, kinds[i]),
        }
        if kinds[i] == LLM:
            data["conversation"] = ids.conversation(span)
        started = iso(span.start_ns)
        if started:
            data["occurred_at"] = started
        plan.add("event", data, [i])

    # The root span ends the task: failed when the root failed.
    for trace, root in roots.items():
        span = spans[root]
        failed = span.status_code == STATUS_ERROR
        data = {"task": tasks[trace], "status": "failed" if failed else "completed"}
        if failed:
            data["error"] = error_text(span) or "The root span ended with ERROR."
        plan.add("transition", data | {"id": ids.of("finished", trace)}, [root])
    return plan


def _agent_output(span: Span) -> str:
    attrs = span.attributes
    outputs = _genai_messages(attrs.get("gen_ai.output.messages"), "assistant")
    if outputs:
        return "\n".join(m.content for m in outputs if m.content)
    value = attrs.get("output.value")
    return _text(value) if value is not None else ""


def _map_llm(
    plan: Plan,
    span: Span,
    i: int,
    ids: Ids,
    agent_ids: dict[str, str],
    nearest: list[int | None],
    spans: list[Span],
) -> None:
    conversation = ids.conversation(span)
    inputs, outputs = messages(span)
    # Inputs are addressed by content and position in the conversation, so
    # the history each call re-sends is stored once. Assistant messages are
    # stored from the call that produced them, not again as later input.
    for position, msg in enumerate(inputs):
        if msg.role == "assistant":
            continue
        data: dict[str, Any] = {
            "conversation": conversation,
            "id": _input_id(ids, conversation, position, msg),
            "role": msg.role,
            "content": msg.content,
        }
        if msg.tool_calls:
            data["tool_calls"] = msg.tool_calls
        if msg.tool_call_id:
            data["tool_call_id"] = msg.tool_call_id
        plan.add("message", data, [i])
    if not outputs:
        # The call still happened: one assistant message carries its usage.
        outputs = [Msg(role="assistant")]
    sender = ""
    own = own_agent_name(span)
    if own:
        sender = agent_ids[own]
    elif nearest[i] is not None:
        sender = agent_ids[agent_name(spans[nearest[i]])]
    spent = usage(span)
    price = cost(span)
    for index, msg in enumerate(outputs):
        otel = {"trace_id": span.trace_id, "span_id": span.span_id}
        if msg.finish_reason:
            otel["finish_reason"] = msg.finish_reason
        if span.status_code == STATUS_ERROR:
            otel["error"] = error_text(span)
        data = {
            "conversation": conversation,
            "id": ids.output(span, index),
            "role": msg.role if msg.role != "user" else "assistant",
            "content": msg.content,
            "metadata": {"otel": otel},
        }
        if msg.tool_calls:
            data["tool_calls"] = msg.tool_calls
        if msg.tool_call_id:
            data["tool_call_id"] = msg.tool_call_id
        if model(span):
            data["model"] = model(span)
        if sender:
            data["sender"] = sender
        if index == 0:
            data.update(spent)
            if price is not None:
                data["cost"] = price
            if span.duration_ms is not None:
                data["latency_ms"] = span.duration_ms
        plan.add("message", data, [i])


def tool_name(span: Span) -> str:
    attrs = span.attributes
    for key in ("gen_ai.tool.name", "tool.name"):
        value = attrs.get(key)
        if isinstance(value, str) and value:
            return value
    name = span.name
    return name[len("execute_tool ") :] if name.startswith("execute_tool ") else name


def _map_tool(plan: Plan, span: Span, i: int, ids: Ids) -> None:
    attrs = span.attributes
    failed = span.status_code == STATUS_ERROR
    details: dict[str, Any] = {
        "otel": {
            "trace_id": span.trace_id,
            "span_id": span.span_id,
            **({"parent_span_id": span.parent_span_id} if span.parent_span_id else {}),
        }
    }
    call_id = attrs.get("gen_ai.tool.call.id")
    if call_id:
        details["tool_call_id"] = _short(call_id, 200)
    arguments = attrs.get("gen_ai.tool.call.arguments", attrs.get("input.value"))
    if arguments is not None:
        details["arguments"] = _short(arguments, TEXT_IN_DETAILS)
    result = attrs.get("gen_ai.tool.call.result", attrs.get("output.value"))
    if result is not None:
        details["result"] = _short(result, TEXT_IN_DETAILS)
    data: dict[str, Any] = {
        "id": ids.audit(span),
        "action": TOOL_ACTION,
        "target": _short(tool_name(span), TITLE_CHARS),
        "success": not failed,
        "details": details,
    }
    if span.duration_ms is not None:
        data["duration_ms"] = span.duration_ms
    if failed:
        data["error"] = error_text(span) or "The span ended with status ERROR."
    plan.add("audit", data, [i])


def _event_payload(span: Span, kind: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "name": _short(span.name, TITLE_CHARS),
        "type": kind,
        "status": status_name(span),
        "start": iso(span.start_ns),
        "end": iso(span.end_ns),
        "duration_ms": span.duration_ms,
    }
    if span.parent_span_id:
        payload["parent_span_id"] = span.parent_span_id
    attrs = span.attributes
    operation = attrs.get("gen_ai.operation.name") or attrs.get(
        "openinference.span.kind"
    )
    if isinstance(operation, str) and operation:
        payload["operation"] = _short(operation, 100)
    service = span.resource.get("service.name")
    if isinstance(service, str) and service:
        payload["service"] = _short(service, NAME_CHARS)
    if span.status_code == STATUS_ERROR:
        payload["error"] = _short(error_text(span), SUMMARY_CHARS)
    if kind == AGENT:
        payload["agent"] = agent_name(span)
    elif kind == LLM:
        if model(span):
            payload["model"] = model(span)
        spent = usage(span)
        if spent:
            payload["usage"] = spent
    elif kind == TOOL:
        payload["tool"] = _short(tool_name(span), TITLE_CHARS)
    return payload
