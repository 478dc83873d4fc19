import asyncio

import pytest
from channels.layers import InMemoryChannelLayer, get_channel_layer

from streams import doorbell
from swarmsite.realtime import project_group


class DownLayer(InMemoryChannelLayer):
    """The in-memory layer, never reachable for joins."""

    async def group_add(self, group, channel):
        raise ConnectionError("layer down")


class FailingFirstLayer(InMemoryChannelLayer):
    """The in-memory layer, unreachable for its first `failures` joins."""

    failures = 2

    async def group_add(self, group, channel):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("layer down")
        await super().group_add(group, channel)


@pytest.fixture(autouse=True)
def in_memory_layer(settings):
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    }
    settings.STREAM_HEARTBEAT_SECONDS = 30
    return settings


class Stream:
    """Collects the rings it is handed."""

    def __init__(self) -> None:
        self.rings: list[dict] = []
        self.rung = asyncio.Event()

    def __call__(self, message: dict) -> None:
        self.rings.append(message)
        self.rung.set()

    async def next(self, timeout: float = 2.0) -> dict:
        await asyncio.wait_for(self.rung.wait(), timeout)
        self.rung.clear()
        return self.rings[-1]


async def _joined(project_id: int, members: int = 1) -> set[str]:
    """The group's channels, once `members` of them have joined."""
    layer = get_channel_layer()
    for _ in range(100):
        channels = set(layer.groups.get(project_group(project_id), {}))
        if len(channels) == members:
            return channels
        await asyncio.sleep(0.01)
    raise AssertionError(f"{members} member(s) never joined: {channels}")


async def _ring(project_id: int, position: int) -> None:
    await get_channel_layer().group_send(
        project_group(project_id), {"type": "events_appended", "position": position}
    )


async def test_streams_of_a_project_share_one_channel_and_all_get_each_ring():
    streams = [Stream() for _ in range(3)]
    leaves = [await doorbell.subscribe(project_id=7, on_ring=s) for s in streams]
    assert len(await _joined(7)) == 1
    await _ring(7, 5)
    assert [(await s.next())["position"] for s in streams] == [5, 5, 5]
    for leave in leaves:
        await leave()


async def test_a_ring_of_another_project_reaches_no_stream():
    mine, theirs = Stream(), Stream()
    leave_mine = await doorbell.subscribe(project_id=1, on_ring=mine)
    leave_theirs = await doorbell.subscribe(project_id=2, on_ring=theirs)
    await _joined(1)
    await _joined(2)
    await _ring(2, 9)
    assert (await theirs.next())["position"] == 9
    await asyncio.sleep(0.05)
    assert mine.rings == []
    await leave_mine()
    await leave_theirs()


async def test_the_last_stream_to_leave_takes_the_channel_out_of_the_group():
    first, second = Stream(), Stream()
    leave_first = await doorbell.subscribe(project_id=3, on_ring=first)
    leave_second = await doorbell.subscribe(project_id=3, on_ring=second)
    await _joined(3)
    await leave_first()
    assert len(await _joined(3)) == 1
    await _ring(3, 1)
    assert (await second.next())["position"] == 1
    await leave_second()
    assert await _joined(3, members=0) == set()
    assert not any(key[2] == 3 for key in doorbell._listeners)


async def test_a_stream_that_raises_does_not_keep_rings_from_the_others():
    def broken(message: dict) -> None:
        raise RuntimeError("bug in a stream")

    stream = Stream()
    leave_broken = await doorbell.subscribe(project_id=4, on_ring=broken)
    leave = await doorbell.subscribe(project_id=4, on_ring=stream)
    await _joined(4)
    await _ring(4, 2)
    assert (await stream.next())["position"] == 2
    await _ring(4, 3)
    assert (await stream.next())["position"] == 3
    await leave_broken()
    await leave()


async def test_listener_joins_once_the_layer_is_reachable(in_memory_layer, monkeypatch):
    in_memory_layer.CHANNEL_LAYERS = {
        "default": {"BACKEND": f"{__name__}.FailingFirstLayer"}
    }
    monkeypatch.setattr(doorbell, "RETRY_SECONDS", 0.05)
    stream = Stream()
    leave = await doorbell.subscribe(project_id=5, on_ring=stream)
    await _joined(5)
    assert get_channel_layer().failures == 0
    await _ring(5, 4)
    assert (await stream.next())["position"] == 4
    await leave()


async def test_listener_renews_a_membership_the_layer_lost(in_memory_layer):
    in_memory_layer.STREAM_HEARTBEAT_SECONDS = 0.1
    stream = Stream()
    leave = await doorbell.subscribe(project_id=6, on_ring=stream)
    (channel,) = await _joined(6)
    # As after a Redis restart: the group is gone.
    await get_channel_layer().group_discard(project_group(6), channel)
    assert await _joined(6) == {channel}
    await _ring(6, 8)
    assert (await stream.next())["position"] == 8
    await leave()


async def test_without_a_channel_layer_subscribing_does_nothing(in_memory_layer):
    in_memory_layer.CHANNEL_LAYERS = {}
    leave = await doorbell.subscribe(project_id=1, on_ring=Stream())
    assert doorbell._listeners == {}
    await leave()


async def test_subscribe_returns_once_the_process_is_in_the_group():
    stream = Stream()
    leave = await doorbell.subscribe(project_id=8, on_ring=stream)
    # No wait: a commit right after subscribing rings this stream.
    assert len(get_channel_layer().groups[project_group(8)]) == 1
    await _ring(8, 1)
    assert (await stream.next())["position"] == 1
    await leave()


async def test_subscribe_gives_up_waiting_for_a_layer_that_is_down(
    in_memory_layer, monkeypatch
):
    in_memory_layer.CHANNEL_LAYERS = {"default": {"BACKEND": f"{__name__}.DownLayer"}}
    monkeypatch.setattr(doorbell, "JOIN_WAIT_SECONDS", 0.1)
    monkeypatch.setattr(doorbell, "RETRY_SECONDS", 0.02)
    began = asyncio.get_running_loop().time()
    leave = await doorbell.subscribe(project_id=9, on_ring=Stream())
    assert asyncio.get_running_loop().time() - began < 1.0
    assert project_group(9) not in get_channel_layer().groups
    await leave()
    assert doorbell._listeners == {}
