"""A WebSocket connection's own line to its client under daphne.

ASGI has one `websocket.send` per frame, and under daphne each one costs
about 50 µs of Python (the session wrapper, daphne, autobahn's eager log
formatting): a stream of 100 subscribers at 1,000 events a second is
100,000 frames a second, more than a whole core. Server frames are not
masked, so a page of events can be framed once and the same bytes written
to every connection that follows it, one transport write per connection.

`DaphneWire` gives each WebSocket scope a `Wire` under `WIRE_SCOPE_KEY`.
It reads daphne's and autobahn's own attributes, so it needs a check on
each upgrade of either; where they are missing, or under another server,
the scope has no wire and consumers send through ASGI as usual.
"""

from __future__ import annotations

import functools
import struct
from typing import Any

WIRE_SCOPE_KEY = "swarmsite.wire"

_FIN_TEXT = 0x81


def text_frame(payload: str) -> bytes:
    """`payload` as one final, unmasked WebSocket text frame (RFC 6455 §5.2)."""
    data = payload.encode()
    size = len(data)
    if size <= 125:
        header = struct.pack("!BB", _FIN_TEXT, size)
    elif size <= 0xFFFF:
        header = struct.pack("!BBH", _FIN_TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", _FIN_TEXT, 127, size)
    return header + data


class Wire:
    """The send side of one daphne WebSocket connection."""

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.transport = protocol.transport

    def buffered(self) -> int:
        """Bytes written and not yet taken by the client's socket.

        daphne queues whatever the application sends without limit
        (django/daphne#170); this is the size of that queue in a Twisted TCP
        transport, and 0 in a transport without one.
        """
        transport = self.transport
        return (
            len(getattr(transport, "dataBuffer", b""))
            - getattr(transport, "offset", 0)
            + getattr(transport, "_tempDataLen", 0)
        )

    @property
    def open(self) -> bool:
        """False once closing: autobahn then refuses frames, ASGI's included."""
        return self.protocol.state == self.protocol.STATE_OPEN

    def write(self, frames: bytes) -> bool:
        """Write already framed bytes; False when only ASGI `send` may be used.

        That is when the connection is not open, when a compression
        extension was negotiated (frames would need deflating), or when
        autobahn queues frames of its own, which must go first.
        """
        protocol = self.protocol
        if (
            not self.open
            or getattr(protocol, "_perMessageCompress", None) is not None
            or getattr(protocol, "send_queue", None)
        ):
            return False
        self.transport.write(frames)
        return True


def _daphne_protocol(send: Any) -> Any:
    """The autobahn protocol behind daphne's `send`, or None."""
    if not isinstance(send, functools.partial) or not send.args:
        return None
    protocol = send.args[0]
    needed = ("transport", "state", "STATE_OPEN")
    return protocol if all(hasattr(protocol, name) for name in needed) else None


class DaphneWire:
    """ASGI middleware: a `Wire` in the scope of daphne's WebSocket connections.

    daphne's `send` is `partial(server.handle_reply, protocol)`; the protocol
    is autobahn's, over a Twisted transport.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        protocol = _daphne_protocol(send)
        if protocol is not None:
            scope = {**scope, WIRE_SCOPE_KEY: Wire(protocol)}
        return await self.app(scope, receive, send)
