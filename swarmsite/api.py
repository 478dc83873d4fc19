"""Shared pieces of the REST API: auth, scopes, errors, request context."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, parsers, permissions, serializers, throttling
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.response import Response

from swarmsite import errors
from swarmsite.actors import Actor, ActorType
from swarmsite.models import DEFAULT_PROJECT_SLUG, ApiKey, ApiKeyScope, Project
from swarmsite.services import api_key_authenticate

T = TypeVar("T")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_ALL_SCOPES = frozenset(ApiKeyScope.values)


# Principal and authentication ---------------------------------------------


@dataclass
class ApiPrincipal:
    """Who calls the API: a project-scoped key, or a staff user on `default`."""

    project: Project
    scopes: frozenset[str]
    key: ApiKey | None = None
    user: Any = None
    is_authenticated: bool = field(default=True, init=False)
    is_anonymous: bool = field(default=False, init=False)
    is_active: bool = field(default=True, init=False)
    is_staff: bool = field(default=False, init=False)
    is_superuser: bool = field(default=False, init=False)

    def __str__(self) -> str:
        if self.key is not None:
            return f"API key {self.key.name}"
        return str(self.user)

    def get_username(self) -> str:
        return str(self)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes or ApiKeyScope.ADMIN in self.scopes


class BearerKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <api key>`; no header leaves the request anonymous."""

    keyword = b"bearer"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "The Authorization header must be 'Bearer <api key>'."
            )
        try:
            secret = parts[1].decode("ascii")
            key = api_key_authenticate(secret=secret)
        except (UnicodeDecodeError, errors.NotFound) as exc:
            raise exceptions.AuthenticationFailed(
                "Invalid, revoked or expired API key."
            ) from exc
        principal = ApiPrincipal(
            project=key.project, scopes=frozenset(key.scopes), key=key
        )
        return principal, key

    def authenticate_header(self, request) -> str:
        # Present so that missing credentials answer 401, not 403.
        return 'Bearer realm="api"'


def get_principal(request) -> ApiPrincipal | None:
    """The caller's principal; a staff session acts on the default project."""
    user = request.user
    if isinstance(user, ApiPrincipal):
        return user
    cached = getattr(request, "_swarmsite_principal", None)
    if cached is not None:
        return cached
    if not (user and user.is_authenticated and user.is_staff):
        return None
    principal = ApiPrincipal(
        project=Project.objects.get(slug=DEFAULT_PROJECT_SLUG),
        scopes=_ALL_SCOPES,
        user=user,
    )
    request._swarmsite_principal = principal
    return principal


class HasScope(permissions.BasePermission):
    """`read` for safe methods, `write` for the others; `admin` grants both."""

    message = "This API key lacks the scope this request needs."

    def has_permission(self, request, view) -> bool:
        principal = get_principal(request)
        if principal is None:
            return False
        needed = (
            ApiKeyScope.READ
            if request.method in permissions.SAFE_METHODS
            else ApiKeyScope.WRITE
        )
        required = getattr(view, "required_scope", None) or needed
        return principal.has_scope(required)


class PrincipalRateThrottle(throttling.SimpleRateThrottle):
    """A fixed-window request budget per API key (or staff user).

    A counter per window keeps each check O(1), unlike the timestamp list of
    DRF's default throttles.
    """

    scope = "principal"

    def get_cache_key(self, request, view) -> str | None:
        principal = get_principal(request)
        if principal is None:
            return None
        ident = (
            f"key:{principal.key.pk}"
            if principal.key is not None
            else f"user:{principal.user.pk}"
        )
        return f"throttle:{self.scope}:{ident}"

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        now = self.timer()
        window = int(now // self.duration)
        bucket = f"{key}:{window}"
        self.cache.add(bucket, 0, timeout=self.duration + 1)
        try:
            count = self.cache.incr(bucket)
        except ValueError:
            # Evicted between add and incr: count this request alone.
            self.cache.set(bucket, 1, timeout=self.duration + 1)
            count = 1
        self._wait = (window + 1) * self.duration - now
        return count <= self.num_requests

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)


# Request context ----------------------------------------------------------


def request_id(request) -> str:
    """The caller's X-Request-ID when well-formed, else a fresh one."""
    base = getattr(request, "_request", request)
    rid = getattr(base, "swarmsite_request_id", None)
    if rid is None:
        supplied = base.headers.get(REQUEST_ID_HEADER, "")
        rid = supplied if _REQUEST_ID_RE.match(supplied) else uuid.uuid4().hex
        base.swarmsite_request_id = rid
    return rid


def request_actor(request) -> Actor:
    """The audit actor of an API request: its key, or the staff user."""
    principal = get_principal(request)
    rid = request_id(request)
    if principal is not None and principal.key is not None:
        return Actor(
            type=ActorType.API_KEY,
            id=str(principal.key.pk),
            label=principal.key.name,
            correlation_id=rid,
        )
    user = request.user
    return Actor(
        type=ActorType.USER,
        id=str(getattr(user, "pk", "") or ""),
        label=user.get_username() if user.is_authenticated else "anonymous",
        correlation_id=rid,
    )


class ProjectScopedMixin:
    """For API views: the caller's project and actor, and the request id echo."""

    permission_classes = [HasScope]

    @property
    def project(self) -> Project:
        principal = get_principal(self.request)
        if principal is None:
            raise exceptions.NotAuthenticated()
        return principal.project

    @property
    def actor(self) -> Actor:
        return request_actor(self.request)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response[REQUEST_ID_HEADER] = request_id(request)
        return response


# Input --------------------------------------------------------------------


class RequestTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "The request body is too large."
    default_code = "request_too_large"


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with a 400 instead of a 500 on absurd nesting.

    The body size limit is Django's DATA_UPLOAD_MAX_MEMORY_SIZE: DRF reads
    `request.body`, whose RequestDataTooBig the handler answers with 413.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise exceptions.ParseError("JSON nested too deeply.") from exc


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class JSONValueField(serializers.JSONField):
    """Any JSON, or only an object / a list; NUL characters are refused."""

    def __init__(self, *, kind: type | None = None, **kwargs: Any) -> None:
        self.kind = kind
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        data = super().to_internal_value(data)
        if self.kind is dict and not isinstance(data, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        if self.kind is list and not isinstance(data, list):
            raise serializers.ValidationError("Must be a JSON list.")
        if _has_nul(data):
            raise serializers.ValidationError("Must not contain NUL characters.")
        return data


class StrictInputSerializer(serializers.Serializer):
    """Refuses keys it does not accept instead of silently dropping them.

    `read_only_names` lists output fields a client cannot set, so the error
    says why.
    """

    read_only_names: tuple[str, ...] = ()

    def to_internal_value(self, data):
        extra: dict[str, list[str]] = {}
        if isinstance(data, Mapping):
            for name in data:
                if name in self.fields and not self.fields[name].read_only:
                    continue
                extra[str(name)] = [
                    "This field is read-only."
                    if name in self.read_only_names
                    else "This field is not accepted here."
                ]
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not extra:
                raise
            detail = (
                exc.detail
                if isinstance(exc.detail, dict)
                else {"non_field_errors": exc.detail}
            )
            raise serializers.ValidationError({**detail, **extra}) from exc
        if extra:
            raise serializers.ValidationError(extra)
        return value


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict:
    """Validate `data` with `serializer_class`; a 400 names each bad field."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


# Errors -------------------------------------------------------------------


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    if isinstance(detail, Mapping):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out.update(_flatten(value, name))
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, Mapping | list) for item in detail):
            return {prefix or "non_field_errors": [str(item) for item in detail]}
        out = {}
        for index, item in enumerate(detail):
            if item:
                name = f"{prefix}.{index}" if prefix else str(index)
                out.update(_flatten(item, name))
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


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """Every API error in one shape: `{"error": {code, message, fields?}}`."""
    # rest_framework.views reads the auth settings, which name this module.
    from rest_framework.views import exception_handler as drf_exception_handler
    from rest_framework.views import set_rollback

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
        fields = _flatten(exc.detail)
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


def not_found(request, *args, **kwargs) -> JsonResponse:
    """Any path under /api/ that no route matches."""
    return JsonResponse(error_body("not_found", "No such API endpoint."), status=404)


def created_status(created: bool) -> int:
    """201 for a new resource; 200 for a repeated create with a known id."""
    return 201 if created else 200


def retrying_a_lost_insert_race(write: Callable[[], T], *, ids_supplied: bool) -> T:
    """Run `write`; once more if a concurrent request inserted the same id.

    The second run sees the committed row and answers as a repeated create
    (or a conflict) instead of a 500.
    """
    try:
        return write()
    except IntegrityError:
        if not ids_supplied:
            raise
        return write()
