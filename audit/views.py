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
from swarmsite.errors import IdempotencyConflict
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
        try:
            event = audit_custom_event_create(
                project_id=self.project.pk,
                kind=data["kind"],
                actor=self.actor,
                task_id=data.get("task"),
                conversation_id=data.get("conversation"),
                payload=data.get("payload"),
                occurred_at=data.get("occurred_at"),
                event_id=data.get("id"),
            )
        except IntegrityError:
            if "id" not in data:
                raise
            return Response(EventSerializer(self._replayed(data)).data, status=200)
        return Response(EventSerializer(event).data, status=201)

    def _replayed(self, data: dict) -> Event:
        # The id is taken: the same body again is a retry, anything else is not.
        stored = Event.objects.filter(uuid=data["id"]).first()
        if stored is None or stored.project_id != self.project.pk:
            raise IdempotencyConflict(f"The id {data['id']} is taken.")
        supplied = {
            "kind": data["kind"].strip(),
            "task": data.get("task"),
            "conversation": data.get("conversation"),
            "payload": data.get("payload") or {},
        }
        stored_values = {
            "kind": stored.kind,
            "task": stored.task_id,
            "conversation": stored.conversation_id,
            "payload": stored.payload,
        }
        differing = sorted(k for k, v in supplied.items() if stored_values[k] != v)
        if differing:
            raise IdempotencyConflict(
                "An event with this id exists with different values for: "
                f"{', '.join(differing)}."
            )
        return stored
