"""API key scopes, and the project every API view is scoped to."""

from __future__ import annotations

from rest_framework import exceptions, permissions

from swarmsite.actors import Actor
from swarmsite.authentication import (
    REQUEST_ID_HEADER,
    get_principal,
    request_actor,
    request_id,
)
from swarmsite.models import ApiKeyScope, Project


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
