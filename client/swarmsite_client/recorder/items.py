"""What the Recorder records: ingest item types and ids derived from names."""

from __future__ import annotations

import uuid

# uuid5 namespace of ids derived from names (agents, TasksDict keys).
NAMESPACE = uuid.UUID("6b9f3c2e-52a1-4c0e-9d7a-1f0e8c4b2a55")

# Item types the server's ingest takes (contract 1.1).
ITEM_TYPES = (
    "agent",
    "agent_update",
    "heartbeat",
    "workflow",
    "task",
    "task_update",
    "transition",
    "progress",
    "dependency",
    "conversation",
    "participant",
    "message",
    "message_sender_fill",
    "run",
    "run_update",
    "run_metadata_fill",
    "event",
    "audit",
    "memory",
)

# Types whose item is an update, identified by an operation `id`.
UPDATE_TYPES = {"heartbeat", "task_update", "transition", "progress", "run_update"}


def derived_id(kind: str, name: str, namespace: str | None = None) -> str:
    """A stable id for a name: the same name gives the same id every run."""
    scope = f"{namespace}:" if namespace else ""
    return str(uuid.uuid5(NAMESPACE, f"{scope}{kind}:{name}"))
