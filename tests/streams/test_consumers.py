import asyncio
import json
import threading
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, connections, transaction

from audit.journal import journaled
from audit.models import Event
from audit.serializers import EventSerializer
from audit.services import audit_custom_event_create
from streams import pages
from streams.wire import WIRE_SCOPE_KEY
from swarmsite import metrics
from swarmsite.asgi import application
from swarmsite.services import api_key_create
from tasks.services import task_create

pytestmark = pytest.mark.django_db(transaction=True)

PATH = "/ws/v1/events/"


@pytest.fixture(autouse=True)
def stream_settings(settings):
    # Polling rarely, so that live delivery in these tests proves the ring.
    settings.STREAM_POLL_SECONDS = 30
    settings.STREAM_HEARTBEAT_SECONDS = 30
    settings.STREAM_AUTH_TIMEOUT_SECONDS = 0.3
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    }
    return settings


@pytest.fixture(autouse=True)
async def close_sync_thread_connections():
    """Close what the tests' sync thread opened, so the test database can go.

    `channels.testing` turns `close_old_connections` into a no-op while an
    application runs, so reads on that thread keep their connection open.
    """
    yield
    await database_sync_to_async(connections.close_all)()


def _secret(project, *, scopes=("read",), name="stream") -> str:
    return api_key_create(project=project, name=name, scopes=list(scopes))[1]


def _bearer(secret: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {secret}".encode())]


def _note(project, *, kind="note", task_id=None, conversation_id=None) -> Event:
    return audit_custom_event_create(
        project_id=project.pk,
        kind=kind,
        task_id=task_id,
        conversation_id=conversation_id,
        payload={"n": 1},
    )


note = database_sync_to_async(_note)


async def _open(path=PATH, headers=(), app=application):
    communicator = WebsocketCommunicator(app, path, headers=list(headers))
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def _next(communicator, timeout=2.0) -> dict:
    return json.loads(await communicator.receive_from(timeout))


async def _ready(communicator) -> int:
    frame = await _next(communicator)
    assert frame["type"] == "ready", frame
    return frame["position"]


async def _events(communicator, count, timeout=3.0) -> list[dict]:
    """The next `count` events, whether sent one a frame or in batches."""
    found = []
    while len(found) < count:
        frame = await _next(communicator, timeout)
        assert frame["type"] in ("event", "events", "heartbeat"), frame
        if frame["type"] == "event":
            found.append(frame)
        elif frame["type"] == "events":
            found += frame["events"]
    return found


async def _batches(communicator, count, timeout=3.0) -> list[list[dict]]:
    """Batch frames until `count` events came; a single-event frame fails."""
    found: list[list[dict]] = []
    while sum(map(len, found)) < count:
        frame = await _next(communicator, timeout)
        assert frame["type"] in ("events", "heartbeat"), frame
        if frame["type"] == "events":
            assert frame["events"], frame
            found.append(frame["events"])
    return found


async def _closed_with(communicator, code, timeout=2.0) -> dict | None:
    """The error sent before the close, with the frame's other keys."""
    error = None
    while True:
        output = await communicator.receive_output(timeout)
        if output["type"] == "websocket.close":
            assert output.get("code") == code, (output, error)
            return error
        frame = json.loads(output["text"])
        if frame["type"] == "error":
            extra = {k: v for k, v in frame.items() if k not in ("type", "error")}
            error = {**frame["error"], **extra}


async def test_bearer_header_replays_stored_events_after_position_then_ready(
    project,
):
    first = await note(project)
    second = await note(project)
    communicator = await _open(
        f"{PATH}?after={first.position - 1}",
        _bearer(await database_sync_to_async(_secret)(project)),
    )
    assert await _ready(communicator) == first.position - 1
    frames = await _events(communicator, 2)
    assert [f["position"] for f in frames] == [first.position, second.position]
    assert frames[0]["id"] == str(first.uuid)
    assert {"kind", "task", "conversation", "actor", "payload", "occurred_at"} <= set(
        frames[0]
    )
    await communicator.disconnect()


async def test_replay_then_live_sends_each_event_once_in_position_order(project):
    stored = [await note(project) for _ in range(3)]
    secret = await database_sync_to_async(_secret)(project)
    communicator = await _open(f"{PATH}?after=0", _bearer(secret))
    await _ready(communicator)
    live = [await note(project) for _ in range(3)]
    frames = await _events(communicator, 6)
    assert [f["position"] for f in frames] == [e.position for e in stored + live]
    assert await communicator.receive_nothing(0.3)
    await communicator.disconnect()


async def test_without_after_the_stream_starts_at_the_latest_position(project):
    old = await note(project)
    secret = await database_sync_to_async(_secret)(project)
    communicator = await _open(PATH, _bearer(secret))
    assert await _ready(communicator) == old.position
    new = await note(project)
    assert [f["position"] for f in await _events(communicator, 1)] == [new.position]
    await communicator.disconnect()


async def test_first_message_token_authenticates(project):
    event = await note(project)
    secret = await database_sync_to_async(_secret)(project)
    communicator = await _open(f"{PATH}?after=0")
    await communicator.send_json_to({"type": "auth", "token": secret})
    await _ready(communicator)
    assert (await _events(communicator, 1))[0]["position"] == event.position
    await communicator.disconnect()


async def test_staff_session_cookie_streams_the_default_project(project, staff_client):
    event = await note(project)
    cookie = f"sessionid={staff_client.cookies['sessionid'].value}"
    communicator = await _open(f"{PATH}?after=0", [(b"cookie", cookie.encode())])
    await _ready(communicator)
    assert (await _events(communicator, 1))[0]["position"] == event.position
    await communicator.disconnect()


async def test_no_credentials_within_the_deadline_closes_4401(project):
    communicator = await _open(f"{PATH}?after=0")
    error = await _closed_with(communicator, 4401, timeout=2)
    assert error["code"] == "not_authenticated"


@pytest.mark.parametrize(
    "header",
    [b"Bearer ss_deadbeef_wrong", b"Token abc", b"Bearer"],
)
async def test_bad_authorization_header_closes_4401(project, header):
    communicator = await _open(f"{PATH}?after=0", [(b"authorization", header)])
    await _closed_with(communicator, 4401)


@pytest.mark.parametrize(
    "message",
    ['{"type": "auth", "token": "ss_deadbeef_wrong"}', '{"type": "ping"}', "not json"],
)
async def test_bad_first_message_closes_4401(project, message):
    communicator = await _open(f"{PATH}?after=0")
    await communicator.send_to(text_data=message)
    await _closed_with(communicator, 4401)


async def test_revoked_key_closes_4401(project):
    from swarmsite.models import ApiKey
    from swarmsite.services import api_key_revoke

    secret = await database_sync_to_async(_secret)(project)
    key = await ApiKey.objects.aget(prefix=secret.split("_")[1])
    await database_sync_to_async(api_key_revoke)(key=key)
    communicator = await _open(PATH, _bearer(secret))
    await _closed_with(communicator, 4401)


async def test_key_without_read_scope_closes_4403(project):
    secret = await database_sync_to_async(_secret)(project, scopes=("write",))
    communicator = await _open(PATH, _bearer(secret))
    error = await _closed_with(communicator, 4403)
    assert error["code"] == "permission_denied"


async def test_filter_naming_another_projects_task_closes_4403(project, other_project):
    foreign = await database_sync_to_async(task_create)(
        project=other_project, title="not yours"
    )
    secret = await database_sync_to_async(_secret)(project)
    communicator = await _open(f"{PATH}?task={foreign[0].pk}", _bearer(secret))
    error = await _closed_with(communicator, 4403)
    assert str(foreign[0].pk) in error["message"]


async def test_events_of_another_project_are_never_streamed(project, other_project):
    await note(other_project)
    mine = await note(project)
    secret = await database_sync_to_async(_secret)(project)
    communicator = await _open(f"{PATH}?after=0", _bearer(secret))
    await _ready(communicator)
    assert [f["position"] for f in await _events(communicator, 1)] == [mine.position]
    assert await communicator.receive_nothing(0.3)
    await communicator.disconnect()


async def test_origin_of_an_unknown_site_is_refused_before_accept(project):
    communicator = WebsocketCommunicator(
        application, PATH, headers=[(b"origin", b"https://evil.example")]
    )
    connected, _ = await communicator.connect()
    assert not connected


async def test_origin_of_an_allowed_host_is_accepted(project):
    secret = await database_sync_to_async(_secret)(project)
    headers = [(b"origin", b"http://localhost:3000"), *_bearer(secret)]
    communicator = await _open(PATH, headers)
    await _ready(communicator)
    await communicator.disconnect()


async def test_task_filter_streams_only_that_tasks_events(project):
    task_a = uuid.uuid4()
    task_b = uuid.uuid4()
    await note(project, task_id=task_b)
    wanted = await note(project, task_id=task_a)
    secret = await database_sync_to_async(_secret)(project)
    communicator = await _open(f"{PATH}?after=0&task={task_a}", _bearer(secret))
    await _ready(communicator)
    await note(project, task_id=task_b)
    live = await note(project, task_id=task_a)
    frames = await _events(communicator, 2)
    assert [f["position"] for f in frames] == [wanted.position, live.position]
    assert {f["task"] for f in frames} == {str(task_a)}
    await communicator.disconnect()


async def test_conversation_and_kind_filters_combine(project):
    conv = uuid.uuid4()
    await note(project, conversation_id=conv, kind="other")
    await note(project, kind="wanted")
    wanted = await note(project, conversation_id=conv, kind="wanted")
    secret = await database_sync_to_async(_secret)(project)
    query = f"?after=0&conversation={conv}&kind=wanted&kind=extra"
    communicator = await _open(PATH + query, _bearer(secret))
    await _ready(communicator)
    frames = await _events(communicator, 1)
    assert [f["position"] for f in frames] == [wanted.position]
    assert await communicator.receive_nothing(0.3)
    await communicator.disconnect()


async def test_heartbeat_carries_the_latest_position_even_when_filtered_out(
    project, stream_settings
):
    stream_settings.STREAM_HEARTBEAT_SECONDS = 0.2
    stream_settings.STREAM_POLL_SECONDS = 0.1
    secret = await database_sync_to_async(_secret)(project)
    communicator = await _open(f"{PATH}?kind=never", _bearer(secret))
    await _ready(communicator)
    other = await note(project)
    deadline = asyncio.get_running_loop().time() + 2
    while True:
        frame = await _next(communicator)
        assert frame["type"] == "heartbeat"
        if frame["position"] == other.position:
            break
        assert asyncio.get_running_loop().time() < deadline
    await communicator.disconnect()


async def test_periodic_check_heals_dropped_rings(project, stream_settings):
    stream_settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "tests.e2e.lossy_layer.LossyInMemoryChannelLayer",
            "CONFIG": {"drop_rate": 1.0},
        }
    }
    stream_settings.STREAM_POLL_SECONDS = 0.2
    secret = await database_sync_to_async(_secret)(project)
    communicator = await _open(PATH, _bearer(secret))
    await _ready(communicator)
    events = [await note(project) for _ in range(3)]
    frames = await _events(communicator, 3)
    assert [f["position"] for f in frames] == [e.position for e in events]
    await communicator.disconnect()


def _rolled_back_note(project) -> None:
    try:
        with journaled():
            _note(project, kind="rolled.back")
            raise RuntimeError("abort")
    except RuntimeError:
        pass


async def test_rolled_back_write_is_never_streamed(project, stream_settings):
    stream_settings.STREAM_POLL_SECONDS = 0.1
    secret = await database_sync_to_async(_secret)(project)
    communicator = await _open(PATH, _bearer(secret))
    await _ready(communicator)
    await database_sync_to_async(_rolled_back_note)(project)
    kept = await note(project)
    frames = await _events(communicator, 1)
    assert [(f["position"], f["kind"]) for f in frames] == [(kept.position, "note")]
    assert await communicator.receive_nothing(0.3)
    await communicator.disconnect()


async def test_frame_over_the_limit_closes_1009(project, stream_settings):
    stream_settings.STREAM_MAX_FRAME_BYTES = 100
    secret = await database_sync_to_async(_secret)(project)
    communicator = await _open(PATH, _bearer(secret))
    await _ready(communicator)
    await communicator.send_to(text_data=json.dumps({"type": "ping", "x": "é" * 60}))
    error = await _closed_with(communicator, 1009)
    assert error["code"] == "message_too_big"


async def test_frame_within_the_limit_is_answered(project, stream_settings):
    stream_settings.STREAM_MAX_FRAME_BYTES = 100
    secret = await database_sync_to_async(_secret)(project)
    communicator = await _open(PATH, _bearer(secret))
    position = await _ready(communicator)
    await communicator.send_json_to({"type": "ping"})
    assert await _next(communicator) == {"type": "pong", "position": position}
    await communicator.disconnect()


async def test_more_filters_than_the_cap_close_4400_naming_the_field(
    project, stream_settings
):
    stream_settings.STREAM_MAX_SUBSCRIPTIONS = 2
    secret = await database_sync_to_async(_secret)(project)
    communicator = await _open(f"{PATH}?kind=a&kind=b&kind=c", _bearer(secret))
    error = await _closed_with(communicator, 4400)
    assert error["code"] == "validation_error"
    assert "kind" in error["fields"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("after=-1", "after"),
        ("after=x", "after"),
        ("task=nope", "task"),
        ("batch=yes", "batch"),
    ],
)
async def test_bad_query_closes_4400_naming_the_field(project, query, field):
    secret = await database_sync_to_async(_secret)(project)
    communicator = await _open(f"{PATH}?{query}", _bearer(secret))
    error = await _closed_with(communicator, 4400)
    assert list(error["fields"]) == [field]


async def test_bad_query_without_credentials_closes_4401_not_4400(project):
    communicator = await _open(f"{PATH}?after=x")
    await _closed_with(communicator, 4401)


class _FullWire:
    """A wire whose client stopped reading: its buffer stays full.

    It declines direct writes, so frames still reach the communicator.
    """

    open = True

    def buffered(self) -> int:
        return 10_000_000

    def write(self, frames: bytes) -> bool:
        return False


class _StalledClient:
    """Puts a full wire in the scope, as daphne's does for a stalled reader."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        scope = {**scope, WIRE_SCOPE_KEY: _FullWire()}
        return await self.app(scope, receive, send)


@pytest.mark.parametrize("batch", ["", "&batch=1"])
async def test_client_that_stops_reading_is_told_it_lags_and_closed_4429(
    project, stream_settings, batch
):
    stream_settings.STREAM_MAX_BUFFERED_EVENTS = 3
    stream_settings.STREAM_POLL_SECONDS = 0.1
    stored = [await note(project) for _ in range(2)]
    secret = await database_sync_to_async(_secret)(project)
    communicator = await _open(
        f"{PATH}?after=0{batch}", _bearer(secret), app=_StalledClient(application)
    )
    await _ready(communicator)
    # The first page goes out, then the stream waits for the buffer to drain
    # instead of reading more; it gives up once too far behind.
    assert [f["position"] for f in await _events(communicator, 2)] == [
        e.position for e in stored
    ]
    for _ in range(5):
        await note(project)
    error = await _closed_with(communicator, 4429, timeout=3)
    assert error["code"] == "lagging"
    assert error["position"] == stored[-1].position


class _DrainingWire:
    """A wire whose client reads slowly: its buffer empties over a few checks."""

    open = True

    def __init__(self) -> None:
        self.queued = 0

    def buffered(self) -> int:
        self.queued = max(0, self.queued - 1)
        return self.queued * 1_000_000

    def write(self, frames: bytes) -> bool:
        # Each page overfills the buffer; frames still go through ASGI.
        self.queued = 4
        return False


class _SlowClient:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        scope = {**scope, WIRE_SCOPE_KEY: _DrainingWire()}
        return await self.app(scope, receive, send)


async def test_client_replaying_far_behind_while_still_reading_is_not_closed(
    project, stream_settings, monkeypatch
):
    monkeypatch.setattr(pages, "PAGE_SIZE", 2)
    stream_settings.STREAM_MAX_SEND_BUFFER_BYTES = 1_000_000
    stream_settings.STREAM_MAX_BUFFERED_EVENTS = 3
    stream_settings.STREAM_POLL_SECONDS = 0.01
    stored = [await note(project) for _ in range(10)]
    secret = await database_sync_to_async(_secret)(project)
    communicator = await _open(
        f"{PATH}?after=0", _bearer(secret), app=_SlowClient(application)
    )
    await _ready(communicator)
    # Every page waits for the buffer to drain, far more than 3 events
    # behind, and the stream goes on because the client keeps reading.
    assert [f["position"] for f in await _events(communicator, 10)] == [
        e.position for e in stored
    ]
    await communicator.disconnect()


async def test_open_connections_are_counted(project):
    before = metrics.WEBSOCKET_CONNECTIONS._value.get()
    secret = await database_sync_to_async(_secret)(project)
    communicator = await _open(PATH, _bearer(secret))
    await _ready(communicator)
    assert metrics.WEBSOCKET_CONNECTIONS._value.get() == before + 1
    await communicator.disconnect()
    assert metrics.WEBSOCKET_CONNECTIONS._value.get() == before


def _write_with_layer_down(project) -> Event:
    with transaction.atomic():
        return _note(project)


async def test_unreachable_layer_counts_a_failure_and_the_write_stands(
    project, stream_settings
):
    stream_settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {"address": "redis://127.0.0.1:1", "socket_connect_timeout": 1}
                ]
            },
        }
    }
    before = metrics.NOTIFICATION_FAILURES._value.get()
    event = await database_sync_to_async(_write_with_layer_down)(project)
    assert await Event.objects.filter(pk=event.pk).aexists()
    assert metrics.NOTIFICATION_FAILURES._value.get() == before + 1


async def test_batch_mode_sends_replay_then_live_in_batches_at_per_event_positions(
    project,
):
    stored = [await note(project) for _ in range(3)]
    secret = await database_sync_to_async(_secret)(project)
    single = await _open(f"{PATH}?after=0", _bearer(secret))
    batched = await _open(f"{PATH}?after=0&batch=1", _bearer(secret))
    await _ready(single)
    await _ready(batched)
    replay = await _batches(batched, 3)
    assert [[e["position"] for e in b] for b in replay] == [
        [e.position for e in stored]
    ]
    live = await database_sync_to_async(lambda: [_note(project) for _ in range(2)])()
    batches = replay + await _batches(batched, 2)
    positions = [e["position"] for b in batches for e in b]
    assert positions == [e.position for e in stored + live]
    assert [f["position"] for f in await _events(single, 5)] == positions
    assert await batched.receive_nothing(0.3)
    await single.disconnect()
    await batched.disconnect()


async def test_batch_mode_applies_the_filters(project):
    task_a, task_b = uuid.uuid4(), uuid.uuid4()
    await note(project, task_id=task_b)
    wanted = await note(project, task_id=task_a, kind="wanted")
    await note(project, task_id=task_a, kind="other")
    secret = await database_sync_to_async(_secret)(project)
    communicator = await _open(
        f"{PATH}?after=0&task={task_a}&kind=wanted&batch=true", _bearer(secret)
    )
    await _ready(communicator)
    await note(project, task_id=task_b, kind="wanted")
    live = await note(project, task_id=task_a, kind="wanted")
    batches = await _batches(communicator, 2)
    assert [e["position"] for b in batches for e in b] == [
        wanted.position,
        live.position,
    ]
    assert await communicator.receive_nothing(0.3)
    await communicator.disconnect()


async def test_batch_frame_holds_at_most_a_page_of_events(project, monkeypatch):
    monkeypatch.setattr(pages, "PAGE_SIZE", 2)
    stored = [await note(project) for _ in range(5)]
    secret = await database_sync_to_async(_secret)(project)
    communicator = await _open(f"{PATH}?after=0&batch=1", _bearer(secret))
    await _ready(communicator)
    batches = await _batches(communicator, 5)
    assert [[e["position"] for e in b] for b in batches] == [
        [stored[0].position, stored[1].position],
        [stored[2].position, stored[3].position],
        [stored[4].position],
    ]
    await communicator.disconnect()


async def test_batch_frames_stay_under_the_byte_cap_but_for_a_lone_large_event(
    project, monkeypatch
):
    stored = [await note(project) for _ in range(5)]
    size = len(json.dumps(EventSerializer(stored[0]).data, separators=(",", ":")))
    # Room for two events a frame, and less than one for the large one.
    monkeypatch.setattr(pages, "BATCH_FRAME_BYTES", 2 * size + 20)
    large = await database_sync_to_async(audit_custom_event_create)(
        project_id=project.pk, kind="note", payload={"pad": "x" * (3 * size)}
    )
    secret = await database_sync_to_async(_secret)(project)
    communicator = await _open(f"{PATH}?after=0&batch=1", _bearer(secret))
    await _ready(communicator)
    batches = await _batches(communicator, 6)
    assert [[e["position"] for e in b] for b in batches] == [
        [stored[0].position, stored[1].position],
        [stored[2].position, stored[3].position],
        [stored[4].position],
        [large.position],
    ]
    await communicator.disconnect()


async def test_batch_mode_keeps_ping_and_heartbeat(project, stream_settings):
    stream_settings.STREAM_HEARTBEAT_SECONDS = 0.2
    secret = await database_sync_to_async(_secret)(project)
    communicator = await _open(f"{PATH}?batch=1", _bearer(secret))
    position = await _ready(communicator)
    assert await _next(communicator) == {"type": "heartbeat", "position": position}
    await communicator.send_json_to({"type": "ping"})
    assert await _next(communicator) == {"type": "pong", "position": position}
    await communicator.disconnect()


def _rich_note(project) -> Event:
    event = audit_custom_event_create(
        project_id=project.pk,
        kind="rich",
        task_id=uuid.uuid4(),
        conversation_id=uuid.uuid4(),
        payload={"nested": {"list": [1, 2.5, None, "é"]}, "flag": True},
    )
    return Event.objects.get(pk=event.pk)


def _as_http(event: Event) -> dict:
    return json.loads(json.dumps(EventSerializer(event).data, cls=DjangoJSONEncoder))


@pytest.mark.parametrize("batch", [False, True])
async def test_streamed_event_has_exactly_the_http_apis_fields(project, batch):
    event = await database_sync_to_async(_rich_note)(project)
    secret = await database_sync_to_async(_secret)(project)
    query = f"?after={event.position - 1}" + ("&batch=1" if batch else "")
    communicator = await _open(PATH + query, _bearer(secret))
    await _ready(communicator)
    [streamed] = await _events(communicator, 1)
    streamed.pop("type", None)
    assert streamed == await database_sync_to_async(_as_http)(event)
    await communicator.disconnect()


def _holds_a_connection(barrier: threading.Barrier) -> bool:
    barrier.wait(5)
    return connection.connection is not None


async def test_stream_read_threads_hold_no_connection_between_reads(project):
    stored = [await note(project) for _ in range(3)]
    secret = await database_sync_to_async(_secret)(project)
    communicator = await _open(f"{PATH}?after=0", _bearer(secret))
    await _ready(communicator)
    assert len(await _events(communicator, 3)) == len(stored)
    await communicator.disconnect()
    # Every read thread at once, so each answers for itself.
    barrier = threading.Barrier(pages.READ_THREADS)
    checks = [
        asyncio.wrap_future(pages._read_threads.submit(_holds_a_connection, barrier))
        for _ in range(pages.READ_THREADS)
    ]
    assert await asyncio.gather(*checks) == [False] * pages.READ_THREADS
