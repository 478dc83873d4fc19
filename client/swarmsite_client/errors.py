"""Exceptions: one class per error code of the API, under `SwarmsiteError`.

The server answers errors as
`{"error": {"code": ..., "message": ..., "fields": {...}}}`; the code picks
the class, and a code this client does not know picks the class of its HTTP
status, so `except NotFound` keeps working when the server adds codes.
"""

from __future__ import annotations

from typing import Any


class SwarmsiteError(Exception):
    """Base of every error this package raises."""

    code = "error"

    def __init__(
        self,
        message: str = "",
        *,
        status: int | None = None,
        code: str | None = None,
        fields: dict[str, list[str]] | None = None,
        body: Any = None,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message or self.__class__.__name__)
        self.message = message
        self.status = status
        if code is not None:
            self.code = code
        self.fields = fields or {}
        self.body = body
        self.retry_after = retry_after
        self.request_id = request_id

    def __str__(self) -> str:
        head = f"[{self.status or '-'} {self.code}] {self.message}"
        if self.fields:
            head += f" {self.fields}"
        return head


class ConnectionFailed(SwarmsiteError):
    """The server could not be reached (after the retries)."""

    code = "connection_failed"


class BadRequest(SwarmsiteError):
    """400."""

    code = "bad_request"


class ValidationError(BadRequest):
    """400 `validation_error`: `.fields` names each bad field."""

    code = "validation_error"


class ParseError(BadRequest):
    """400 `parse_error`: the body was not JSON."""

    code = "parse_error"


class AuthenticationFailed(SwarmsiteError):
    """401 `authentication_failed`: an invalid, revoked or expired key."""

    code = "authentication_failed"


class NotAuthenticated(AuthenticationFailed):
    """401 `not_authenticated`: no key was sent."""

    code = "not_authenticated"


class PermissionDenied(SwarmsiteError):
    """403 `permission_denied`: the key lacks the scope."""

    code = "permission_denied"


class NotFound(SwarmsiteError):
    """404 `not_found`: no such object in the key's project."""

    code = "not_found"


class MethodNotAllowed(SwarmsiteError):
    """405 `method_not_allowed`."""

    code = "method_not_allowed"


class Conflict(SwarmsiteError):
    """409 `conflict`, and the base of the other 409 codes."""

    code = "conflict"


class IdempotencyConflict(Conflict):
    """409: an id already names something with different values."""

    code = "idempotency_conflict"


class VersionConflict(Conflict):
    """409: `expected_version` is not the stored version."""

    code = "version_conflict"


class IllegalTransition(Conflict):
    """409: the lifecycle does not allow this status change."""

    code = "illegal_transition"


class DependencyCycle(Conflict):
    """409: a dependency would close a cycle."""

    code = "dependency_cycle"


class RequestTooLarge(SwarmsiteError):
    """413 `request_too_large`: too many items or too many bytes."""

    code = "request_too_large"


class UnsupportedMediaType(SwarmsiteError):
    """415 `unsupported_media_type`."""

    code = "unsupported_media_type"


class RateLimited(SwarmsiteError):
    """429 `throttled`: `.retry_after` says when to come back."""

    code = "throttled"


class ServerError(SwarmsiteError):
    """5xx without a more precise class."""

    code = "server_error"


class Unavailable(ServerError):
    """503 `unavailable` (the database is away), or 502/504 from a proxy."""

    code = "unavailable"


class StreamClosed(SwarmsiteError):
    """The event stream was closed for a reason a retry cannot fix (4400,
    4401, 4403)."""

    code = "stream_closed"


BY_CODE: dict[str, type[SwarmsiteError]] = {
    cls.code: cls
    for cls in (
        ValidationError,
        ParseError,
        AuthenticationFailed,
        NotAuthenticated,
        PermissionDenied,
        NotFound,
        MethodNotAllowed,
        Conflict,
        IdempotencyConflict,
        VersionConflict,
        IllegalTransition,
        DependencyCycle,
        RequestTooLarge,
        UnsupportedMediaType,
        RateLimited,
        Unavailable,
    )
}

BY_STATUS: dict[int, type[SwarmsiteError]] = {
    400: BadRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: RequestTooLarge,
    415: UnsupportedMediaType,
    429: RateLimited,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


def error_class(code: str | None, status: int | None) -> type[SwarmsiteError]:
    """The class of an error `code`; an unknown code falls back on `status`."""
    if code and code in BY_CODE:
        return BY_CODE[code]
    if status in BY_STATUS:
        return BY_STATUS[status]
    if status is not None and status >= 500:
        return ServerError
    return SwarmsiteError


def error_from_body(
    body: Any,
    *,
    status: int | None = None,
    retry_after: float | None = None,
    request_id: str | None = None,
) -> SwarmsiteError:
    """The exception for an error body of the contract's shape (or any body)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        # Not the API's shape (a proxy's page, an HTML error): keep it short.
        text = body.strip()[:200] if isinstance(body, str) else ""
        error = {"message": f"HTTP {status}" + (f": {text}" if text else "")}
    code = error.get("code") if isinstance(error.get("code"), str) else None
    cls = error_class(code, status)
    fields = error.get("fields") if isinstance(error.get("fields"), dict) else None
    return cls(
        str(error.get("message") or ""),
        status=status,
        code=code or cls.code,
        fields=fields,
        body=body,
        retry_after=retry_after,
        request_id=request_id,
    )
