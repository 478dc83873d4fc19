"""A real `AsyncOpenAI` client whose HTTP transport answers from a script,
so the Agents SDK's own OpenAI models run offline."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable

_ids = itertools.count()


def answer(text: str) -> dict:
    return {
        "type": "message",
        "id": f"msg_{next(_ids)}",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def call(name: str, arguments: dict) -> dict:
    n = next(_ids)
    return {
        "type": "function_call",
        "id": f"fc_{n}",
        "call_id": f"call_{n}",
        "name": name,
        "arguments": json.dumps(arguments),
        "status": "completed",
    }


def response(*output: dict) -> dict:
    """A Responses API response with `output` and some usage."""
    return {
        "id": f"resp_{next(_ids)}",
        "object": "response",
        "created_at": 0,
        "model": "gpt-fake",
        "output": list(output),
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "status": "completed",
        "usage": {
            "input_tokens": 10,
            "output_tokens": 2,
            "total_tokens": 12,
            "input_tokens_details": {"cached_tokens": 4},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }


def chat_stream(*deltas: dict, finish: str = "stop") -> list[dict]:
    """Chat Completions chunks of one streamed answer, usage last."""

    def chunk(choices: list, **extra) -> dict:
        return {
            "id": "cc1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "gpt-fake",
            "choices": choices,
            **extra,
        }

    usage = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    return [
        *(chunk([{"index": 0, "delta": d, "finish_reason": None}]) for d in deltas),
        chunk([{"index": 0, "delta": {}, "finish_reason": finish}]),
        chunk([], usage=usage),
    ]


def client(script: Iterable):
    """Answers each request with the next entry: a response body, a list of
    stream chunks (sent as server-sent events) or an HTTP status (an error)."""
    import httpx
    from openai import AsyncOpenAI

    entries = iter(script)

    def handle(request):
        entry = next(entries)
        sent = json.loads(request.content or b"{}")
        if isinstance(entry, dict) and "instructions" in sent:
            # The Responses API echoes the request's system prompt.
            entry = entry | {"instructions": sent["instructions"]}
        if isinstance(entry, int):
            body = {"error": {"message": "boom", "type": "server_error"}}
            return httpx.Response(entry, json=body)
        if isinstance(entry, list):
            events = "".join(f"data: {json.dumps(c)}\n\n" for c in entry)
            return httpx.Response(
                200,
                headers={"content-type": "text/event-stream"},
                content=(events + "data: [DONE]\n\n").encode(),
            )
        return httpx.Response(200, json=entry)

    return AsyncOpenAI(
        api_key="x",
        base_url="http://fake/v1",
        max_retries=0,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handle)),
    )
