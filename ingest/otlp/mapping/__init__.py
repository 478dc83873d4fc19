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

from ingest.otlp.mapping.chat import Msg, messages
from ingest.otlp.mapping.plan import Plan, Stored, agent_names, map_spans
from ingest.otlp.mapping.spans import (
    AGENT,
    EVENT_KIND,
    LLM,
    OTHER,
    TOOL,
    TOOL_ACTION,
    Ids,
    agent_name,
    classify,
    clean,
    conversation_key,
    cost,
    error_text,
    iso,
    model,
    own_agent_name,
    status_name,
    tool_name,
    usage,
)

__all__ = [
    "AGENT",
    "EVENT_KIND",
    "LLM",
    "OTHER",
    "TOOL",
    "TOOL_ACTION",
    "Ids",
    "Msg",
    "Plan",
    "Stored",
    "agent_name",
    "agent_names",
    "classify",
    "clean",
    "conversation_key",
    "cost",
    "error_text",
    "iso",
    "map_spans",
    "messages",
    "model",
    "own_agent_name",
    "status_name",
    "tool_name",
    "usage",
]
