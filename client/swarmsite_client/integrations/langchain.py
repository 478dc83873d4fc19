"""A LangChain callback handler that records into Swarmsite.

    from swarmsite_client import Recorder
    from swarmsite_client.integrations.langchain import SwarmsiteCallbackHandler

    recorder = Recorder(outbox="swarm.outbox")
    handler = SwarmsiteCallbackHandler(recorder, title="Summarise the report")
    chain.invoke({"topic": "otters"}, config={"callbacks": [handler]})

Each top-level LangChain run (a run without `parent_run_id`) becomes a task
(or runs under the `task` given), an agent run whose id is LangChain's
`run_id`, and a conversation; chat model calls become messages (the
assistant message's id is the call's `run_id`), tool calls `tool.invoke`
audit records (id: the tool run's `run_id`). Everything goes through the
Recorder's outbox: the callbacks return without waiting for the network.
Importing this module imports `langchain_core`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from swarmsite_client.integrations._common import (
    DETAIL_CHARS,
    SUMMARY_CHARS,
    clip,
    derived,
    elapsed_ms,
    input_message_id,
    role,
    text,
)

log = logging.getLogger("swarmsite_client.integrations.langchain")

_MESSAGE_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "ai": "assistant",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
    "chat": "user",
}


@dataclass
class _Root:
    task: str
    run: str
    agent: str
    conversation: str
    owns_task: bool
    positions: int = 0


@dataclass
class _Call:
    root: UUID
    started: float = field(default_factory=time.monotonic)
    name: str = ""
    model: str = ""
    input: Any = None


class SwarmsiteCallbackHandler(BaseCallbackHandler):
    """Records LangChain runs, model calls and tool calls through a Recorder.

    - `title`: the task's title (default: the top-level run's name);
    - `task`: an existing task's id to record the runs under, instead of a
      task per top-level run;
    - `agent`: the agent's name (default: the top-level run's name), or
      `agent_id` for an agent registered under an id of its own;
    - `conversation`: an existing conversation's id (default: one per
      top-level run, belonging to its task).
    """

    raise_error = False

    def __init__(
        self,
        recorder: Any,
        *,
        title: str | None = None,
        task: Any = None,
        agent: str | None = None,
        agent_id: Any = None,
        conversation: Any = None,
    ) -> None:
        super().__init__()
        self.recorder = recorder
        self.title = title
        self.task = str(task) if task else None
        self.agent = agent
        self.agent_id = str(agent_id) if agent_id else None
        self.conversation = str(conversation) if conversation else None
        self._lock = threading.Lock()
        self._roots: dict[UUID, _Root] = {}
        self._calls: dict[UUID, _Call] = {}
        self._owner: dict[UUID, UUID] = {}

    # -- bookkeeping --

    def _safely(self, what: str, action, *args: Any) -> None:
        try:
            action(*args)
        except Exception:  # never break the user's chain
            log.exception("Swarmsite: recording %s failed", what)

    def _root_of(self, run_id: UUID, parent_run_id: UUID | None, name: str) -> UUID:
        with self._lock:
            if parent_run_id is not None and parent_run_id in self._owner:
                root = self._owner[parent_run_id]
                self._owner[run_id] = root
                return root
            self._owner[run_id] = run_id
            if run_id in self._roots:
                return run_id
        self._begin(run_id, name)
        return run_id

    def _begin(self, run_id: UUID, name: str) -> None:
        recorder = self.recorder
        agent = self.agent_id or recorder.agent(
            clip(self.agent or name or "langchain", 200)
        )
        title = clip(self.title or name or "LangChain run", 500)
        if self.task:
            task, owns = self.task, False
        else:
            task, owns = derived("langchain-task", run_id), True
            recorder.task(
                title,
                id=task,
                metadata={"langchain": {"run_id": str(run_id)}},
            )
            recorder.transition(task, "running", id=derived(run_id, "running"))
        conversation = self.conversation or derived("langchain-conversation", run_id)
        if not self.conversation:
            recorder.conversation(id=conversation, task=task, title=title)
        recorder.run(
            task=task,
            agent=agent,
            status="running",
            id=str(run_id),
            metadata={"langchain": {"name": name}},
        )
        with self._lock:
            self._roots[run_id] = _Root(
                task=task,
                run=str(run_id),
                agent=agent,
                conversation=conversation,
                owns_task=owns,
            )

    def _end(self, run_id: UUID, outputs: Any, error: BaseException | None) -> None:
        with self._lock:
            root = self._roots.pop(run_id, None)
            self._owner.pop(run_id, None)
        if root is None:
            return
        recorder = self.recorder
        if error is None:
            summary = clip(_output_text(outputs), SUMMARY_CHARS)
            recorder.run_update(
                root.run,
                status="completed",
                output_summary=summary,
                id=derived(run_id, "end"),
            )
            if root.owns_task:
                recorder.transition(
                    root.task,
                    "completed",
                    result_summary=summary,
                    id=derived(run_id, "completed"),
                )
        else:
            message = clip(f"{type(error).__name__}: {error}", SUMMARY_CHARS)
            recorder.run_update(
                root.run, status="failed", error=message, id=derived(run_id, "end")
            )
            if root.owns_task:
                recorder.transition(
                    root.task, "failed", error=message, id=derived(run_id, "failed")
                )

    def _name(self, serialized: dict[str, Any] | None, kwargs: dict) -> str:
        name = kwargs.get("name")
        if not name and serialized:
            name = serialized.get("name") or (serialized.get("id") or [""])[-1]
        return str(name or "")

    # -- chains (any runnable) --

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._safely(
            "a chain start",
            self._root_of,
            run_id,
            parent_run_id,
            self._name(serialized, kwargs),
        )

    def on_chain_end(
        self,
        outputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._safely("a chain end", self._end, run_id, outputs, None)

    def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._safely("a chain error", self._end, run_id, None, error)

    # -- model calls --

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._safely(
            "a model call",
            self._model_start,
            serialized,
            messages[0] if messages else [],
            run_id,
            parent_run_id,
            kwargs,
        )

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        prompt = [{"type": "human", "content": prompts[0]}] if prompts else []
        self._safely(
            "a model call",
            self._model_start,
            serialized,
            prompt,
            run_id,
            parent_run_id,
            kwargs,
        )

    def _model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[Any],
        run_id: UUID,
        parent_run_id: UUID | None,
        kwargs: dict,
    ) -> None:
        name = self._name(serialized, kwargs)
        root_id = self._root_of(run_id, parent_run_id, name)
        params = kwargs.get("invocation_params") or {}
        metadata = kwargs.get("metadata") or {}
        model = (
            params.get("model")
            or params.get("model_name")
            or metadata.get("ls_model_name")
            or ""
        )
        with self._lock:
            self._calls[run_id] = _Call(root=root_id, name=name, model=str(model))
            root = self._roots.get(root_id)
        if root is None:
            return
        for position, message in enumerate(messages):
            kind, content, extra = _message_parts(message)
            speaker = _MESSAGE_ROLES.get(kind, "user")
            if speaker == "assistant":
                continue  # recorded from the call that produced it
            fields: dict[str, Any] = {}
            if extra.get("tool_call_id"):
                fields["tool_call_id"] = clip(extra["tool_call_id"], 200)
            self.recorder.message(
                root.conversation,
                role=speaker,
                content=content,
                id=input_message_id(
                    root.conversation, position, speaker, content, fields
                ),
                **fields,
            )

    def on_llm_end(
        self,
        response: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._safely("a model answer", self._model_end, response, run_id, None)

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._safely("a model error", self._model_end, None, run_id, error)

    def _model_end(
        self, response: Any, run_id: UUID, error: BaseException | None
    ) -> None:
        ended = time.monotonic()
        with self._lock:
            call = self._calls.pop(run_id, None)
            self._owner.pop(run_id, None)
            root = self._roots.get(call.root) if call else None
        if call is None or root is None:
            return
        generation = None
        generations = getattr(response, "generations", None) or []
        if generations and generations[0]:
            generation = generations[0][0]
        message = getattr(generation, "message", None)
        content = text(getattr(message, "content", None)) if message else ""
        if not content and generation is not None:
            content = text(getattr(generation, "text", ""))
        fields: dict[str, Any] = {
            "sender": root.agent,
            "latency_ms": elapsed_ms(call.started, ended),
            "metadata": {"langchain": {"run_id": str(run_id), "name": call.name}},
        }
        tool_calls = [
            {
                "id": str(tc.get("id") or ""),
                "type": "function",
                "function": {
                    "name": str(tc.get("name") or ""),
                    "arguments": text(tc.get("args")),
                },
            }
            for tc in (getattr(message, "tool_calls", None) or [])
            if isinstance(tc, dict)
        ]
        if tool_calls:
            fields["tool_calls"] = tool_calls
        llm_output = getattr(response, "llm_output", None) or {}
        model = (
            (getattr(message, "response_metadata", None) or {}).get("model_name")
            or llm_output.get("model_name")
            or call.model
        )
        if model:
            fields["model"] = clip(model, 200)
        fields.update(_usage(message, llm_output))
        if error is not None:
            fields["metadata"]["langchain"]["error"] = clip(
                f"{type(error).__name__}: {error}", SUMMARY_CHARS
            )
        self.recorder.message(
            root.conversation,
            role="assistant",
            content=content,
            id=str(run_id),
            **fields,
        )
        if run_id == call.root:  # a model called on its own
            self._end(run_id, content, error)

    # -- tools --

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._safely(
            "a tool call",
            self._tool_start,
            self._name(serialized, kwargs),
            input_str,
            run_id,
            parent_run_id,
        )

    def _tool_start(
        self, name: str, input_str: Any, run_id: UUID, parent_run_id: UUID | None
    ) -> None:
        root_id = self._root_of(run_id, parent_run_id, name)
        with self._lock:
            self._calls[run_id] = _Call(root=root_id, name=name, input=input_str)

    def on_tool_end(
        self,
        output: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._safely("a tool result", self._tool_end, output, run_id, None)

    def on_tool_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._safely("a tool error", self._tool_end, None, run_id, error)

    def _tool_end(self, output: Any, run_id: UUID, error: BaseException | None) -> None:
        ended = time.monotonic()
        with self._lock:
            call = self._calls.pop(run_id, None)
            self._owner.pop(run_id, None)
        if call is None:
            return
        details: dict[str, Any] = {
            "langchain": {"run_id": str(run_id)},
            "arguments": clip(call.input, DETAIL_CHARS),
        }
        if error is None:
            details["result"] = clip(getattr(output, "content", output), DETAIL_CHARS)
        self.recorder.audit(
            "tool.invoke",
            target=clip(call.name or "tool", 500),
            success=error is None,
            duration_ms=elapsed_ms(call.started, ended),
            error=clip(f"{type(error).__name__}: {error}", SUMMARY_CHARS)
            if error is not None
            else None,
            details=details,
            id=str(run_id),
        )
        if run_id == call.root:
            self._end(run_id, output, error)


def _message_parts(message: Any) -> tuple[str, str, dict[str, Any]]:
    """(type, text, extra) of a LangChain message or a {"type", "content"} dict."""
    if isinstance(message, dict):
        kind = message.get("type") or message.get("role") or "human"
        return str(kind), text(message.get("content")), message
    kind = getattr(message, "type", "human")
    if kind == "chat":
        kind = role(getattr(message, "role", "user"))
    extra = {"tool_call_id": getattr(message, "tool_call_id", None)}
    return str(kind), text(getattr(message, "content", "")), extra


def _usage(message: Any, llm_output: dict) -> dict[str, int]:
    usage = getattr(message, "usage_metadata", None) or {}
    if usage:
        details = usage.get("input_token_details") or {}
        out = {
            "prompt_tokens": int(usage.get("input_tokens") or 0),
            "completion_tokens": int(usage.get("output_tokens") or 0),
        }
        if details.get("cache_read"):
            out["cached_tokens"] = int(details["cache_read"])
        return out
    tokens = llm_output.get("token_usage") or llm_output.get("usage") or {}
    if not isinstance(tokens, dict) or not tokens:
        return {}
    out = {
        "prompt_tokens": int(tokens.get("prompt_tokens") or 0),
        "completion_tokens": int(tokens.get("completion_tokens") or 0),
    }
    cached = (tokens.get("prompt_tokens_details") or {}).get("cached_tokens")
    if cached:
        out["cached_tokens"] = int(cached)
    return out


def _output_text(outputs: Any) -> str:
    if isinstance(outputs, dict):
        for key in ("output", "text", "answer", "result"):
            if key in outputs:
                return text(outputs[key])
    content = getattr(outputs, "content", None)
    if content is not None:
        return text(content)
    return text(outputs)
