"""Every API error in the contract's shape: `{"error": {code, message, fields?}}`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions
from rest_framework.response import Response

from swarmsite import errors


class RequestTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "The request body is too large."
    default_code = "request_too_large"


def flatten_detail(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    if isinstance(detail, Mapping):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out.update(flatten_detail(value, name))
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, Mapping | list) for item in detail):
            return {prefix or "non_field_errors": [str(item) for item in detail]}
        out = {}
        for index, item in enumerate(detail):
            if item:
                name = f"{prefix}.{index}" if prefix else str(index)
                out.update(flatten_detail(item, name))
        return out
    return {prefix or "non_field_errors": [str(detail)]}


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    """The contract's error shape; `fields` only for validation errors."""
    body: dict[str, Any] = {"code": code, "message": message}
    if fields is not None:
        body["fields"] = fields
    return {"error": body}


def _message_from_fields(fields: dict[str, list[str]]) -> str:
    parts = [f"{name}: {' '.join(msgs)}" for name, msgs in fields.items()]
    return "Invalid input. " + "; ".join(parts) if parts else "Invalid input."


def _service_error_response(exc: errors.ServiceError) -> Response:
    if isinstance(exc, errors.ValidationError):
        return Response(error_body(exc.code, exc.message, exc.fields), status=400)
    if isinstance(exc, errors.NotFound):
        status = 404
    elif isinstance(exc, errors.Conflict):
        status = 409
    else:
        status = 400
    return Response(error_body(exc.code, exc.message), status=status)


# Seconds a client should wait before retrying while the database is away.
UNAVAILABLE_RETRY_AFTER = 1


def is_database_unavailable(exc: BaseException) -> bool:
    """A lost or refused connection, a pool timeout, a deadlock or a lock wait.

    Each passes once the database answers again, so the client may retry.
    """
    return isinstance(exc, OperationalError | InterfaceError)


def unavailable_body() -> dict:
    return error_body(
        "unavailable",
        "The database is not answering; retry after the Retry-After seconds.",
    )


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """Every API error in one shape: `{"error": {code, message, fields?}}`."""
    # rest_framework.views reads the auth settings, which name this module.
    from rest_framework.views import exception_handler as drf_exception_handler
    from rest_framework.views import set_rollback

    if is_database_unavailable(exc):
        return Response(
            unavailable_body(),
            status=503,
            headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER)},
        )
    if isinstance(exc, errors.ServiceError):
        set_rollback()
        return _service_error_response(exc)
    if isinstance(exc, DjangoValidationError):
        set_rollback()
        wrapped = errors.ValidationError.from_django(exc)
        return _service_error_response(wrapped)
    if isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge()
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_detail(exc.detail)
        response.data = error_body(
            "validation_error", _message_from_fields(fields), fields
        )
        response.status_code = 400
        return response
    codes = exc.get_codes()
    code = codes if isinstance(codes, str) else exc.default_code
    detail = exc.detail
    message = str(detail) if not isinstance(detail, dict | list) else str(exc)
    response.data = error_body(code, message)
    return response


@csrf_exempt
def not_found(request, *args, **kwargs) -> JsonResponse:
    """Any path under /api/ that no route matches."""
    return JsonResponse(error_body("not_found", "No such API endpoint."), status=404)
