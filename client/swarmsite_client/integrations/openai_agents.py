"""An OpenAI Agents SDK tracing processor that records into Swarmsite.

    from agents import Agent, Runner, add_trace_processor
    from swarmsite_client import Recorder
    from swarmsite_client.integrations.openai_agents import SwarmsiteTracingProcessor

    add_trace_processor(SwarmsiteTracingProcessor(Recorder(outbox="swarm.outbox")))
    Runner.run_sync(Agent(name="helper", instructions="Be brief."), "Hello")

A trace becomes a task (or runs under the `task` given) and a conversation
(one per `group_id` when the trace has one); agent spans become agents
(parent: the agent that handed off to it, or the agent span it runs
inside) and runs; generation and response spans become messages with model,
tokens and latency; function spans `tool.invoke` audit records. Ids derive
from the SDK's trace and span ids. The processor only appends to the
Recorder's outbox: the agent's loop never waits for the network. Importing
this module imports `agents`.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agents.tracing import TracingProcessor
from agents.tracing.span_data import (
    AgentSpanData,
    FunctionSpanData,
    GenerationSpanData,
    HandoffSpanData,
    ResponseSpanData,
)

from swarmsite_client.integrations._common import (
    DETAIL_CHARS,
    SUMMARY_CHARS,
    clip,
    derived,
    input_message_id,
    role,
    text,
)

log = logging.getLogger("swarmsite_client.integrations.openai_agents")


@dataclass
class _Trace:
    task: str
    conversation: str
    owns_task: bool
    positions: int = 0
    failed: str = ""


@dataclass
class _Span:
    trace_id: str
    parent_id: str | None
    agent: str | None = None
    # An agent span: why its last model call failed ("" once one succeeds).
    failed: str = ""


# Ended traces remembered for spans that end after them (a run awaited
# after its `with trace()` block): they are recorded under the same task.
ENDED_TRACES = 1000


class SwarmsiteTracingProcessor(TracingProcessor):
    """Records the SDK's traces and spans through a Recorder.

    - `task`: an existing task's id to record every trace's runs under,
      instead of a task per trace;
    - `conversation`: an existing conversation's id for every message.
    """

    def __init__(
        self, recorder: Any, *, task: Any = None, conversation: Any = None
    ) -> None:
        self.recorder = recorder
        self.task = str(task) if task else None
        self.conversation = str(conversation) if conversation else None
        self._lock = threading.Lock()
        self._traces: dict[str, _Trace] = {}
        self._spans: dict[str, _Span] = {}
        self._handoffs: dict[tuple[str, str], str] = {}
        self._agents: dict[str, str] = {}
        self._ended: OrderedDict[str, _Trace] = OrderedDict()

    def _safely(self, what: str, action, *args: Any) -> None:
        try:
            action(*args)
        except Exception:  # never break the agent's run
            log.exception("Swarmsite: recording %s failed", what)

    # -- traces --

    def on_trace_start(self, trace: Any) -> None:
        self._safely("a trace start", self._trace, trace.trace_id, trace)

    def _trace(self, trace_id: str, trace: Any = None) -> _Trace:
        with self._lock:
            known = self._traces.get(trace_id) or self._ended.get(trace_id)
        if known is not None:
            return known
        recorder = self.recorder
        name = clip(getattr(trace, "name", "") or "Agent workflow", 500)
        group = getattr(trace, "group_id", None)
        if self.task:
            task, owns = self.task, False
        else:
            task, owns = derived("agents-task", trace_id), True
            recorder.task(
                name,
                id=task,
                metadata={"openai_agents": {"trace_id": trace_id, "group_id": group}},
            )
            recorder.transition(task, "running", id=derived(trace_id, "running"))
        if self.conversation:
            conversation = self.conversation
        elif group:
            conversation = derived("agents-conversation", group)
            recorder.conversation(id=conversation, title=clip(group, 500))
        else:
            conversation = derived("agents-conversation", trace_id)
            recorder.conversation(id=conversation, task=task, title=name)
        state = _Trace(task=task, conversation=conversation, owns_task=owns)
        with self._lock:
            return self._traces.setdefault(trace_id, state)

    def on_trace_end(self, trace: Any) -> None:
        self._safely("a trace end", self._trace_end, trace.trace_id)

    def _trace_end(self, trace_id: str) -> None:
        with self._lock:
            state = self._traces.pop(trace_id, None)
            if state is not None:
                self._ended[trace_id] = state
                while len(self._ended) > ENDED_TRACES:
                    self._ended.popitem(last=False)
            for span_id in [
                k for k, v in self._spans.items() if v.trace_id == trace_id
            ]:
                del self._spans[span_id]
            for key in [k for k in self._handoffs if k[0] == trace_id]:
                del self._handoffs[key]
        if state is None or not state.owns_task:
            return
        if state.failed:
            self.recorder.transition(
                state.task, "failed", error=state.failed, id=derived(trace_id, "end")
            )
        else:
            self.recorder.transition(
                state.task, "completed", id=derived(trace_id, "end")
            )

    # -- spans --

    def on_span_start(self, span: Any) -> None:
        self._safely("a span start", self._span_start, span)

    def _nearest_agent(self, parent_id: str | None) -> str | None:
        info = self._nearest_agent_span(parent_id)
        return info.agent if info else None

    def _nearest_agent_span(self, parent_id: str | None) -> _Span | None:
        seen = 0
        while parent_id and seen < 1000:
            info = self._spans.get(parent_id)
            if info is None:
                return None
            if info.agent:
                return info
            parent_id = info.parent_id
            seen += 1
        return None

    def _span_start(self, span: Any) -> None:
        trace = self._trace(span.trace_id)
        data = span.span_data
        info = _Span(trace_id=span.trace_id, parent_id=span.parent_id)
        if isinstance(data, AgentSpanData):
            name = clip(data.name or "agent", 200)
            with self._lock:
                parent = self._handoffs.get(
                    (span.trace_id, data.name)
                ) or self._nearest_agent(span.parent_id)
                agent = self._agents.get(name)
            if agent is None:
                agent = self.recorder.agent(name, parent=parent)
                with self._lock:
                    self._agents[name] = agent
            info.agent = agent
            self.recorder.run(
                task=trace.task,
                agent=agent,
                status="running",
                id=derived("agents-run", span.span_id),
                started_at=span.started_at,
                metadata={
                    "openai_agents": {
                        "trace_id": span.trace_id,
                        "span_id": span.span_id,
                        "parent_id": span.parent_id,
                    }
                },
            )
        elif isinstance(data, HandoffSpanData):
            self._handoff(span, data)
        with self._lock:
            self._spans[span.span_id] = info

    def _handoff(self, span: Any, data: Any) -> None:
        # The SDK names the agent handed to only once the handoff resolves:
        # looked at when the span starts and again when it ends.
        if not data.to_agent:
            return
        with self._lock:
            source = self._agents.get(clip(data.from_agent or "", 200))
            if source:
                self._handoffs[(span.trace_id, data.to_agent)] = source

    def on_span_end(self, span: Any) -> None:
        self._safely("a span end", self._span_end, span)

    def _span_end(self, span: Any) -> None:
        data = span.span_data
        trace = self._trace(span.trace_id)
        error = span.error
        message = ""
        if error:
            message = clip(
                error.get("message") if isinstance(error, dict) else error,
                SUMMARY_CHARS,
            )
        if isinstance(data, AgentSpanData):
            with self._lock:
                info = self._spans.get(span.span_id)
            # A model call that failed last fails the run: the SDK raises it
            # to the caller but records it on the call's span only.
            failed = message or (info.failed if info else "")
            run = derived("agents-run", span.span_id)
            fields: dict[str, Any] = {"status": "failed" if failed else "completed"}
            if failed:
                fields["error"] = failed
                if not span.parent_id:
                    trace.failed = failed
            self.recorder.run_update(run, id=derived(run, "end"), **fields)
        elif isinstance(data, GenerationSpanData | ResponseSpanData):
            with self._lock:
                owner = self._nearest_agent_span(span.parent_id)
                if owner is not None:
                    failure = message or "The model call failed."
                    owner.failed = failure if error else ""
            if isinstance(data, GenerationSpanData):
                self._generation(span, data, trace)
            else:
                self._response(span, data, trace)
        elif isinstance(data, HandoffSpanData):
            self._handoff(span, data)
        elif isinstance(data, FunctionSpanData):
            details: dict[str, Any] = {
                "openai_agents": {"trace_id": span.trace_id, "span_id": span.span_id},
                "arguments": clip(data.input, DETAIL_CHARS),
            }
            if data.output is not None:
                details["result"] = clip(data.output, DETAIL_CHARS)
            self.recorder.audit(
                "tool.invoke",
                target=clip(data.name or "function", 500),
                success=not error,
                duration_ms=_duration(span),
                error=message or None,
                details=details,
                id=derived("agents-tool", span.span_id),
            )
        with self._lock:
            if span.trace_id not in self._traces:
                # Its trace ended first: nothing will clear it later.
                self._spans.pop(span.span_id, None)

    def _sender(self, span: Any) -> str | None:
        with self._lock:
            return self._nearest_agent(span.parent_id)

    def _inputs(self, trace: _Trace, items: Any, instructions: Any = None) -> None:
        if isinstance(items, str):
            items = [{"role": "user", "content": items}]
        items = list(items or [])
        if instructions:
            # The Responses API takes the system prompt apart from the input;
            # first, as the Chat Completions input has it.
            items.insert(0, {"role": "system", "content": instructions})
        for position, item in enumerate(items):
            item = _plain(item)
            if not isinstance(item, dict):
                continue
            if item.get("type") == "function_call_output":
                speaker, content = "tool", text(item.get("output"))
                extra = {"tool_call_id": clip(item.get("call_id"), 200)}
            elif "role" in item:
                speaker, content = role(item.get("role")), text(item.get("content"))
                extra = (
                    {"tool_call_id": clip(item["tool_call_id"], 200)}
                    if item.get("tool_call_id")
                    else {}
                )
            else:
                continue
            if speaker == "assistant":
                continue  # recorded from the call that produced it
            self.recorder.message(
                trace.conversation,
                role=speaker,
                content=content,
                id=input_message_id(
                    trace.conversation, position, speaker, content, extra
                ),
                **extra,
            )

    def _answer(
        self,
        span: Any,
        trace: _Trace,
        content: str,
        tool_calls: list,
        model: Any,
        usage: dict,
    ) -> None:
        fields: dict[str, Any] = {
            "metadata": {
                "openai_agents": {"trace_id": span.trace_id, "span_id": span.span_id}
            },
            "latency_ms": _duration(span),
            "sender": self._sender(span),
            "tool_calls": tool_calls or None,
            "model": clip(model, 200) if model else None,
            **usage,
        }
        if span.error:
            fields["metadata"]["openai_agents"]["error"] = clip(
                span.error, SUMMARY_CHARS
            )
        self.recorder.message(
            trace.conversation,
            role="assistant",
            content=content,
            id=derived("agents-message", span.span_id),
            **fields,
        )

    def _generation(self, span: Any, data: Any, trace: _Trace) -> None:
        self._inputs(trace, data.input)
        texts: list[str] = []
        calls: list[dict] = []
        for output in data.output or []:
            output = _plain(output)
            if not isinstance(output, dict):
                continue
            if isinstance(output.get("output"), list):
                # Streamed Chat Completions: the SDK keeps the final answer
                # as a Responses API response.
                more_texts, more_calls = _response_output(output["output"])
                texts += more_texts
                calls += more_calls
                continue
            texts.append(text(output.get("content")))
            calls += [
                call
                for call in output.get("tool_calls") or []
                if isinstance(call, dict)
            ]
        self._answer(
            span, trace, "\n".join(texts), calls, data.model, _usage(data.usage)
        )

    def _response(self, span: Any, data: Any, trace: _Trace) -> None:
        response = data.response
        instructions = getattr(response, "instructions", None)
        if not isinstance(instructions, str):
            instructions = None  # a list of input items: not a system prompt
        self._inputs(trace, data.input, instructions)
        if response is None:
            return
        texts, calls = _response_output(getattr(response, "output", None) or [])
        usage = _plain(getattr(response, "usage", None)) or {}
        self._answer(
            span,
            trace,
            "\n".join(texts),
            calls,
            getattr(response, "model", None),
            _usage(usage),
        )

    def shutdown(self) -> None:
        return None

    def force_flush(self) -> None:
        return None


def _response_output(items: list) -> tuple[list[str], list[dict]]:
    """The texts and tool calls of a Responses API response's output."""
    texts: list[str] = []
    calls: list[dict] = []
    for item in items:
        item = _plain(item)
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            texts += [
                text(part.get("text"))
                for part in item.get("content") or []
                if isinstance(part, dict) and part.get("text") is not None
            ]
        elif item.get("type") == "function_call":
            calls.append(
                {
                    "id": str(item.get("call_id") or ""),
                    "type": "function",
                    "function": {
                        "name": str(item.get("name") or ""),
                        "arguments": text(item.get("arguments")),
                    },
                }
            )
    return texts, calls


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump() if callable(dump) else value


def _usage(usage: Any) -> dict[str, int]:
    if not isinstance(usage, dict):
        return {}
    out: dict[str, int] = {}
    if usage.get("input_tokens") is not None:
        out["prompt_tokens"] = int(usage["input_tokens"])
    if usage.get("output_tokens") is not None:
        out["completion_tokens"] = int(usage["output_tokens"])
    details = usage.get("input_tokens_details") or {}
    if isinstance(details, dict) and details.get("cached_tokens"):
        out["cached_tokens"] = int(details["cached_tokens"])
    return out


def _duration(span: Any) -> float | None:
    try:
        started = datetime.fromisoformat(span.started_at)
        ended = datetime.fromisoformat(span.ended_at)
    except (TypeError, ValueError):
        return None
    return round(max(0.0, (ended - started).total_seconds() * 1000), 3)
