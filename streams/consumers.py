"""`ws/v1/events/`: a project's event log, replayed after a position, then live.

The channel layer only rings a doorbell ("project P has events up to N"),
one per process (`doorbell`): every delivery is read from the event log
after the last position sent, by one task per connection, so a dropped,
late or repeated ring loses nothing and never sends an event twice, and a
periodic re-read heals lost rings. Reads and encoding are in `pages`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.consumer import AsyncConsumer, get_handler_name
from channels.exceptions import StopConsumer
from channels.utils import await_many_dispatch
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.http import QueryDict
from rest_framework.exceptions import ValidationError as DRFValidationError

from audit.selectors import event_foreign_object_ids, event_latest_position
from audit.serializers import EventFilterSerializer
from streams import doorbell
from streams.pages import (
    StreamFilter,
    flights,
    on_read_thread,
)
from streams.wire import WIRE_SCOPE_KEY, Wire
from swarmsite.authentication import (
    ApiPrincipal,
    principal_for_key,
    principal_for_staff,
)
from swarmsite.errors import NotFound
from swarmsite.metrics import WEBSOCKET_CONNECTIONS
from swarmsite.models import ApiKeyScope
from swarmsite.services import api_key_authenticate

logger = logging.getLogger(__name__)

CLOSE_TOO_BIG = 1009
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_LAGGING = 4429

_DRAIN_CHECK_SECONDS = 0.05


def _messages(detail: Any) -> list[str]:
    if isinstance(detail, dict):
        return [m for value in detail.values() for m in _messages(value)]
    if isinstance(detail, list):
        return [m for value in detail for m in _messages(value)]
    return [str(detail)]


def _authenticate_key(secret: str) -> ApiPrincipal:
    return principal_for_key(api_key_authenticate(secret=secret))


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
        self.unsubscribe: Callable[[], Awaitable[None]] | None = None
        self.wake = asyncio.Event()
        self.auth_timer: asyncio.Task | None = None
        self.pump: asyncio.Task | None = None

    # ASGI plumbing ---------------------------------------------------------

    async def __call__(self, scope, receive, send):
        # As AsyncConsumer.__call__, without a channel of its own: rings come
        # through the process's doorbell.
        self.scope = scope
        self.base_send = send
        try:
            await await_many_dispatch([receive], self.dispatch)
        except StopConsumer:
            pass
        finally:
            await self._stop()

    async def dispatch(self, message: dict[str, Any]) -> None:
        # AsyncConsumer.dispatch closes stale connections on a thread before
        # every message; reads here run through pages.on_read_thread, which
        # already does, and a message must cost no thread hop.
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
            principal = await on_read_thread(principal_for_staff)(user)
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

    def _ring(self, message: dict[str, Any]) -> None:
        """A ring: read the log now if the ring can concern this stream."""
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
            principal = await on_read_thread(_authenticate_key)(secret)
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
        foreign = await on_read_thread(event_foreign_object_ids)(
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
        # Subscribed before the head is read, so no ring after it is missed.
        self.unsubscribe = await doorbell.subscribe(
            project_id=project_id, on_ring=self._ring
        )
        if self.after is None:
            self.after = await on_read_thread(event_latest_position)(
                project_id=project_id
            )
        self.cursor = self.after
        await self._send_json({"type": "ready", "position": self.cursor})
        self.pump = asyncio.ensure_future(self._run_pump())

    # Delivery --------------------------------------------------------------

    async def _run_pump(self) -> None:
        loop = asyncio.get_running_loop()
        heartbeat_due = loop.time() + settings.STREAM_HEARTBEAT_SECONDS
        poll_due = loop.time() + settings.STREAM_POLL_SECONDS
        wire: Wire | None = self.scope.get(WIRE_SCOPE_KEY)
        while not self.closing and self._open(wire):
            self.wake.clear()
            try:
                await self._deliver()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database may be restarting: try again at the next tick.
                logger.warning("stream read failed", exc_info=True)
            if self.closing or not self._open(wire):
                return
            now = loop.time()
            if now >= heartbeat_due:
                await self._send_json({"type": "heartbeat", "position": self.cursor})
                heartbeat_due = now + settings.STREAM_HEARTBEAT_SECONDS
            if now >= poll_due:
                poll_due = now + settings.STREAM_POLL_SECONDS
            timeout = max(0.0, min(heartbeat_due, poll_due) - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)

    async def _deliver(self) -> None:
        """Send every matching event after the cursor, page by page.

        One frame per event, or in batch mode a frame per page (or per
        megabyte of it); under daphne the page's frames go out in one
        write, framed once for every connection at the same cursor.
        """
        project_id = self.principal.project.pk
        wire: Wire | None = self.scope.get(WIRE_SCOPE_KEY)
        while not self.closing and self._open(wire):
            page = await flights.read(project_id, self.cursor, self.stream)
            if page.positions and self._open(wire):
                framed = page.framed_batches if self.batch else page.framed
                if wire is None or not wire.write(framed):
                    for position, text in page.batches if self.batch else page.frames:
                        await self.send({"type": "websocket.send", "text": text})
                        self.cursor = position
                self.cursor = max(self.cursor, page.positions[-1])
            self.cursor = max(self.cursor, page.reached)
            if not await self._drained(wire):
                return
            if not page.full:
                return

    @staticmethod
    def _open(wire: Wire | None) -> bool:
        """False once the connection is closing: sending would raise."""
        return wire is None or wire.open

    async def _drained(self, wire: Wire | None) -> bool:
        """Wait while the client is not reading; False once it stalls behind.

        Stalled behind: more than `STREAM_MAX_BUFFERED_EVENTS` events from
        the head of the log, with nothing taken from its buffer for
        `STREAM_POLL_SECONDS`. A client that keeps taking its frames, as one
        replaying a long log does, goes on, whatever the size of the events.
        """
        if wire is None:
            return True
        loop = asyncio.get_running_loop()
        limit = settings.STREAM_MAX_SEND_BUFFER_BYTES
        check_at, checked, taken, before = 0.0, False, False, None
        while (buffered := wire.buffered()) > limit:
            taken = taken or (before is not None and buffered < before)
            before = buffered
            if loop.time() >= check_at:
                check_at = loop.time() + settings.STREAM_POLL_SECONDS
                latest = await on_read_thread(event_latest_position)(
                    project_id=self.principal.project.pk
                )
                behind = latest - self.cursor
                if (
                    checked
                    and not taken
                    and behind > settings.STREAM_MAX_BUFFERED_EVENTS
                ):
                    await self._close(
                        CLOSE_LAGGING,
                        "lagging",
                        f"The client stopped reading more than "
                        f"{settings.STREAM_MAX_BUFFERED_EVENTS} events behind; "
                        f"reconnect with after={self.cursor}.",
                        position=self.cursor,
                    )
                    return False
                checked, taken = True, False
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
        if self.unsubscribe is not None:
            await self.unsubscribe()
            self.unsubscribe = None
