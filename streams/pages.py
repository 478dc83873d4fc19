"""Reading a project's event log for streams: pages, each encoded once.

Reads run on a few threads of their own: the default of
`database_sync_to_async` shares one thread with every sync HTTP view of the
process, so stream reads would queue behind the very writes they follow.
Connections of a process at the same cursor and filter share one read.
"""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections
from rest_framework.fields import DateTimeField

from audit.models import Event
from audit.selectors import event_stream_page
from streams.wire import text_frame

PAGE_SIZE = 500
# Under the 1 MiB message limit of daphne and of most client libraries
# (event JSON is ASCII, so characters are bytes).
BATCH_FRAME_BYTES = 1_000_000
READ_THREADS = 4

_read_threads = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="stream-read")


def on_read_thread(func: Callable) -> Callable:
    """`func` off the thread of sync views, its connection closed after each call.

    As `database_sync_to_async`, with `close_old_connections` called here
    rather than through `channels.db`, which `channels.testing` turns into a
    no-op: with `CONN_MAX_AGE = 0` it closes the thread's connection (hands it
    back to the pool on PostgreSQL), so an idle read thread never holds one.
    """

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(run, thread_sensitive=False, executor=_read_threads)


@dataclass(frozen=True)
class StreamFilter:
    """What a connection follows: tasks AND conversations AND kinds."""

    task_ids: frozenset[uuid.UUID] = frozenset()
    conversation_ids: frozenset[uuid.UUID] = frozenset()
    kinds: frozenset[str] = frozenset()

    @property
    def key(self) -> tuple:
        return (
            tuple(sorted(map(str, self.task_ids))),
            tuple(sorted(map(str, self.conversation_ids))),
            tuple(sorted(self.kinds)),
        )

    def may_match(self, ring: dict[str, Any]) -> bool:
        """Whether a ring can concern this filter (kinds are not in rings)."""
        if self.task_ids and not self.task_ids & _uuids(ring.get("tasks")):
            return False
        return not (
            self.conversation_ids
            and not self.conversation_ids & _uuids(ring.get("conversations"))
        )


def _uuids(values: Any) -> set[uuid.UUID]:
    found = set()
    for value in values or ():
        try:
            found.add(uuid.UUID(str(value)))
        except ValueError:
            continue
    return found


_DATETIME = DateTimeField()


def _event_json(event: Event) -> str:
    """An event as a JSON object, the fields of `EventSerializer`, encoded once.

    Built by hand: a serializer per event costs more than the rest of a read.
    """
    return json.dumps(
        {
            "id": str(event.uuid),
            "position": event.position,
            "kind": event.kind,
            "task": None if event.task_id is None else str(event.task_id),
            "conversation": (
                None if event.conversation_id is None else str(event.conversation_id)
            ),
            "actor": {
                "type": event.actor_type,
                "id": event.actor_id,
                "label": event.actor_label,
            },
            "correlation_id": event.correlation_id,
            "payload": event.payload,
            "occurred_at": _DATETIME.to_representation(event.occurred_at),
            "recorded_at": _DATETIME.to_representation(event.recorded_at),
        },
        cls=DjangoJSONEncoder,
        separators=(",", ":"),
    )


@dataclass
class Page:
    """Events ready to send, each encoded once, and the position reached.

    Shared by every connection of the process at the same cursor, so each
    frame is built once per read, not once per connection. A `full` page is
    as long as pages go: more may follow at once.
    """

    positions: list[int]
    bodies: list[str]
    reached: int
    full: bool

    @functools.cached_property
    def frames(self) -> list[tuple[int, str]]:
        """`{"type": "event", ...}` frames, one per event, with its position."""
        return [
            (position, '{"type":"event",' + body[1:])
            for position, body in zip(self.positions, self.bodies, strict=True)
        ]

    @functools.cached_property
    def batches(self) -> list[tuple[int, str]]:
        """`{"type": "events", "events": [...]}` frames, with their last position.

        As few as fit under `BATCH_FRAME_BYTES` each; an event larger than
        that alone goes in a frame of its own.
        """
        batches: list[tuple[int, str]] = []
        start, size = 0, 0
        for end, body in enumerate(self.bodies):
            if end > start and size + len(body) > BATCH_FRAME_BYTES:
                batches.append(self._batch(start, end))
                start, size = end, 0
            size += len(body) + 1
        if self.bodies:
            batches.append(self._batch(start, len(self.bodies)))
        return batches

    def _batch(self, start: int, end: int) -> tuple[int, str]:
        events = ",".join(self.bodies[start:end])
        return self.positions[end - 1], '{"type":"events","events":[' + events + "]}"

    @functools.cached_property
    def framed(self) -> bytes:
        """`frames` as WebSocket frames on the wire, for a direct write."""
        return b"".join(text_frame(text) for _, text in self.frames)

    @functools.cached_property
    def framed_batches(self) -> bytes:
        """`batches` as WebSocket frames on the wire, for a direct write."""
        return b"".join(text_frame(text) for _, text in self.batches)


def _read_page(project_id: int, after: int, stream: StreamFilter) -> Page:
    events, reached = event_stream_page(
        project_id=project_id,
        after=after,
        task_ids=stream.task_ids,
        conversation_ids=stream.conversation_ids,
        kinds=stream.kinds,
        limit=PAGE_SIZE,
    )
    return Page(
        positions=[event.position for event in events],
        bodies=[_event_json(event) for event in events],
        reached=reached,
        full=len(events) == PAGE_SIZE,
    )


@dataclass
class Flights:
    """Connections of a process at the same cursor share one read of a page."""

    pending: dict[tuple, asyncio.Future] = field(default_factory=dict)

    async def read(self, project_id: int, after: int, stream: StreamFilter) -> Page:
        key = (id(asyncio.get_running_loop()), project_id, after, stream.key)
        flight = self.pending.get(key)
        if flight is None:
            flight = asyncio.ensure_future(
                on_read_thread(_read_page)(project_id, after, stream)
            )
            self.pending[key] = flight
            flight.add_done_callback(lambda _: self.pending.pop(key, None))
        return await asyncio.shield(flight)


flights = Flights()
