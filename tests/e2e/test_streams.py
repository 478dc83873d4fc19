"""Streams against real daphne processes and a real WebSocket client.

Every test ends by comparing what a client received with what the database
holds for its filter: same positions, same order, nothing twice.
"""

import asyncio
import json
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.stack import (
    Daphne,
    Http,
    Redis,
    base_env,
    fresh_database,
    manage,
    prepare,
)
from tests.utils import sqlite_only

# The streams' reads race writers on both databases; what a layer or a
# client does to a stream does not depend on the database (`sqlite_only`).
pytestmark = pytest.mark.slow


@contextmanager
def stack(tmp_path, count=1, **env_extra) -> Iterator[tuple[list[Daphne], str, dict]]:
    with fresh_database(tmp_path) as database_url:
        env = base_env(tmp_path, database_url, **env_extra)
        key = prepare(env)
        servers = []
        try:
            for i in range(count):
                servers.append(Daphne(env, tmp_path / f"daphne-{i}.log"))
            yield servers, key, env
        finally:
            for server in servers:
                server.stop()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _writers(
    port, key, *, threads, each, pause=0.0, **fields
) -> list[threading.Thread]:
    def run():
        api = Http(port, key)
        for _ in range(each):
            api.append(**fields)
            if pause:
                time.sleep(random.uniform(0, pause))

    started = [threading.Thread(target=run) for _ in range(threads)]
    for thread in started:
        thread.start()
    return started


async def _join(threads) -> None:
    await asyncio.to_thread(lambda: [t.join() for t in threads])


def _positions(frame: dict) -> list[int]:
    """Positions of an event frame or of a batch (`?batch=1`) frame."""
    if frame["type"] == "event":
        return [frame["position"]]
    if frame["type"] == "events":
        return [event["position"] for event in frame["events"]]
    return []


async def _read_until(ws, received: list[int], target: int, timeout=20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not received or received[-1] < target:
        left = deadline - asyncio.get_running_loop().time()
        assert left > 0, f"stuck at {received[-1:]} of {target}"
        received += _positions(json.loads(await asyncio.wait_for(ws.recv(), left)))


@sqlite_only
async def test_client_resuming_after_50_random_disconnects_ends_with_the_log(
    tmp_path,
):
    with stack(tmp_path) as ([server], key, _):
        writers = _writers(server.port, key, threads=2, each=150, pause=0.01)
        received: list[int] = []
        for _ in range(50):
            last = received[-1] if received else 0
            url = f"{server.ws_url}?after={last}"
            async with connect(url, additional_headers=_auth(key)) as ws:
                for _ in range(random.randint(0, 12)):
                    try:
                        frame = json.loads(await asyncio.wait_for(ws.recv(), 1))
                    except TimeoutError:
                        break
                    if frame["type"] == "event":
                        received.append(frame["position"])
                if random.random() < 0.5:
                    # Drop the TCP connection without a closing handshake.
                    ws.transport.abort()
            await asyncio.sleep(random.uniform(0, 0.05))
        await _join(writers)
        expected = Http(server.port, key).positions()
        last = received[-1] if received else 0
        async with connect(
            f"{server.ws_url}?after={last}", additional_headers=_auth(key)
        ) as ws:
            await _read_until(ws, received, expected[-1])
    assert len(expected) == 300
    assert received == expected


async def test_subscribing_while_8_writers_append_to_a_task_leaves_no_gap(tmp_path):
    task = str(uuid.uuid4())
    with stack(tmp_path) as ([server], key, _):
        writers = _writers(server.port, key, threads=8, each=40, task=task)

        async def subscriber(delay: float, batch: bool) -> list[int]:
            await asyncio.sleep(delay)
            received: list[int] = []
            url = f"{server.ws_url}?after=0&task={task}" + ("&batch=1" if batch else "")
            deadline = asyncio.get_running_loop().time() + 30
            async with connect(url, additional_headers=_auth(key)) as ws:
                while len(received) < 320:
                    # Heartbeats keep recv() answering: bound the whole wait.
                    left = deadline - asyncio.get_running_loop().time()
                    assert left > 0, f"stuck at {received[-1:]} of 320"
                    frame = json.loads(await asyncio.wait_for(ws.recv(), left))
                    assert frame["type"] != ("event" if batch else "events"), frame
                    received += _positions(frame)
            return received

        # Half the subscribers take one frame per event, half batches.
        results = await asyncio.gather(
            *(subscriber(random.uniform(0, 1.5), i % 2 == 1) for i in range(6))
        )
        await _join(writers)
        expected = Http(server.port, key).positions(f"&task={task}")
    assert len(expected) == 320
    for received in results:
        assert received == expected


@sqlite_only
async def test_every_subscriber_ends_complete_when_the_layer_drops_a_fifth(
    tmp_path,
):
    with stack(
        tmp_path,
        CHANNEL_LAYER_BACKEND="tests.e2e.lossy_layer.LossyInMemoryChannelLayer",
        CHANNEL_LAYER_DROP_RATE="0.2",
        STREAM_POLL_SECONDS="0.5",
    ) as ([server], key, _):
        sockets = [
            await connect(f"{server.ws_url}?after=0", additional_headers=_auth(key))
            for _ in range(5)
        ]
        writers = _writers(server.port, key, threads=4, each=50, pause=0.02)
        await _join(writers)
        expected = Http(server.port, key).positions()
        results = [[] for _ in sockets]
        await asyncio.gather(
            *(
                _read_until(ws, got, expected[-1])
                for ws, got in zip(sockets, results, strict=True)
            )
        )
        for ws in sockets:
            await ws.close()
    assert len(expected) == 200
    for received in results:
        assert received == expected


@sqlite_only
async def test_stalled_client_is_cut_off_and_never_holds_back_another(tmp_path):
    with stack(
        tmp_path,
        STREAM_MAX_SEND_BUFFER_BYTES="32768",
        STREAM_MAX_BUFFERED_EVENTS="200",
        STREAM_POLL_SECONDS="0.2",
    ) as ([server], key, _):
        url = f"{server.ws_url}?after=0&kind=e2e"
        # A client that stops reading: a small socket buffer, set before
        # connecting so the TCP window stays small, and websockets stops
        # taking frames from the socket while one waits unread. The log
        # outgrows what the kernel buffers (4 MB here) five times over.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        stalled = await connect(
            url, sock=sock, additional_headers=_auth(key), max_queue=1
        )
        follower = await connect(url, additional_headers=_auth(key))
        api = Http(server.port, key)
        item = {
            "type": "event",
            "data": {"kind": "e2e", "payload": {"pad": "x" * 10_000}},
        }

        def write() -> None:
            for _ in range(20):
                status, body = api.request(
                    "POST", "/api/v1/ingest/", {"items": [item] * 100}
                )
                assert status == 200, body

        received: list[int] = []

        async def follow() -> None:
            while len(received) < 2000:
                frame = json.loads(await asyncio.wait_for(follower.recv(), 20))
                received.extend(_positions(frame))

        await asyncio.gather(asyncio.to_thread(write), follow())
        await follower.close()
        expected = api.positions("&kind=e2e")
        # The server gave up on the stalled client: reading now finds part
        # of what was queued for it, then the end of the connection (a
        # client that cannot take the close frame in time is dropped).
        got: list[int] = []
        with pytest.raises(ConnectionClosed):
            while True:
                frame = json.loads(await asyncio.wait_for(stalled.recv(), 10))
                got += _positions(frame)
        assert 0 < len(got) < len(expected)
        # Resuming after the last position received completes the log.
        async with connect(
            f"{url.replace('after=0', f'after={got[-1]}')}",
            additional_headers=_auth(key),
        ) as ws:
            await _read_until(ws, got, expected[-1])
    assert len(expected) == 2000
    assert received == expected
    assert got == expected


def _rollback_then_commit() -> str:
    return """
from audit.journal import journaled
from audit.services import audit_custom_event_create
from swarmsite.models import Project
project = Project.objects.get(slug="default")
try:
    with journaled():
        audit_custom_event_create(project_id=project.pk, kind="rolled.back")
        raise RuntimeError("abort")
except RuntimeError:
    pass
audit_custom_event_create(project_id=project.pk, kind="committed")
"""


@sqlite_only
async def test_two_processes_share_streams_through_redis_and_survive_its_outage(
    tmp_path,
):
    redis = Redis(tmp_path)
    try:
        with stack(
            tmp_path,
            count=2,
            REDIS_URL=redis.url,
            STREAM_POLL_SECONDS="5",
            STREAM_HEARTBEAT_SECONDS="5",
        ) as ([a, b], key, env):
            api_a, api_b = Http(a.port, key), Http(b.port, key)
            url = f"{b.ws_url}?after=0"
            async with connect(url, additional_headers=_auth(key)) as ws:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert frame["type"] == "ready"
                received: list[int] = []

                # Written through A, delivered by B well before its 5 s poll,
                # and already readable over HTTP when the client gets it.
                for _ in range(5):
                    sent = await asyncio.to_thread(api_a.append)
                    started = time.monotonic()
                    await _read_until(ws, received, sent["position"], timeout=4)
                    assert time.monotonic() - started < 1.0
                    status, page = await asyncio.to_thread(
                        api_b.request,
                        "GET",
                        f"/api/v1/events/?after={sent['position'] - 1}",
                    )
                    assert status == 200
                    assert page["results"][0]["id"] == sent["id"]

                redis.stop()
                stopped = time.monotonic()
                while time.monotonic() - stopped < 10:
                    await asyncio.to_thread(api_a.append)
                    await asyncio.sleep(0.2)
                redis.start()
                for _ in range(5):
                    await asyncio.to_thread(api_a.append)
                expected = await asyncio.to_thread(api_b.positions)
                await _read_until(ws, received, expected[-1], timeout=20)
                assert received == expected

                # A rolled-back write never reaches the stream.
                await asyncio.to_thread(
                    manage, env, "shell", "-c", _rollback_then_commit()
                )
                kinds = []
                while "committed" not in kinds:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if frame["type"] == "event":
                        kinds.append(frame["kind"])
                assert kinds == ["committed"]
    except ConnectionClosed as exc:
        raise AssertionError(f"the stream closed: {exc}") from exc
    finally:
        redis.stop()
