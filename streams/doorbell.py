"""One channel-layer subscription per process and project, rung to its streams.

With a channel per connection, every ring costs one channel-layer message
per subscriber: a hundred Redis messages per commit for a hundred
subscribers, or with the in-memory layer a deep copy and a scan of every
channel per receive. Here one listener per event loop, layer and project
joins the project's group and hands each ring to the streams of the process.

A ring is only a hint: streams re-read the log on their own schedule too,
so a ring lost while the layer is down delays delivery and loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from swarmsite.realtime import project_group

logger = logging.getLogger(__name__)

RETRY_SECONDS = 1.0
# How long a new stream waits for its process to join the group, so that a
# commit right after it reads the head still rings it; a layer that is down
# only delays the stream by this much (it polls meanwhile).
JOIN_WAIT_SECONDS = 1.0

Ring = Callable[[dict[str, Any]], None]


class _Listener:
    """Joins a project's group, renews the membership, hands rings out."""

    def __init__(self, layer: Any, project_id: int) -> None:
        self.layer = layer
        self.group = project_group(project_id)
        self.streams: set[Ring] = set()
        self.channel: str | None = None
        self.joined = asyncio.Event()
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        self.channel = await self.layer.new_channel()
        # Two loops: renewing must not cancel a receive, which channels_redis
        # cannot always do without losing a message.
        await asyncio.gather(self._membership(), self._receive())

    async def _membership(self) -> None:
        """Join, then renew: Redis expires a membership after a day, and
        forgets it in a restart without persistence."""
        failing = False
        while True:
            try:
                await self.layer.group_add(self.group, self.channel)
            except Exception:
                if not failing:
                    logger.warning("joining %s failed", self.group, exc_info=True)
                failing = True
                await asyncio.sleep(RETRY_SECONDS)
                continue
            failing = False
            self.joined.set()
            await asyncio.sleep(settings.STREAM_HEARTBEAT_SECONDS)

    async def _receive(self) -> None:
        failing = False
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except Exception:
                if not failing:
                    logger.warning("receiving for %s failed", self.group, exc_info=True)
                failing = True
                await asyncio.sleep(RETRY_SECONDS)
                continue
            failing = False
            self._ring(message)

    def _ring(self, message: dict[str, Any]) -> None:
        for stream in list(self.streams):
            try:
                stream(message)
            except Exception:
                logger.exception("a stream failed to take a ring")

    async def stop(self) -> None:
        self.task.cancel()
        # Not `await self.task`: its CancelledError would hide one of ours.
        await asyncio.wait([self.task])
        if self.channel is not None:
            try:
                await self.layer.group_discard(self.group, self.channel)
            except Exception:
                logger.debug("leaving %s failed", self.group, exc_info=True)


_listeners: dict[tuple, _Listener] = {}


async def subscribe(*, project_id: int, on_ring: Ring) -> Callable[[], Awaitable[None]]:
    """Call `on_ring(message)` on the event loop for each ring of the project.

    Returns once the process is in the project's group (or after
    `JOIN_WAIT_SECONDS` if the layer is down), with the coroutine function
    that unsubscribes; the last stream of a project ends its listener.
    Without a channel layer streams only poll.
    """
    layer = get_channel_layer()
    if layer is None:
        return _nothing
    key = (asyncio.get_running_loop(), id(layer), project_id)
    listener = _listeners.get(key)
    if listener is None:
        listener = _listeners[key] = _Listener(layer, project_id)
    listener.streams.add(on_ring)

    async def unsubscribe() -> None:
        listener.streams.discard(on_ring)
        if not listener.streams and _listeners.get(key) is listener:
            del _listeners[key]
            await listener.stop()

    try:
        async with asyncio.timeout(JOIN_WAIT_SECONDS):
            await listener.joined.wait()
    except TimeoutError:
        pass
    except asyncio.CancelledError:
        await unsubscribe()
        raise
    return unsubscribe


async def _nothing() -> None:
    return None
