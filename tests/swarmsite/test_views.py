import socket
import time

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_auth(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_answers_when_the_database_does(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_readyz_answers_503_in_time_when_redis_is_unreachable(client):
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    layers = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [url]},
        }
    }
    with override_settings(
        REDIS_URL=url, CHANNEL_LAYERS=layers, READYZ_TIMEOUT_SECONDS=1.0
    ):
        started = time.monotonic()
        response = client.get("/readyz")
        took = time.monotonic() - started

    assert response.status_code == 503
    (problem,) = response.json()["problems"]
    assert problem.startswith("channel layer: ")
    assert took < 2.0


def test_readyz_and_healthz_refuse_writes(client):
    assert client.post("/readyz").status_code == 405
    assert client.post("/healthz").status_code == 405
