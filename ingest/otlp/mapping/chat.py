"""The input and output messages a model-call span captured.

GenAI (`gen_ai.input.messages` and friends, also as span events),
OpenInference (`llm.input_messages.N.*`) and the legacy GenAI span events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ingest.otlp.mapping.spans import clean, short, text
from ingest.otlp.parsing import Span

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
# OpenInference message indices past this are not messages of a real call.
MAX_INDEX_DIGITS = 6
_MESSAGE_ATTRIBUTES = (
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
)


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
        except (ValueError, RecursionError):  # nested past Python's stack
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
            texts.append(text(part.get("content")))
        elif kind == "tool_call":
            calls.append(
                {
                    "id": text(part.get("id")),
                    "type": "function",
                    "function": {
                        "name": text(part.get("name")),
                        "arguments": _arguments(part.get("arguments")),
                    },
                }
            )
        elif kind == "tool_call_response":
            msg.tool_call_id = short(part.get("id"), 200)
            texts.append(text(part.get("response", part.get("result"))))
    msg.content = "\n".join(texts)
    msg.tool_calls = calls or None
    msg.finish_reason = text(raw.get("finish_reason"))
    return msg


def genai_messages(value: Any, default_role: str) -> list[Msg]:
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
        text(p.get("content"))
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
        # ASCII digits only ("²".isdigit() is true too), and few of them.
        if index.isascii() and index.isdigit() and len(index) <= MAX_INDEX_DIGITS:
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
                text(parts[i].get("message_content.text"))
                for i in sorted(parts)
                if parts[i].get("message_content.text") is not None
            )
        msg.content = text(content)
        calls = _indexed(fields, "message.tool_calls.")
        msg.tool_calls = [
            {
                "id": text(calls[i].get("tool_call.id")),
                "type": "function",
                "function": {
                    "name": text(calls[i].get("tool_call.function.name")),
                    "arguments": _arguments(
                        calls[i].get("tool_call.function.arguments", "")
                    ),
                },
            }
            for i in sorted(calls)
        ] or None
        msg.tool_call_id = short(fields.get("message.tool_call_id"), 200)
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
                    content=text(content),
                    tool_call_id=short(attrs.get("id"), 200),
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
                    content=text(content),
                    finish_reason=text(attrs.get("finish_reason")),
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
        inputs += genai_messages(found.get("gen_ai.input.messages"), "user")
        outputs = genai_messages(found.get("gen_ai.output.messages"), "assistant")
        return inputs, outputs
    inputs = _openinference_messages(attrs, "llm.input_messages.")
    outputs = _openinference_messages(attrs, "llm.output_messages.")
    if inputs or outputs:
        return inputs, outputs
    return _legacy_event_messages(span)
