"""`Client` and `AsyncClient`: every endpoint of the API as a method.

client = Client()                       # SWARMSITE_URL, SWARMSITE_API_KEY
task = client.tasks.create(title="Write the report")
client.tasks.transition(task["id"], status="running")
for task in client.tasks.list(status="running"):   # every page, lazily
    ...
for event in client.events.follow(after=0):        # live, for ever
    ...
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx

from swarmsite_client import errors
from swarmsite_client._core import (
    NOT_PROCESSED_STATUSES,
    RETRY_STATUSES,
    USER_AGENT,
    Call,
    RetryPolicy,
    decode,
    dumps,
    next_params,
    query,
    refuses_operation_id,
    resolve_key,
    resolve_url,
    retry_after_seconds,
)
from swarmsite_client.resources import (
    Agents,
    AuditLogs,
    Conversations,
    Events,
    Memories,
    Messages,
    Runs,
    Tasks,
    Workflows,
)

# Close codes after which reconnecting cannot help.
PERMANENT_CLOSE_CODES = {4400, 4401, 4403}
# An event can be as large as an API body.
STREAM_MAX_SIZE = 16 * 1024 * 1024
# The server sends a heartbeat at least every 15 s; silence for longer
# than this means the connection is dead even if TCP did not say so.
STREAM_SILENCE_SECONDS = 40.0

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class _Retry(Exception):
    def __init__(self, delay: float) -> None:
        self.delay = delay


class _Base:
    # Set by `Client` (blocking) and `AsyncClient` (asyncio).
    _events_class: type[Events]
    _http_class: type[httpx.Client] | type[httpx.AsyncClient]

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = resolve_url(url)
        self.api_key = resolve_key(api_key)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.api_key:
            self.headers["Authorization"] = f"Bearer {self.api_key}"
        self.headers.update(headers or {})
        # Endpoints whose server refused an operation `id` (before 1.1).
        self._no_operation_ids: set[str] = set()
        self.agents = Agents(self)
        self.tasks = Tasks(self)
        self.workflows = Workflows(self)
        self.conversations = Conversations(self)
        self.messages = Messages(self)
        self.runs = Runs(self)
        self.audit_logs = AuditLogs(self)
        self.memories = Memories(self)
        self.events = self._events_class(self)
        self._http = self._http_class(
            base_url=self.url, headers=self.headers, timeout=timeout
        )

    # -- one attempt's request and the decision after it --

    def _request_args(self, call: Call) -> dict[str, Any]:
        payload = call.json
        if (
            call.operation_endpoint in self._no_operation_ids
            and isinstance(payload, dict)
            and "id" in payload
        ):
            payload = {k: v for k, v in payload.items() if k != "id"}
        args: dict[str, Any] = {
            "method": call.method,
            "url": self._path(call.path),
            "params": call.params,
            "headers": call.headers or None,
        }
        if payload is not None:
            args["content"] = dumps(payload).encode()
            args["headers"] = {"Content-Type": "application/json", **call.headers}
        return args

    def _path(self, path: str) -> str:
        return path if path.startswith("/") else f"/api/v1/{path}"

    def _outcome(self, call: Call, attempt: int, waited: float, result: Any) -> Any:
        """What to do after an attempt: return a value, raise, or `_Retry`.

        `result` is an `httpx.Response` or the transport error.
        """
        retry_after = None
        if isinstance(result, httpx.TransportError):
            error: errors.SwarmsiteError = errors.ConnectionFailed(
                f"{type(result).__name__}: {result} ({self.url})"
            )
            retryable = isinstance(result, _NOT_SENT) or call.idempotent
        else:
            response: httpx.Response = result
            status = response.status_code
            if status < 400:
                return None if status == 204 else decode(response.content)
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            error = errors.error_from_body(
                decode(response.content),
                status=status,
                retry_after=retry_after,
                request_id=response.headers.get("X-Request-ID"),
            )
            if (
                call.missing_ok_on_retry
                and attempt > 1
                and isinstance(error, errors.NotFound)
            ):
                return None
            if (
                call.operation_endpoint
                and call.operation_endpoint not in self._no_operation_ids
                and refuses_operation_id(error)
            ):
                self._no_operation_ids.add(call.operation_endpoint)
                raise _Retry(0.0)
            retryable = status in NOT_PROCESSED_STATUSES or (
                status in RETRY_STATUSES and call.idempotent
            )
        if not retryable or attempt >= self.retry.max_attempts:
            raise error
        delay = self.retry.delay(attempt, retry_after)
        if waited + delay > self.retry.total:
            raise error
        raise _Retry(delay)

    def _stream_url(
        self,
        after: int | None,
        task: Any,
        conversation: Any,
        kind: Any,
        batch: bool,
    ) -> str:
        base = self.url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        params = query(
            after=after,
            task=task,
            conversation=conversation,
            kind=kind,
            batch=1 if batch else None,
        )
        return f"{base}/ws/v1/events/?{urlencode(params, doseq=True)}"


def _frame_events(frame: dict) -> tuple[list[dict], int | None]:
    """Events of a stream frame, and a position the stream is complete to."""
    kind = frame.get("type")
    if kind == "event":
        return [frame], None
    if kind == "events":
        return list(frame.get("events") or []), None
    if kind in ("heartbeat", "ready", "pong") and isinstance(
        frame.get("position"), int
    ):
        return [], frame["position"]
    return [], None


def _close_code(exc: BaseException) -> int | None:
    for attr in ("rcvd", "sent"):
        close = getattr(exc, attr, None)
        if close is not None and getattr(close, "code", None):
            return close.code
    return None


class _ReconnectDelay:
    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self.first, self.cap, self.current = first, cap, first

    def next(self) -> float:
        delay = random.uniform(self.current / 2, self.current)
        self.current = min(self.cap, self.current * 2)
        return delay

    def reset(self) -> None:
        self.current = self.first


class _Follow:
    """One `follow()`'s state across reconnections, for the sync and the
    async loop alike: the position to resume from and the next delay."""

    def __init__(
        self,
        client: _Base,
        after: int | None,
        filters: tuple[Any, Any, Any, bool],
        heartbeats: bool,
    ) -> None:
        # `filters`: task, conversation, kind and batch, for `_stream_url`.
        self.client = client
        self.position = after
        self.filters = filters
        self.heartbeats = heartbeats
        self.delay = _ReconnectDelay()

    def connect_args(self) -> dict[str, Any]:
        """What `websockets`' `connect()` takes, resuming at the position."""
        key = self.client.api_key
        return {
            "uri": self.client._stream_url(self.position, *self.filters),
            "additional_headers": {"Authorization": f"Bearer {key}"} if key else {},
            "max_size": STREAM_MAX_SIZE,
            "open_timeout": 10,
            "user_agent_header": USER_AGENT,
        }

    def received(self, raw: str | bytes) -> list[dict]:
        """What to yield for one frame; the position moves past it."""
        frame = json.loads(raw)
        events, complete = _frame_events(frame)
        out = [{k: v for k, v in event.items() if k != "type"} for event in events]
        if out:
            self.position = out[-1]["position"]
        if complete is not None:
            self.delay.reset()
            if self.position is None or complete > self.position:
                self.position = complete
            if self.heartbeats and frame.get("type") in ("heartbeat", "ready"):
                out.append({"type": frame["type"], "position": complete})
        return out

    def failed(self, exc: Exception) -> None:
        """Raise `StreamClosed` if reconnecting after `exc` cannot help."""
        from websockets.exceptions import InvalidStatus

        if isinstance(exc, InvalidStatus):
            status = exc.response.status_code
            if status in (401, 403):
                raise errors.StreamClosed(
                    f"The stream refused the handshake: HTTP {status}",
                    status=status,
                ) from exc
            return
        code = _close_code(exc)
        if code in PERMANENT_CLOSE_CODES:
            raise errors.StreamClosed(
                f"The stream closed with {code}: "
                f"{getattr(getattr(exc, 'rcvd', None), 'reason', '')}",
                status=code,
            ) from exc


class SyncEvents(Events):
    def follow(
        self,
        *,
        after: int | None = 0,
        task: Any = None,
        conversation: Any = None,
        kind: Any = None,
        batch: bool = True,
        heartbeats: bool = False,
    ) -> Iterator[dict]:
        """Yield events from the WebSocket stream for ever, in position order.

        After any failure (server restart, network, lagging) it reconnects
        with the last position it yielded, so the consumer sees exactly the
        database's sequence for the filter. `after=None` starts at the
        latest position. With `heartbeats=True` it also yields
        `{"type": "ready" | "heartbeat", "position": P}` on each connection
        and heartbeat (to tell a quiet stream from a dead one).
        Raises `StreamClosed` on 4400/4401/4403 (bad query, key or filter).
        """
        from websockets.exceptions import WebSocketException
        from websockets.sync.client import connect

        stream = _Follow(self._c, after, (task, conversation, kind, batch), heartbeats)
        while True:
            try:
                with connect(**stream.connect_args()) as ws:
                    while True:
                        raw = ws.recv(timeout=STREAM_SILENCE_SECONDS)
                        yield from stream.received(raw)
            except (WebSocketException, OSError, TimeoutError, ValueError) as exc:
                stream.failed(exc)
            time.sleep(stream.delay.next())


class AsyncEvents(Events):
    async def follow(
        self,
        *,
        after: int | None = 0,
        task: Any = None,
        conversation: Any = None,
        kind: Any = None,
        batch: bool = True,
        heartbeats: bool = False,
    ) -> AsyncIterator[dict]:
        """The async twin of `Client.events.follow`."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        stream = _Follow(self._c, after, (task, conversation, kind, batch), heartbeats)
        while True:
            try:
                async with connect(**stream.connect_args()) as ws:
                    while True:
                        raw = await asyncio.wait_for(ws.recv(), STREAM_SILENCE_SECONDS)
                        for item in stream.received(raw):
                            yield item
            except (WebSocketException, OSError, TimeoutError, ValueError) as exc:
                stream.failed(exc)
            await asyncio.sleep(stream.delay.next())


class Client(_Base):
    """Blocking client; thread-safe (one connection pool)."""

    _events_class = SyncEvents
    _http_class = httpx.Client
    events: SyncEvents
    _http: httpx.Client

    def _call(self, call: Call) -> Any:
        attempt, waited = 0, 0.0
        while True:
            attempt += 1
            try:
                result: Any = self._http.request(**self._request_args(call))
            except httpx.TransportError as exc:
                result = exc
            try:
                return self._outcome(call, attempt, waited, result)
            except _Retry as retry:
                if retry.delay:
                    time.sleep(retry.delay)
                    waited += retry.delay
                else:
                    attempt -= 1

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[dict]:
        def walk() -> Iterator[dict]:
            page_params: dict[str, Any] | None = params
            while page_params is not None:
                page = self._call(Call("GET", path, params=page_params))
                if isinstance(page, list):
                    yield from page
                    return
                yield from page.get("results", [])
                page_params = next_params(page.get("next"))

        return walk()

    def ingest(self, items: list[dict]) -> dict:
        """POST `{"items": items}` to `ingest/`: the per-item results (200 or
        207 both answer the body; look at each result's `status`)."""
        return self._call(Call("POST", "ingest/", json={"items": items}))

    def stats(self, *, since: Any = None, until: Any = None) -> dict:
        return self._call(Call("GET", "stats/", params=query(since=since, until=until)))

    def health(self) -> dict:
        """`/readyz`: 200 when the database answers (raises Unavailable if not)."""
        return self._call(Call("GET", "/readyz"))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Base):
    """The asyncio twin of `Client`: `await client.tasks.create(...)`,
    `async for task in client.tasks.list(...)`."""

    _events_class = AsyncEvents
    _http_class = httpx.AsyncClient
    events: AsyncEvents
    _http: httpx.AsyncClient

    async def _call(self, call: Call) -> Any:
        attempt, waited = 0, 0.0
        while True:
            attempt += 1
            try:
                result: Any = await self._http.request(**self._request_args(call))
            except httpx.TransportError as exc:
                result = exc
            try:
                return self._outcome(call, attempt, waited, result)
            except _Retry as retry:
                if retry.delay:
                    await asyncio.sleep(retry.delay)
                    waited += retry.delay
                else:
                    attempt -= 1

    def _pages(self, path: str, params: dict[str, Any]) -> AsyncIterator[dict]:
        async def walk() -> AsyncIterator[dict]:
            page_params: dict[str, Any] | None = params
            while page_params is not None:
                page = await self._call(Call("GET", path, params=page_params))
                if isinstance(page, list):
                    for item in page:
                        yield item
                    return
                for item in page.get("results", []):
                    yield item
                page_params = next_params(page.get("next"))

        return walk()

    async def ingest(self, items: list[dict]) -> dict:
        return await self._call(Call("POST", "ingest/", json={"items": items}))

    async def stats(self, *, since: Any = None, until: Any = None) -> dict:
        return await self._call(
            Call("GET", "stats/", params=query(since=since, until=until))
        )

    async def health(self) -> dict:
        return await self._call(Call("GET", "/readyz"))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
