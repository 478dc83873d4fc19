"""Liveness and readiness probes (open by design) and the metrics endpoint."""

from __future__ import annotations

import asyncio
import hmac
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from swarmsite.errors import NotFound
from swarmsite.exceptions import error_body
from swarmsite.models import ApiKeyScope
from swarmsite.services import api_key_authenticate


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and answering."""
    return JsonResponse({"status": "ok"})


def _pooled_select_one(deadline: float) -> None:
    # Django's own checkout waits DATABASE_POOL_TIMEOUT for a connection; the
    # probe asks the same pool but gives up at its deadline. A connection
    # that broke while the server was away fails fast, goes back to the pool
    # (which discards it) and the next one is tried.
    pool = connection.pool
    pool.open()  # No-op once open; Django opens it on first use too.
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no working pooled connection in time")
        with pool.connection(timeout=remaining) as conn:
            try:
                conn.execute("SELECT 1").fetchone()
            except Exception:
                if not conn.closed:
                    raise
                continue
            return


def _check_database(deadline: float) -> str | None:
    try:
        if connection.vendor == "postgresql" and connection.settings_dict[
            "OPTIONS"
        ].get("pool"):
            _pooled_select_one(deadline)
        else:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
    except Exception as exc:
        return f"database: {exc.__class__.__name__}"
    return None


async def _ping_channel_layer(timeout: float) -> None:
    layer = get_channel_layer()
    await asyncio.wait_for(
        layer.group_send("readyz", {"type": "readyz.ping"}), timeout=timeout
    )


def _check_channel_layer(deadline: float) -> str | None:
    if not settings.REDIS_URL:
        return None
    try:
        async_to_sync(_ping_channel_layer)(max(deadline - time.monotonic(), 0.1))
    except Exception as exc:
        return f"channel layer: {exc.__class__.__name__}"
    return None


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """The database (and the channel layer, when configured) answer in time."""
    timeout = settings.READYZ_TIMEOUT_SECONDS
    started = time.monotonic()
    problems = [_check_database(started + timeout)]
    problems.append(_check_channel_layer(time.monotonic() + timeout))
    problems = [p for p in problems if p]
    if problems:
        return JsonResponse({"status": "unavailable", "problems": problems}, status=503)
    return JsonResponse({"status": "ok"})


def _denied(status: int, code: str, message: str) -> JsonResponse:
    response = JsonResponse(error_body(code, message), status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


def _metrics_access(secret: str) -> bool | None:
    """True for METRICS_TOKEN or an admin-scope key, False for another key.

    None when the secret is neither.
    """
    token = settings.METRICS_TOKEN
    if token and hmac.compare_digest(secret.encode(), token.encode()):
        return True
    try:
        key = api_key_authenticate(secret=secret)
    except NotFound:
        return None
    return ApiKeyScope.ADMIN in key.scopes


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """This process's metrics in Prometheus text format; denied by default.

    Counters cover every project, so only the operator's METRICS_TOKEN or an
    admin-scope API key may read them.
    """
    parts = request.headers.get("Authorization", "").split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return _denied(
            401,
            "not_authenticated",
            "Send 'Authorization: Bearer <METRICS_TOKEN or admin API key>'.",
        )
    access = _metrics_access(parts[1])
    if access is None:
        return _denied(401, "authentication_failed", "Invalid token or API key.")
    if not access:
        return _denied(403, "permission_denied", "Metrics need an admin-scope API key.")
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
