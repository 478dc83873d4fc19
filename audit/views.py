"""HTTP API of the event log and the audit log: validate, call, render."""

from __future__ import annotations

import uuid

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.filters import AuditLogFilterSet
from audit.models import AuditLog
from audit.selectors import (
    audit_log_get,
    audit_log_list,
    event_list_after,
)
from audit.serializers import (
    AuditLogCreateInputSerializer,
    AuditLogSerializer,
    EventCreateInputSerializer,
    EventFilterSerializer,
    EventPageSerializer,
    EventSerializer,
)
from audit.services import audit_custom_events_create, audit_log_create
from swarmsite.pagination import CreatedCursorPagination, PositionPagination
from swarmsite.permissions import ProjectScopedMixin
from swarmsite.serializers import created_status, validated

AFTER_PARAMETER = OpenApiParameter(
    "after",
    OpenApiTypes.INT,
    description="Return events after this position (0 or more).",
)
PAGE_SIZE_PARAMETER = OpenApiParameter(
    "page_size",
    OpenApiTypes.INT,
    description="Events per page, at most 500 (larger values are clamped).",
)


def _repeatable(name: str, kind: OpenApiTypes, description: str) -> OpenApiParameter:
    description = f"{description} Repeatable, or comma-separated."
    if kind == OpenApiTypes.STR:
        # `?name=` is refused, so a text value is documented as non-empty.
        text = {"type": "array", "items": {"type": "string", "minLength": 1}}
        return OpenApiParameter(name, text, explode=True, description=description)
    return OpenApiParameter(
        name, kind, many=True, explode=True, description=description
    )


@extend_schema_view(
    get=extend_schema(
        summary="Events after a position",
        parameters=[
            AFTER_PARAMETER,
            PAGE_SIZE_PARAMETER,
            _repeatable("task", OpenApiTypes.UUID, "Only events of these tasks."),
            _repeatable(
                "conversation",
                OpenApiTypes.UUID,
                "Only events of these conversations.",
            ),
            _repeatable("kind", OpenApiTypes.STR, "Only events of these kinds."),
        ],
        responses=EventPageSerializer,
    ),
    post=extend_schema(
        summary="Append a custom event",
        request=EventCreateInputSerializer,
        responses={200: EventSerializer, 201: EventSerializer},
    ),
)
class EventListCreateView(ProjectScopedMixin, APIView):
    """`GET /api/v1/events/?after=P`; `POST` appends a custom event."""

    def get(self, request):
        filters = EventFilterSerializer.from_query(request.query_params)
        project_id = self.project.pk
        return PositionPagination().respond(
            request,
            fetch=lambda after, limit: event_list_after(
                project_id=project_id,
                after=after,
                limit=limit,
                task_ids=filters.get("task", ()),
                conversation_ids=filters.get("conversation", ()),
                kinds=filters.get("kind", ()),
            ),
            serializer_class=EventSerializer,
        )

    def post(self, request):
        data = validated(EventCreateInputSerializer, request.data)
        spec = {
            "kind": data["kind"],
            "task_id": data.get("task"),
            "conversation_id": data.get("conversation"),
            "payload": data.get("payload"),
            "occurred_at": data.get("occurred_at"),
            "event_id": data.get("id"),
        }
        [(event, created)] = audit_custom_events_create(
            project_id=self.project.pk, events=[spec], actor=self.actor
        )
        return Response(EventSerializer(event).data, status=created_status(created))


class AuditLogPagination(CreatedCursorPagination):
    """Newest first on the time of the action, as the audit log indexes are."""

    ordering = ("-occurred_at", "-id")


@extend_schema_view(
    get=extend_schema(
        summary="Audit records, newest first",
        parameters=[
            _repeatable("action", OpenApiTypes.STR, "Only these actions."),
            OpenApiParameter(
                "success",
                OpenApiTypes.STR,
                enum=["true", "false"],
                description="Only successes, or only failures.",
            ),
            OpenApiParameter(
                "since",
                OpenApiTypes.DATETIME,
                description="Actions at or after this time (ISO 8601).",
            ),
            OpenApiParameter(
                "until",
                OpenApiTypes.DATETIME,
                description="Actions before this time (ISO 8601).",
            ),
        ],
    ),
    post=extend_schema(
        summary="Record an action (tool call, file access...)",
        request=AuditLogCreateInputSerializer,
        responses={200: AuditLogSerializer, 201: AuditLogSerializer},
    ),
)
class AuditLogListCreateView(ProjectScopedMixin, generics.ListAPIView):
    """`GET /api/v1/audit-logs/` filtered; `POST` records a client action.

    Every API request also leaves an `api.request` record
    (`audit.middleware`).
    """

    serializer_class = AuditLogSerializer
    filterset_class = AuditLogFilterSet
    pagination_class = AuditLogPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AuditLog.objects.none()
        return audit_log_list(project_id=self.project.pk)

    def post(self, request):
        data = validated(AuditLogCreateInputSerializer, request.data)
        kwargs = {
            "project_id": self.project.pk,
            "actor": self.actor,
            "action": data["action"],
            "target": data.get("target", ""),
            "success": data.get("success", True),
            "duration_ms": data.get("duration_ms"),
            "error": data.get("error", ""),
            "details": data.get("details"),
            "occurred_at": data.get("occurred_at"),
            "entry_id": data.get("id"),
        }
        entry, created = audit_log_create(**kwargs)
        return Response(AuditLogSerializer(entry).data, status=created_status(created))


@extend_schema(summary="One audit record", responses=AuditLogSerializer)
class AuditLogDetailView(ProjectScopedMixin, generics.RetrieveAPIView):
    """`GET /api/v1/audit-logs/{id}/`."""

    serializer_class = AuditLogSerializer

    def get_object(self) -> AuditLog:
        return audit_log_get(project_id=self.project.pk, entry_id=self.kwargs["pk"])

    def get_queryset(self):
        return AuditLog.objects.none()

    @extend_schema(
        parameters=[OpenApiParameter("id", uuid.UUID, OpenApiParameter.PATH)]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
