"""Liveness and readiness probes; open without auth by design."""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and answering."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return f"database: {exc.__class__.__name__}"
    return None


def _check_channel_layer() -> str | None:
    if not settings.REDIS_URL:
        return None
    layer = get_channel_layer()
    try:
        async_to_sync(layer.group_send)("readyz", {"type": "readyz.ping"})
    except Exception as exc:
        return f"channel layer: {exc.__class__.__name__}"
    return None


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """The database (and the channel layer, when configured) answer."""
    problems = [p for p in (_check_database(), _check_channel_layer()) if p]
    if problems:
        return JsonResponse({"status": "unavailable", "problems": problems}, status=503)
    return JsonResponse({"status": "ok"})
