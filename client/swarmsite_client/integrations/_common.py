"""Pieces both adapters share: derived ids, message ids, text clipping."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timezone
from typing import Any

# uuid5 namespace of the ids the adapters derive from framework ids.
NAMESPACE = uuid.UUID("2f7c9a4e-0d5b-4f61-8a3e-6c1b9e7d4a20")

SUMMARY_CHARS = 2000
DETAIL_CHARS = 4000

ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "tool": "tool",
    "function": "tool",
}


def derived(*parts: Any) -> str:
    """A stable id for a framework id (and a purpose)."""
    return str(uuid.uuid5(NAMESPACE, ":".join(str(p) for p in parts)))


def role(value: Any) -> str:
    return ROLES.get(str(value or "").lower(), "user")


def text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        # Content parts: keep the text ones. Parts that are all of other
        # types (tool use, images) give no text, not their JSON (an image's
        # is its base64 data).
        parts = []
        typed = bool(value)
        for part in value:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif not (isinstance(part, dict) and "type" in part):
                typed = False
        if parts:
            return "\n".join(parts).replace("\x00", "")
        if typed:
            return ""
    try:
        return json.dumps(value, default=str, sort_keys=True).replace("\x00", "")
    except (TypeError, ValueError):
        return str(value).replace("\x00", "")


def clip(value: Any, limit: int) -> str:
    out = text(value)
    return out if len(out) <= limit else out[: limit - 1] + "…"


def input_message_id(
    conversation: str, position: int, role_: str, content: str, extra: Any = None
) -> str:
    """Inputs are addressed by conversation, position and content, so the
    history every model call re-sends is stored once."""
    digest = hashlib.sha256(
        json.dumps([role_, content, extra], sort_keys=True, default=str).encode()
    ).hexdigest()
    return derived("input", conversation, position, digest)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()  # noqa: UP017 (3.10)


def elapsed_ms(started: float | None, ended: float) -> float | None:
    if started is None:
        return None
    return round(max(0.0, (ended - started) * 1000), 3)
