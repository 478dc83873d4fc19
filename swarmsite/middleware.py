"""Answers 503 for a database that does not answer, on every path."""

from __future__ import annotations

import logging

from django.http import HttpRequest, JsonResponse

from swarmsite.exceptions import (
    UNAVAILABLE_RETRY_AFTER,
    is_database_unavailable,
    unavailable_body,
)

logger = logging.getLogger(__name__)


class DatabaseUnavailableMiddleware:
    """Turns a lost database connection into 503 with Retry-After.

    DRF views answer so through their exception handler; this covers the
    other views (the OTLP endpoint, the admin) and is never a 500.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception):
        if not is_database_unavailable(exception):
            return None
        logger.warning("Database unavailable: %s", exception)
        response = JsonResponse(unavailable_body(), status=503)
        response["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
        return response
