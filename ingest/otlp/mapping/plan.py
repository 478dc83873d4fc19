"""The plan: the ingest items of one export's spans, rule by rule."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ingest.otlp.mapping.chat import Msg, genai_messages, messages
from ingest.otlp.mapping.spans import (
    AGENT,
    EVENT_KIND,
    LLM,
    NAME_CHARS,
    SUMMARY_CHARS,
    TEXT_IN_DETAILS,
    TITLE_CHARS,
    TOOL,
    TOOL_ACTION,
    Ids,
    agent_name,
    classify,
    conversation_key,
    cost,
    error_text,
    iso,
    model,
    own_agent_name,
    short,
    status_name,
    text,
    tool_name,
    usage,
)
from ingest.otlp.parsing import STATUS_ERROR, Span


@dataclass
class Plan:
    """Ingest items in write order, and for each the spans it expresses."""

    items: list[dict[str, Any]] = field(default_factory=list)
    owners: list[tuple[int, ...]] = field(default_factory=list)
    # Agent names this plan registers, with the id it assumed for each.
    agent_ids: dict[str, str] = field(default_factory=dict)
    # (type, id) -> index of items planned with `once`.
    planned: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(
        self,
        type_: str,
        data: dict[str, Any],
        owners: Iterable[int],
        *,
        once: bool = False,
    ) -> None:
        """`once`: an item whose id derives from its whole body; planned
        again, it is not repeated, its spans join the first one's owners."""
        if once:
            at = self.planned.setdefault((type_, data["id"]), len(self.items))
            if at < len(self.items):
                self.owners[at] = (*self.owners[at], *owners)
                return
        self.items.append({"type": type_, "data": data})
        self.owners.append(tuple(owners))


# Messages one model call writes: the last MAX_INPUTS of its input (the
# history it re-sends is mostly stored already) and its first MAX_OUTPUTS
# outputs. A later export gives at most MAX_OUTPUTS of a stored call's
# messages a sender: clients can write `otel.span` events too, so what one
# says is bounded.
MAX_INPUTS = 1000
MAX_OUTPUTS = 100


@dataclass(frozen=True)
class Stored:
    """A span an earlier export wrote, as its `otel.span` event keeps it:
    enough to find the agents above the spans of a later export, and what
    its rows lacked when written.

    `agent`: an agent span's agent, or the sender a model call's messages
    were written with. `delegated_by`: the delegating agent its run was
    written with. `outputs`: how many assistant messages a model call wrote.
    """

    trace_id: str
    span_id: str
    parent_span_id: str
    kind: str
    agent: str = ""
    delegated_by: str = ""
    outputs: int = 0
    operation: str = ""

    # The payload keys it is read from, in from_keys' order.
    KEYS = (
        "trace_id",
        "span_id",
        "parent_span_id",
        "type",
        "agent",
        "delegated_by",
        "outputs",
        "operation",
    )

    @classmethod
    def from_keys(cls, values: Iterable[Any]) -> Stored | None:
        """The span of an `otel.span` payload's KEYS, read as text."""
        payload = dict(zip(cls.KEYS, values, strict=True))
        outputs = payload["outputs"]
        if isinstance(outputs, str) and outputs.isascii() and outputs.isdigit():
            payload["outputs"] = int(outputs)
        return cls.from_payload(payload)

    @classmethod
    def from_payload(cls, payload: Any) -> Stored | None:
        """The span an `otel.span` event's payload describes, if it names one."""
        if not isinstance(payload, dict):
            return None
        trace_id, span_id = payload.get("trace_id"), payload.get("span_id")
        if not isinstance(trace_id, str) or not isinstance(span_id, str):
            return None

        def text(key: str) -> str:
            value = payload.get(key)
            return value if isinstance(value, str) else ""

        outputs = payload.get("outputs")
        return cls(
            trace_id,
            span_id,
            text("parent_span_id"),
            text("type"),
            text("agent"),
            text("delegated_by"),
            min(outputs, MAX_OUTPUTS) if type(outputs) is int and outputs > 0 else 0,
            text("operation"),
        )


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


def _parents(spans: list[Span | Stored]) -> list[int | None]:
    """For each span, the index of its parent span in `spans`."""
    by_id = {(s.trace_id, s.span_id): i for i, s in enumerate(spans)}
    return [by_id.get((s.trace_id, s.parent_span_id)) for s in spans]


def _nearest_agents(kinds: list[str], parent_of: list[int | None]) -> list[int | None]:
    """For each span (its kind, its parent's index), the index of its nearest
    ancestor agent span.

    Linear in the number of spans, however deep the tree; a parent cycle
    (a malformed export) ends the walk.
    """
    out: list[int | None] = [None] * len(kinds)
    done = [False] * len(kinds)
    for start in range(len(kinds)):
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
    stored: Iterable[Stored] = (),
    orphans: Iterable[str] = (),
) -> Plan:
    """The ingest items of one export's spans (`docs/otlp.md`, rule by rule).

    `agents` maps names of stored agents to their ids; other names get a
    derived id and an `agent` item. `existing` holds the ids of trace tasks
    and conversations already stored, whose placeholders are left out.
    `stored_titles` (task id -> stored title) tells whether the root still
    has to rename its task.
    `stored` are the spans of these traces earlier exports wrote: agents
    above this export's spans are found among them too. `orphans` names
    stored agents without a parent: one gets the agent of its nearest
    ancestor agent span once that span is known (`agent_update`).
    Spans are taken in start order, so messages of one export get their
    `seq` in the order the calls were made.
    """
    order = sorted(range(len(spans)), key=lambda i: (spans[i].start_ns, i))
    kinds = [classify(s) for s in spans]
    n = len(spans)
    fresh = {(s.trace_id, s.span_id) for s in spans}
    stored = list(stored)
    known = [s for s in stored if (s.trace_id, s.span_id) not in fresh]
    # This export's spans that an earlier export wrote too (a re-grouping).
    again = {
        (s.trace_id, s.span_id): s for s in stored if (s.trace_id, s.span_id) in fresh
    }
    parent_of = _parents([*spans, *known])
    nearest = _nearest_agents([*kinds, *(s.kind for s in known)], parent_of)

    def linked_now(k: int) -> bool:
        """Whether stored span `k` reaches its nearest agent span through a
        span of this export: a link no earlier export could see."""
        at = parent_of[k]
        while at is not None:
            if at < n:
                return True
            if at == nearest[k]:
                return False
            at = parent_of[at]
        return False

    def name_of(k: int) -> str:
        """The agent of agent span `k`, of this export or stored."""
        return agent_name(spans[k]) if k < n else known[k - n].agent

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
        while at is not None and at < n:
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
                parent_id = agent_ids.get(name_of(parent))
                if parent_id and parent_id != data["id"]:
                    data["parent"] = parent_id
            if model(spans[k]):
                data["model"] = model(spans[k])
            description = spans[k].attributes.get("gen_ai.agent.description")
            if isinstance(description, str) and description:
                data["metadata"] = {"description": short(description, 1000)}
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

    # A stored agent without a parent gets the one its spans now show: the
    # delegating span came in a later export than the agent's first span.
    # The first known parent stays; one that would make a cycle is refused
    # by the service, which is no refusal of a span (no owner).
    waiting = set(orphans)
    for k in [*(i for i in order if kinds[i] == AGENT), *range(n, n + len(known))]:
        if k >= n and known[k - n].kind != AGENT:
            continue
        name = name_of(k)
        if name not in waiting or nearest[k] is None:
            continue
        parent_id = agent_ids.get(name_of(nearest[k]))
        if parent_id and name in agent_ids and parent_id != agent_ids[name]:
            fill = {"agent": agent_ids[name], "parent": parent_id}
            plan.add("agent_update", fill, [])
            waiting.discard(name)

    # A trace is a task.
    tasks = {trace: ids.task(trace) for trace in by_trace}
    # The earliest root span of each trace names and ends its task.
    roots = {spans[i].trace_id: i for i in reversed(order) if spans[i].is_root}
    titles = {
        trace: short(text(spans[root].name).strip() or f"Trace {trace}", TITLE_CHARS)
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
    delegations: dict[int, str] = {}
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
            otel["delegated_by"] = name_of(nearest[i])
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
            data["output_summary"] = short(summary, SUMMARY_CHARS)
        plan.add("run", data, [i])
        delegations[i] = otel.get("delegated_by", "")

    # Runs stored without `delegated_by` (written before their delegating
    # span) get it; no span owns such a fill (docs/otlp.md, order).
    for i in order:
        before = again.get((spans[i].trace_id, spans[i].span_id))
        if (
            delegations.get(i)
            and before is not None
            and before.kind == AGENT
            and not before.delegated_by
        ):
            _fill_delegation(plan, ids, spans[i], delegations[i])
    for k, span in enumerate(known, start=n):
        if (
            span.kind == AGENT
            and span.operation != "create_agent"
            and not span.delegated_by
            and nearest[k] is not None
            and linked_now(k)
        ):
            _fill_delegation(plan, ids, span, name_of(nearest[k]))

    # Model calls: messages, one conversation after the other so that each
    # conversation's messages are appended with one statement.
    senders: dict[int, tuple[str, int]] = {}
    for members in talks.values():
        for i in members:
            above = None if nearest[i] is None else name_of(nearest[i])
            senders[i] = _map_llm(plan, spans[i], i, ids, agent_ids, above)

    # Messages stored without a sender (written before the span of their
    # agent) get it; a sender once set stays (the service's rule).
    for i in order:
        before = again.get((spans[i].trace_id, spans[i].span_id))
        name, count = senders.get(i, ("", 0))
        if name and before is not None and before.kind == LLM and not before.agent:
            _fill_senders(plan, ids, spans[i], count, agent_ids[name])
    for k, span in enumerate(known, start=n):
        if (
            span.kind == LLM
            and not span.agent
            and span.outputs
            and nearest[k] is not None
            and linked_now(k)
        ):
            sender = agent_ids.get(name_of(nearest[k]))
            if sender:
                _fill_senders(plan, ids, span, span.outputs, sender)

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
            "payload": _event_payload(
                span, kinds[i], delegations.get(i, ""), *senders.get(i, ("", 0))
            ),
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
    outputs = genai_messages(attrs.get("gen_ai.output.messages"), "assistant")
    if outputs:
        return "\n".join(m.content for m in outputs if m.content)
    value = attrs.get("output.value")
    return text(value) if value is not None else ""


def _map_llm(
    plan: Plan,
    span: Span,
    i: int,
    ids: Ids,
    agent_ids: dict[str, str],
    above: str | None,
) -> tuple[str, int]:
    """`above`: the agent of the nearest ancestor agent span, if known.

    Returns the name of the sender the call's messages got ("" for none)
    and how many assistant messages it wrote.
    """
    conversation = ids.conversation(span)
    inputs, outputs = messages(span)
    outputs = outputs[:MAX_OUTPUTS]
    first = len(inputs) - MAX_INPUTS
    # Inputs are addressed by content and position in the conversation, so
    # the history each call re-sends is stored once. Assistant messages are
    # stored from the call that produced them, not again as later input.
    for position, msg in enumerate(inputs):
        if msg.role == "assistant" or position < first:
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
        # Once per export: a repeated id would make ingest apply the whole
        # segment again one message at a time.
        plan.add("message", data, [i], once=True)
    if not outputs:
        # The call still happened: one assistant message carries its usage.
        outputs = [Msg(role="assistant")]
    sender, name = "", ""
    own = own_agent_name(span)
    if own:
        sender, name = agent_ids[own], own
    elif above is not None and agent_ids.get(above):
        sender, name = agent_ids[above], above
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
    return name, len(outputs)


def _fill_delegation(plan: Plan, ids: Ids, span: Span | Stored, by: str) -> None:
    """The delegating agent of a run stored without one (no span owns it)."""
    fill = {"run": ids.run(span), "metadata": {"otel": {"delegated_by": by}}}
    plan.add("run_metadata_fill", fill, [])


def _fill_senders(
    plan: Plan, ids: Ids, span: Span | Stored, count: int, sender: str
) -> None:
    """The sender of a model call's messages stored without one."""
    for index in range(count):
        fill = {"message": ids.output(span, index), "sender": sender}
        plan.add("message_sender_fill", fill, [])


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
        details["tool_call_id"] = short(call_id, 200)
    arguments = attrs.get("gen_ai.tool.call.arguments", attrs.get("input.value"))
    if arguments is not None:
        details["arguments"] = short(arguments, TEXT_IN_DETAILS)
    result = attrs.get("gen_ai.tool.call.result", attrs.get("output.value"))
    if result is not None:
        details["result"] = short(result, TEXT_IN_DETAILS)
    data: dict[str, Any] = {
        "id": ids.audit(span),
        "action": TOOL_ACTION,
        "target": short(tool_name(span), TITLE_CHARS),
        "success": not failed,
        "details": details,
    }
    if span.duration_ms is not None:
        data["duration_ms"] = span.duration_ms
    if failed:
        data["error"] = error_text(span) or "The span ended with status ERROR."
    plan.add("audit", data, [i])


def _event_payload(
    span: Span, kind: str, delegated_by: str = "", sender: str = "", outputs: int = 0
) -> dict[str, Any]:
    """What an `otel.span` event keeps of a span, and what its rows got:
    a run's `delegated_by`, a model call's sender (`agent`) and number of
    assistant messages (`outputs`), so a later export knows what they lack."""
    payload: dict[str, Any] = {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "name": short(span.name, TITLE_CHARS),
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
        payload["operation"] = short(operation, 100)
    service = span.resource.get("service.name")
    if isinstance(service, str) and service:
        payload["service"] = short(service, NAME_CHARS)
    if span.status_code == STATUS_ERROR:
        payload["error"] = short(error_text(span), SUMMARY_CHARS)
    if kind == AGENT:
        payload["agent"] = agent_name(span)
        if delegated_by:
            payload["delegated_by"] = delegated_by
    elif kind == LLM:
        if sender:
            payload["agent"] = sender
        if outputs:
            payload["outputs"] = outputs
        if model(span):
            payload["model"] = model(span)
        spent = usage(span)
        if spent:
            payload["usage"] = spent
    elif kind == TOOL:
        payload["tool"] = short(tool_name(span), TITLE_CHARS)
    return payload
