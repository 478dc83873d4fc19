"""`Recorder`: persist from agent code without waiting for the network.

    recorder = Recorder(outbox="swarm-outbox.sqlite3")
    task = recorder.task(title="Summarise the paper")
    recorder.transition(task, "running")
    recorder.progress(task, 50)
    recorder.message(conversation, role="assistant", content="...")
    recorder.flush(10)          # True once everything recorded is delivered

Each call appends one ingest item (`{"type": ..., "data": {...}}`, with
its id) to the outbox and returns the id at once. One background thread
sends the outbox in order through `POST /api/v1/ingest/`. Every item
carries an id (a resource id, or an operation id for updates), so the
at-least-once delivery of the outbox plus the server's idempotency is
exactly once. The API of this class is stable: framework integrations
build on it.

`recorder` has the calls (`Recorder`), `sender` the background thread,
`tracked` the `track_task` / `track_run` handles, `items` the item types
and derived ids.
"""

from swarmsite_client.recorder.items import (
    ITEM_TYPES,
    NAMESPACE,
    UPDATE_TYPES,
    derived_id,
)
from swarmsite_client.recorder.recorder import OutboxFull, Recorder
from swarmsite_client.recorder.tracked import Tracked

__all__ = [
    "ITEM_TYPES",
    "NAMESPACE",
    "UPDATE_TYPES",
    "OutboxFull",
    "Recorder",
    "Tracked",
    "derived_id",
]
