"""HTTP API of the event log: read after a position, append custom events."""

from __future__ import annotations

from django.db import IntegrityError
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.models import Event
from audit.selectors import event_list_after
from audit.serializers import (
    EventCreateInputSerializer,
    EventFilterSerializer,
    EventSerializer,
)
from audit.services import audit_custom_event_create
from swarmsite.api import ProjectScopedMixin, validated
from swarmsite.pagination import PositionPagination


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
        existed = "id" in data and Event.objects.filter(uuid=data["id"]).exists()
        kwargs = {
            "project_id": self.project.pk,
            "kind": data["kind"],
            "actor": self.actor,
            "task_id": data.get("task"),
            "conversation_id": data.get("conversation"),
            "payload": data.get("payload"),
            "occurred_at": data.get("occurred_at"),
            "event_id": data.get("id"),
        }
        try:
            event = audit_custom_event_create(**kwargs)
        except IntegrityError:
            # A concurrent request with the same id committed first: the
            # service now compares against the stored event.
            if "id" not in data:
                raise
            existed = True
            event = audit_custom_event_create(**kwargs)
        return Response(EventSerializer(event).data, status=200 if existed else 201)
