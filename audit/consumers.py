"""`ws/v1/events/`: a project's event log, replayed after a position, then live.

The channel layer only rings a doorbell ("project P has events up to N"):
every delivery is read from the event log after the last position sent, by
one task per connection, so a dropped, late or repeated ring loses nothing
and never sends an event twice, and a periodic re-read heals lost rings.

Reads run on a few threads of their own: the default of
`database_sync_to_async` shares one thread with every sync HTTP view of the
process, so stream reads would queue behind the very writes they follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from channels.consumer import AsyncConsumer, get_handler_name
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections
from django.http import QueryDict
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.fields import DateTimeField

from audit.models import Event
from audit.selectors import (
    event_foreign_object_ids,
    event_latest_position,
    event_stream_page,
)
from audit.serializers import EventFilterSerializer
from swarmsite.api import ApiPrincipal
from swarmsite.errors import NotFound
from swarmsite.metrics import WEBSOCKET_CONNECTIONS
from swarmsite.models import DEFAULT_PROJECT_SLUG, ApiKeyScope, Project
from swarmsite.realtime import SEND_BUFFER_SCOPE_KEY, project_group
from swarmsite.services import api_key_authenticate

logger = logging.getLogger(__name__)

CLOSE_TOO_BIG = 1009
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_LAGGING = 4429

PAGE_SIZE = 500
READ_THREADS = 4
_DRAIN_CHECK_SECONDS = 0.05
_LAYER_RETRY_SECONDS = 1.0

_read_threads = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="stream-read")


def _on_read_thread(func: Callable) -> Callable:
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
    frame is built once per read, not once per connection.
    """

    positions: list[int]
    bodies: list[str]
    reached: int

    @functools.cached_property
    def frames(self) -> list[str]:
        """One `{"type": "event", ...}` frame per event."""
        return ['{"type":"event",' + body[1:] for body in self.bodies]

    @functools.cached_property
    def batch(self) -> str:
        """One `{"type": "events", "events": [...]}` frame for the whole page."""
        return '{"type":"events","events":[' + ",".join(self.bodies) + "]}"


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
    )


@dataclass
class _Flights:
    """Connections of a process at the same cursor share one read of a page."""

    pending: dict[tuple, asyncio.Future] = field(default_factory=dict)

    async def read(self, project_id: int, after: int, stream: StreamFilter) -> Page:
        key = (id(asyncio.get_running_loop()), project_id, after, stream.key)
        flight = self.pending.get(key)
        if flight is None:
            flight = asyncio.ensure_future(
                _on_read_thread(_read_page)(project_id, after, stream)
            )
            self.pending[key] = flight
            flight.add_done_callback(lambda _: self.pending.pop(key, None))
        return await asyncio.shield(flight)


_flights = _Flights()


def _messages(detail: Any) -> list[str]:
    if isinstance(detail, dict):
        return [m for value in detail.values() for m in _messages(value)]
    if isinstance(detail, list):
        return [m for value in detail for m in _messages(value)]
    return [str(detail)]


def _authenticate_key(secret: str) -> ApiPrincipal:
    key = api_key_authenticate(secret=secret)
    return ApiPrincipal(project=key.project, scopes=frozenset(key.scopes), key=key)


def _staff_principal(user: Any) -> ApiPrincipal:
    project = Project.objects.get(slug=DEFAULT_PROJECT_SLUG)
    return ApiPrincipal(
        project=project, scopes=frozenset(ApiKeyScope.values), user=user
    )


_BATCH_VALUES = {"1": True, "true": True, "0": False, "false": False}


def _parse_query(query_string: bytes) -> tuple[int | None, StreamFilter, bool]:
    """`after`, the filters and `batch` of the URL, or a DRF ValidationError."""
    query = QueryDict(query_string.decode("latin-1"))
    raw_batch = query.get("batch", "0").lower()
    if raw_batch not in _BATCH_VALUES:
        raise DRFValidationError({"batch": ["Must be 1 or 0 (true or false)."]})
    after: int | None = None
    raw_after = query.get("after", "")
    if raw_after != "":
        try:
            after = int(raw_after)
        except ValueError:
            after = -1
        if after < 0:
            raise DRFValidationError({"after": ["Must be a position, 0 or more."]})
    filters = EventFilterSerializer.from_query(query)
    stream = StreamFilter(
        task_ids=frozenset(filters.get("task", ())),
        conversation_ids=frozenset(filters.get("conversation", ())),
        kinds=frozenset(filters.get("kind", ())),
    )
    cap = settings.STREAM_MAX_SUBSCRIPTIONS
    if len(stream.task_ids) + len(stream.conversation_ids) + len(stream.kinds) > cap:
        message = f"At most {cap} task, conversation and kind filters in all."
        raise DRFValidationError(
            {
                name: [message]
                for name in ("task", "conversation", "kind")
                if name in query
            }
        )
    return after, stream, _BATCH_VALUES[raw_batch]


class EventStreamConsumer(AsyncConsumer):
    """Authenticate, authorise the filters, then send events in position order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.principal: ApiPrincipal | None = None
        self.stream = StreamFilter()
        self.after: int | None = None
        self.batch = False
        self.query_error: DRFValidationError | None = None
        self.cursor = 0
        self.accepted = False
        self.closing = False
        self.joined = False
        self.wake = asyncio.Event()
        self.auth_timer: asyncio.Task | None = None
        self.pump: asyncio.Task | None = None

    # ASGI plumbing ---------------------------------------------------------

    async def __call__(self, scope, receive, send):
        # As AsyncConsumer.__call__, except that a channel layer error (Redis
        # down) does not end the connection: the stream goes on by polling
        # and rejoins its group when the layer is back.
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.base_send = send
        sources: list[Callable] = [receive]
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            sources.append(self._receive_ring)
        try:
            await await_many_dispatch(sources, self.dispatch)
        except StopConsumer:
            pass
        finally:
            await self._stop()

    async def _receive_ring(self) -> dict[str, Any]:
        while True:
            try:
                return await self.channel_layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception:
                if self.joined:
                    logger.warning("channel layer receive failed", exc_info=True)
                self.joined = False
                await asyncio.sleep(_LAYER_RETRY_SECONDS)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # AsyncConsumer.dispatch closes stale connections on a thread before
        # every message; reads here run in _on_read_thread, which
        # already does, and a ring must cost no thread hop.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        await self.send({"type": "websocket.accept"})
        self.accepted = True
        WEBSOCKET_CONNECTIONS.inc()
        try:
            self.after, self.stream, self.batch = _parse_query(
                self.scope.get("query_string", b"")
            )
        except DRFValidationError as exc:
            # Answered once the client is known: deny by default.
            self.query_error = exc
        header = self._header(b"authorization")
        if header is not None:
            parts = header.split()
            if len(parts) != 2 or parts[0].lower() != "bearer":
                await self._refuse("The Authorization header must be 'Bearer <key>'.")
                return
            await self._authenticate(parts[1])
            return
        user = self.scope.get("user")
        if user is not None and user.is_authenticated and user.is_staff:
            principal = await _on_read_thread(_staff_principal)(user)
            await self._start(principal)
            return
        self.auth_timer = asyncio.ensure_future(self._auth_deadline())

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        text, data = message.get("text"), message.get("bytes")
        size = len(data) if text is None else len(text.encode())
        if size > settings.STREAM_MAX_FRAME_BYTES:
            await self._close(
                CLOSE_TOO_BIG,
                "message_too_big",
                f"Frames are limited to {settings.STREAM_MAX_FRAME_BYTES} bytes.",
            )
            return
        if self.closing:
            return
        try:
            content = json.loads(text if text is not None else data)
        except (ValueError, UnicodeDecodeError):
            content = None
        kind = content.get("type") if isinstance(content, dict) else None
        if self.principal is None:
            token = content.get("token") if kind == "auth" else None
            if not isinstance(token, str) or not token:
                await self._refuse('Send {"type": "auth", "token": "<api key>"} first.')
                return
            await self._authenticate(token)
        elif kind == "ping":
            await self._send_json({"type": "pong", "position": self.cursor})
        else:
            await self._send_error(
                "parse_error", 'Only {"type": "ping"} is accepted once subscribed.'
            )

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        raise StopConsumer()

    async def events_appended(self, message: dict[str, Any]) -> None:
        """A ring: read the log now if the ring can concern this stream."""
        if self.pump is None:
            return
        if message.get("position", 0) > self.cursor and self.stream.may_match(message):
            self.wake.set()

    # Authentication and authorisation -------------------------------------

    def _header(self, name: bytes) -> str | None:
        for key, value in self.scope.get("headers", ()):
            if key.lower() == name:
                return value.decode("latin-1")
        return None

    async def _auth_deadline(self) -> None:
        await asyncio.sleep(settings.STREAM_AUTH_TIMEOUT_SECONDS)
        if self.principal is None:
            await self._refuse("No credentials within the authentication deadline.")

    async def _authenticate(self, secret: str) -> None:
        if self.auth_timer is not None:
            # Credentials arrived in time, however long checking them takes.
            self.auth_timer.cancel()
        try:
            principal = await _on_read_thread(_authenticate_key)(secret)
        except NotFound:
            await self._refuse("Invalid, revoked or expired API key.")
            return
        await self._start(principal)

    async def _start(self, principal: ApiPrincipal) -> None:
        if self.auth_timer is not None:
            self.auth_timer.cancel()
        if self.query_error is not None:
            await self._fail_validation(self.query_error)
            return
        if not principal.has_scope(ApiKeyScope.READ):
            await self._close(
                CLOSE_FORBIDDEN,
                "permission_denied",
                "This API key lacks the read scope.",
            )
            return
        project_id = principal.project.pk
        foreign = await _on_read_thread(event_foreign_object_ids)(
            project_id=project_id,
            task_ids=self.stream.task_ids,
            conversation_ids=self.stream.conversation_ids,
        )
        if foreign:
            await self._close(
                CLOSE_FORBIDDEN,
                "permission_denied",
                "A filter names an object of another project: "
                + ", ".join(sorted(map(str, foreign))),
            )
            return
        self.principal = principal
        await self._join()
        if self.after is None:
            self.after = await _on_read_thread(event_latest_position)(
                project_id=project_id
            )
        self.cursor = self.after
        await self._send_json({"type": "ready", "position": self.cursor})
        self.pump = asyncio.ensure_future(self._run_pump())

    async def _join(self) -> None:
        if self.channel_layer is None or self.principal is None:
            return
        group = project_group(self.principal.project.pk)
        try:
            # Also renews the membership, which Redis expires after a day.
            await self.channel_layer.group_add(group, self.channel_name)
        except Exception:
            if self.joined:
                logger.warning("joining %s failed", group, exc_info=True)
            self.joined = False
        else:
            self.joined = True

    # Delivery --------------------------------------------------------------

    async def _run_pump(self) -> None:
        loop = asyncio.get_running_loop()
        heartbeat_due = loop.time() + settings.STREAM_HEARTBEAT_SECONDS
        poll_due = loop.time() + settings.STREAM_POLL_SECONDS
        while not self.closing:
            self.wake.clear()
            try:
                await self._deliver()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database may be restarting: try again at the next tick.
                logger.warning("stream read failed", exc_info=True)
            if self.closing:
                return
            now = loop.time()
            if now >= heartbeat_due:
                if not self.joined:
                    await self._join()
                await self._send_json({"type": "heartbeat", "position": self.cursor})
                heartbeat_due = now + settings.STREAM_HEARTBEAT_SECONDS
            if now >= poll_due:
                poll_due = now + settings.STREAM_POLL_SECONDS
                if not self.joined:
                    await self._join()
            timeout = max(0.0, min(heartbeat_due, poll_due) - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)

    async def _deliver(self) -> None:
        """Send every matching event after the cursor, page by page.

        One frame per event, or in batch mode one frame per page.
        """
        project_id = self.principal.project.pk
        while not self.closing:
            page = await _flights.read(project_id, self.cursor, self.stream)
            if self.batch:
                if page.positions:
                    await self.send({"type": "websocket.send", "text": page.batch})
                    self.cursor = page.positions[-1]
            else:
                for position, frame in zip(page.positions, page.frames, strict=True):
                    await self.send({"type": "websocket.send", "text": frame})
                    self.cursor = position
            self.cursor = max(self.cursor, page.reached)
            if not await self._drained():
                return
            if len(page.positions) < PAGE_SIZE:
                return

    def _buffered_bytes(self) -> int:
        probe = self.scope.get(SEND_BUFFER_SCOPE_KEY)
        return probe() if probe is not None else 0

    async def _drained(self) -> bool:
        """Wait while the client is not reading; False once it lags too far."""
        limit = settings.STREAM_MAX_SEND_BUFFER_BYTES
        checked = 0.0
        while self._buffered_bytes() > limit:
            if time.monotonic() - checked > settings.STREAM_POLL_SECONDS:
                checked = time.monotonic()
                latest = await _on_read_thread(event_latest_position)(
                    project_id=self.principal.project.pk
                )
                if latest - self.cursor > settings.STREAM_MAX_BUFFERED_EVENTS:
                    await self._close(
                        CLOSE_LAGGING,
                        "lagging",
                        f"The client fell more than "
                        f"{settings.STREAM_MAX_BUFFERED_EVENTS} events behind; "
                        f"reconnect with after={self.cursor}.",
                        position=self.cursor,
                    )
                    return False
            await asyncio.sleep(_DRAIN_CHECK_SECONDS)
        return True

    # Output ----------------------------------------------------------------

    async def _send_json(self, content: dict[str, Any]) -> None:
        await self.send(
            {
                "type": "websocket.send",
                "text": json.dumps(content, cls=DjangoJSONEncoder),
            }
        )

    async def _send_error(
        self, code: str, message: str, fields: dict | None = None, **extra: Any
    ) -> None:
        error: dict[str, Any] = {"code": code, "message": message}
        if fields:
            error["fields"] = fields
        await self._send_json({"type": "error", "error": error, **extra})

    async def _close(self, close_code: int, code: str, message: str, **extra) -> None:
        if self.closing:
            return
        self.closing = True
        await self._send_error(code, message, **extra)
        await self.send({"type": "websocket.close", "code": close_code})

    async def _refuse(self, message: str) -> None:
        await self._close(CLOSE_UNAUTHENTICATED, "not_authenticated", message)

    async def _fail_validation(self, exc: DRFValidationError) -> None:
        fields = {name: _messages(msgs) for name, msgs in exc.detail.items()}
        summary = "; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items())
        if self.closing:
            return
        self.closing = True
        await self._send_error("validation_error", summary, fields)
        await self.send({"type": "websocket.close", "code": CLOSE_BAD_REQUEST})

    async def _stop(self) -> None:
        self.closing = True
        for task in (self.auth_timer, self.pump):
            if task is not None and not task.done():
                task.cancel()
        if self.accepted:
            self.accepted = False
            WEBSOCKET_CONNECTIONS.dec()
        if self.joined and self.principal is not None:
            try:
                await self.channel_layer.group_discard(
                    project_group(self.principal.project.pk), self.channel_name
                )
            except Exception:
                logger.debug("leaving the group failed", exc_info=True)
