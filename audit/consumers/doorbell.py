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
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from swarmsite.realtime import project_group

logger = logging.getLogger(__name__)

RETRY_SECONDS = 1.0

Ring = Callable[[dict[str, Any]], None]


class _Listener:
    """Joins a project's group, renews the membership, hands rings out."""

    def __init__(self, layer: Any, project_id: int) -> None:
        self.layer = layer
        self.group = project_group(project_id)
        self.streams: set[Ring] = set()
        self.channel: str | None = None
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        healthy = True
        renew_at = 0.0
        while True:
            try:
                if self.channel is None:
                    self.channel = await self.layer.new_channel()
                if loop.time() >= renew_at:
                    # Joins, or renews a membership Redis expires after a day
                    # or lost in a restart.
                    await self.layer.group_add(self.group, self.channel)
                    renew_at = loop.time() + settings.STREAM_HEARTBEAT_SECONDS
                    healthy = True
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(renew_at):
                        self._ring(await self.layer.receive(self.channel))
            except asyncio.CancelledError:
                raise
            except Exception:
                if healthy:
                    logger.warning(
                        "channel layer failed: %s", self.group, exc_info=True
                    )
                healthy = False
                renew_at = 0.0
                await asyncio.sleep(RETRY_SECONDS)

    def _ring(self, message: dict[str, Any]) -> None:
        for stream in list(self.streams):
            try:
                stream(message)
            except Exception:
                logger.exception("a stream failed to take a ring")

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        if self.channel is not None:
            try:
                await self.layer.group_discard(self.group, self.channel)
            except Exception:
                logger.debug("leaving %s failed", self.group, exc_info=True)


_listeners: dict[tuple, _Listener] = {}


def subscribe(*, project_id: int, on_ring: Ring) -> Callable[[], Awaitable[None]]:
    """Call `on_ring(message)` on the event loop for each ring of the project.

    Returns the coroutine function that unsubscribes; the last stream of a
    project ends its listener. Without a channel layer streams only poll.
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

    return unsubscribe


async def _nothing() -> None:
    return None
