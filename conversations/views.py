"""HTTP API of conversations and messages: validate, call a service, render."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from conversations.filters import ConversationFilterSet, MessageFilterSet
from conversations.models import Conversation, Message
from conversations.selectors import (
    conversation_detail,
    conversation_get,
    conversation_list,
    message_page_queryset,
)
from conversations.serializers import (
    ConversationCreateInputSerializer,
    ConversationSerializer,
    ConversationUpdateInputSerializer,
    MessageInputSerializer,
    MessageListSerializer,
    MessageSerializer,
)
from conversations.services import (
    MAX_MESSAGES_PER_APPEND,
    conversation_create,
    conversation_update,
    message_append,
)
from swarmsite import errors
from swarmsite.exceptions import RequestTooLarge
from swarmsite.pagination import SeqCursorPagination
from swarmsite.permissions import ProjectScopedMixin
from swarmsite.serializers import created_status, validated

# The service names a bad item `messages[2].role`; the API says `2.role`,
# as DRF's own list errors are flattened.
_SERVICE_ITEM_FIELD = re.compile(r"^messages\[(\d+)\]\.(.+)$")

FIELDS_PARAMETER = OpenApiParameter(
    "fields",
    OpenApiTypes.STR,
    enum=["full"],
    description="`full` adds `content`, `tool_calls` and `metadata` to each message.",
)


def message_batch_limit() -> int:
    """Most messages one request may append."""
    return min(settings.INGEST_MAX_ITEMS, MAX_MESSAGES_PER_APPEND)


def _validated_messages(data: Any) -> tuple[list[dict[str, Any]], bool]:
    """The messages of a body that is one message object or a list of them."""
    if isinstance(data, dict):
        return [validated(MessageInputSerializer, data)], False
    if not isinstance(data, list):
        raise exceptions.ValidationError(
            {"non_field_errors": ["Send one message object or a list of them."]}
        )
    limit = message_batch_limit()
    if len(data) > limit:
        raise RequestTooLarge(f"At most {limit} messages per request; got {len(data)}.")
    if not data:
        raise exceptions.ValidationError(
            {"non_field_errors": ["Send at least one message."]}
        )
    serializer = MessageInputSerializer(data=data, many=True)
    serializer.is_valid(raise_exception=True)
    messages = [dict(item) for item in serializer.validated_data]
    first_index: dict[Any, int] = {}
    repeats: dict[str, list[str]] = {}
    for index, message in enumerate(messages):
        if "id" not in message:
            continue
        earlier = first_index.setdefault(message["id"], index)
        if earlier != index:
            repeats[f"{index}.id"] = [f"Repeats the id of item {earlier}."]
    if repeats:
        raise exceptions.ValidationError(repeats)
    return messages, True


def _item_fields(exc: errors.ValidationError, *, many: bool) -> dict[str, list[str]]:
    renamed: dict[str, list[str]] = {}
    for name, messages in exc.fields.items():
        match = _SERVICE_ITEM_FIELD.match(name)
        if match:
            name = f"{match[1]}.{match[2]}"
        elif many and name != "non_field_errors":
            # The service does not prefix the only item of a list of one.
            name = f"0.{name}"
        renamed[name] = messages
    return renamed


@extend_schema_view(
    list=extend_schema(summary="List conversations, newest first"),
    retrieve=extend_schema(summary="Get a conversation"),
    create=extend_schema(
        summary="Open a conversation",
        request=ConversationCreateInputSerializer,
        responses={
            201: ConversationSerializer,
            200: OpenApiResponse(
                ConversationSerializer, description="The id exists with this body."
            ),
        },
    ),
    partial_update=extend_schema(
        summary="Change a conversation's title, status, participants or metadata",
        request=ConversationUpdateInputSerializer,
        responses=ConversationSerializer,
    ),
)
class ConversationViewSet(ProjectScopedMixin, viewsets.ReadOnlyModelViewSet):
    """Conversations of the caller's project and their messages."""

    serializer_class = ConversationSerializer
    filterset_class = ConversationFilterSet
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            # The schema reads the model of the action's FilterSet from here.
            model = Message if self.action == "messages" else Conversation
            return model.objects.none()
        return conversation_list(project=self.project)

    def get_object(self) -> Conversation:
        return conversation_detail(
            project=self.project, conversation_id=self.kwargs["pk"]
        )

    def _render(self, conversation: Conversation, status: int = 200) -> Response:
        # Re-read through the selector so the answer is what was stored.
        stored = conversation_detail(
            project=self.project, conversation_id=conversation.pk
        )
        return Response(ConversationSerializer(stored).data, status=status)

    def create(self, request):
        data = validated(ConversationCreateInputSerializer, request.data)
        if "id" in data:
            data["conversation_id"] = data.pop("id")
        conversation, created = conversation_create(
            project=self.project, actor=self.actor, **data
        )
        return self._render(conversation, status=created_status(created))

    def partial_update(self, request, pk=None):
        data = validated(ConversationUpdateInputSerializer, request.data)
        conversation = conversation_get(project=self.project, conversation_id=pk)
        conversation = conversation_update(
            conversation=conversation, actor=self.actor, **data
        )
        return self._render(conversation)

    def _full(self) -> bool:
        value = self.request.query_params.get("fields", "")
        if value not in ("", "full"):
            raise exceptions.ValidationError({"fields": ["Only 'full' is accepted."]})
        return value == "full"

    @extend_schema(
        methods=["GET"],
        summary="List a conversation's messages in seq order",
        description=(
            "Leaves out `content`, `tool_calls` and `metadata` unless `fields=full`."
        ),
        parameters=[FIELDS_PARAMETER],
        # The list shape; `fields=full` adds the left-out fields.
        responses=MessageListSerializer(many=True),
    )
    @extend_schema(
        methods=["POST"],
        summary="Append one message or a list of messages",
        description=(
            "A list is appended in order with consecutive `seq` numbers, all or "
            "nothing. Answers with the message, or a list in the order sent; "
            "201 when at least one message is new, 200 when every id was "
            "already stored with the same body."
        ),
        request=PolymorphicProxySerializer(
            component_name="MessageAppend",
            serializers=[MessageInputSerializer, MessageInputSerializer(many=True)],
            resource_type_field_name=None,
            many=False,
        ),
        responses={
            (201, "application/json"): PolymorphicProxySerializer(
                component_name="MessageAppended",
                serializers=[MessageSerializer, MessageSerializer(many=True)],
                resource_type_field_name=None,
                many=False,
            ),
            413: OpenApiResponse(description="More messages than one request takes."),
        },
    )
    @action(
        detail=True,
        methods=["get", "post"],
        filterset_class=MessageFilterSet,
        pagination_class=SeqCursorPagination,
    )
    def messages(self, request, pk=None):
        if request.method == "POST":
            return self._append(request, pk)
        conversation = conversation_get(project=self.project, conversation_id=pk)
        full = self._full()
        messages = self.filter_queryset(
            message_page_queryset(conversation=conversation, full=full)
        )
        page = self.paginate_queryset(messages)
        serializer_class = MessageSerializer if full else MessageListSerializer
        return self.get_paginated_response(serializer_class(page, many=True).data)

    def _append(self, request, pk) -> Response:
        specs, many = _validated_messages(request.data)
        conversation = conversation_get(project=self.project, conversation_id=pk)
        try:
            results = message_append(
                conversation=conversation, messages=specs, actor=self.actor
            )
        except errors.ValidationError as exc:
            raise errors.ValidationError(_item_fields(exc, many=many)) from exc
        messages: list[Message] = [message for message, _ in results]
        status = created_status(any(created for _, created in results))
        if many:
            return Response(MessageSerializer(messages, many=True).data, status=status)
        return Response(MessageSerializer(messages[0]).data, status=status)
