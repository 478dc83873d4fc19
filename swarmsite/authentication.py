"""Who calls: API keys and staff sessions as one principal, and its actor.

The API, the request-audit middleware and the WebSocket consumer all build
principals and actors here.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from swarmsite import errors
from swarmsite.actors import Actor, ActorType
from swarmsite.models import DEFAULT_PROJECT_SLUG, ApiKey, ApiKeyScope, Project
from swarmsite.services import api_key_authenticate

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
ALL_SCOPES = frozenset(ApiKeyScope.values)


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


def principal_for_key(key: ApiKey) -> ApiPrincipal:
    """The principal of an authenticated API key."""
    return ApiPrincipal(project=key.project, scopes=frozenset(key.scopes), key=key)


def principal_for_staff(user: Any) -> ApiPrincipal:
    """A staff user acts on the default project with every scope."""
    return ApiPrincipal(
        project=Project.objects.get(slug=DEFAULT_PROJECT_SLUG),
        scopes=ALL_SCOPES,
        user=user,
    )


def principal_actor(
    principal: ApiPrincipal | None, *, user: Any = None, correlation_id: str = ""
) -> Actor:
    """The audit actor of a principal, or of a bare (staff or anonymous) user."""
    if principal is not None and principal.key is not None:
        return Actor(
            type=ActorType.API_KEY,
            id=str(principal.key.pk),
            label=principal.key.name,
            correlation_id=correlation_id,
        )
    if principal is not None:
        user = principal.user
    authenticated = user is not None and user.is_authenticated
    return Actor(
        type=ActorType.USER,
        id=str(getattr(user, "pk", "") or "") if authenticated else "",
        label=user.get_username() if authenticated else "anonymous",
        correlation_id=correlation_id,
    )


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
        return principal_for_key(key), key

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
    principal = principal_for_staff(user)
    request._swarmsite_principal = principal
    return principal


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
    return principal_actor(
        get_principal(request), user=request.user, correlation_id=request_id(request)
    )
