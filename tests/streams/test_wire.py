import functools

import pytest
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.abstract import FileDescriptor
from twisted.internet.testing import MemoryReactor, StringTransport
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from streams.wire import WIRE_SCOPE_KEY, DaphneWire, text_frame

HANDSHAKE = (
    b"GET /ws/v1/events/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


def _parse(data: bytes) -> list[Frame]:
    """Frames as a client library reads them."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=False)
        with pytest.raises(StopIteration) as done:
            next(parser)
        frames.append(done.value.value)
    return frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_text_frame_is_read_back_by_a_client_at_every_length_encoding(size):
    payload = "é" * (size // 2) + "x" * (size % 2)
    frames = _parse(text_frame(payload) + text_frame("next"))
    assert [(f.opcode, f.fin) for f in frames] == [(Opcode.TEXT, True)] * 2
    assert [f.data.decode() for f in frames] == [payload, "next"]


def _open_protocol() -> tuple[WebSocketServerProtocol, StringTransport]:
    """autobahn's server protocol past a real opening handshake."""
    factory = WebSocketServerFactory("ws://127.0.0.1")
    factory.protocol = WebSocketServerProtocol
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(HANDSHAKE)
    assert protocol.state == protocol.STATE_OPEN
    transport.clear()
    return protocol, transport


async def _wire_of(protocol):
    scopes = []

    async def app(scope, receive, send):
        scopes.append(scope)

    # As daphne calls its application: `send` is partial(handle_reply, protocol).
    send = functools.partial(lambda protocol, message: None, protocol)
    await DaphneWire(app)({"type": "websocket"}, None, send)
    return scopes[0].get(WIRE_SCOPE_KEY)


async def test_wire_writes_frames_to_an_open_connection_in_one_write():
    protocol, transport = _open_protocol()
    wire = await _wire_of(protocol)
    framed = text_frame('{"a":1}') + text_frame('{"b":2}')
    assert wire.write(framed)
    assert transport.value() == framed
    assert [f.data for f in _parse(transport.value())] == [b'{"a":1}', b'{"b":2}']


async def test_wire_declines_a_closing_connection():
    protocol, transport = _open_protocol()
    wire = await _wire_of(protocol)
    assert wire.open
    protocol.sendClose(code=1000)
    transport.clear()
    assert not wire.open
    assert not wire.write(text_frame("late"))
    assert transport.value() == b""


class SlowSocketTransport(FileDescriptor):
    """Twisted's own write buffering, over a socket that takes 50 bytes a write."""

    def writeSomeData(self, data: bytes) -> int:
        return min(len(data), 50)


async def test_wire_reports_what_the_socket_has_not_taken():
    protocol, _ = _open_protocol()
    protocol.transport = SlowSocketTransport(reactor=MemoryReactor())
    protocol.transport.connected = True
    wire = await _wire_of(protocol)
    assert wire.buffered() == 0
    protocol.transport.write(b"x" * 100)
    protocol.transport.write(b"y" * 20)
    assert wire.buffered() == 120
    protocol.transport.doWrite()
    assert wire.buffered() == 70
