"""HTTP API of conversations, participants, messages and memories: validate,
call a service, render."""

from __future__ import annotations

import base64
import binascii
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
from rest_framework.utils.urls import remove_query_param, replace_query_param

from conversations.filters import (
    ConversationFilterSet,
    MemoryFilterSet,
    MessageFeedFilterSet,
    MessageFilterSet,
)
from conversations.models import Conversation, Memory, Message
from conversations.selectors import (
    MAX_SEARCH_RESULTS,
    conversation_detail,
    conversation_get,
    conversation_list,
    memory_get,
    memory_list,
    memory_search,
    message_feed,
    message_get,
    message_page_queryset,
    participant_list,
)
from conversations.serializers import (
    ConversationCreateInputSerializer,
    ConversationSerializer,
    ConversationUpdateInputSerializer,
    MemoryInputSerializer,
    MemorySearchResultSerializer,
    MemorySerializer,
    MemoryUpdateInputSerializer,
    MessageInputSerializer,
    MessageListSerializer,
    MessageReviseInputSerializer,
    MessageSerializer,
    ParticipantJoinInputSerializer,
    ParticipantSerializer,
    ReadInputSerializer,
)
from conversations.services import (
    MAX_MESSAGES_PER_APPEND,
    conversation_create,
    conversation_update,
    memory_delete,
    memory_put,
    memory_update,
    message_append,
    message_revise,
    participant_join,
    participant_leave,
    participant_read,
)
from swarmsite import errors
from swarmsite.exceptions import RequestTooLarge
from swarmsite.filters import wants_full
from swarmsite.pagination import (
    CreatedCursorPagination,
    SeqCursorPagination,
    page_size_from,
)
from swarmsite.permissions import ProjectScopedMixin
from swarmsite.serializers import created_status, validated
from swarmsite.validation import parse_uuid

# The service names a bad item `messages[2].role`; the API says `2.role`,
# as DRF's own list errors are flattened.
_SERVICE_ITEM_FIELD = re.compile(r"^messages\[(\d+)\]\.(.+)$")

FIELDS_PARAMETER = OpenApiParameter(
    "fields",
    OpenApiTypes.STR,
    enum=["full"],
    description="`full` adds `content`, `tool_calls` and `metadata` to each message.",
)

# The answer of an append: the message, or the list sent.
MESSAGES_APPENDED = PolymorphicProxySerializer(
    component_name="MessageAppended",
    serializers=[MessageSerializer, MessageSerializer(many=True)],
    resource_type_field_name=None,
    many=False,
)


class ParticipantPagination(CreatedCursorPagination):
    """A conversation's participants in the order they first joined."""

    ordering = ("id",)


class FeedPagination(CreatedCursorPagination):
    """Messages across conversations in creation order, oldest first."""

    ordering = ("created_at", "id")


def _path_uuid(value: str, what: str):
    """A UUID from the URL path; anything else is not found."""
    try:
        return parse_uuid(value)
    except errors.ValidationError as exc:
        raise errors.NotFound(f"No {what} {value}.") from exc


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
    # DELETE only for a participant (leave): conversations are not deleted.
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

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
        return wants_full(self.request.query_params)

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
            (201, "application/json"): MESSAGES_APPENDED,
            (200, "application/json"): OpenApiResponse(
                MESSAGES_APPENDED,
                description="Every message id was already stored with that body.",
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

    @extend_schema(
        methods=["GET"],
        summary="List a conversation's participants, former ones included",
        responses=ParticipantSerializer(many=True),
    )
    @extend_schema(
        methods=["POST"],
        summary="Add an agent to a conversation (a former participant rejoins)",
        request=ParticipantJoinInputSerializer,
        responses={
            201: ParticipantSerializer,
            200: OpenApiResponse(
                ParticipantSerializer,
                description="The agent was a participant already, or rejoined.",
            ),
        },
    )
    @action(
        detail=True,
        methods=["get", "post"],
        pagination_class=ParticipantPagination,
        filterset_class=None,
    )
    def participants(self, request, pk=None):
        conversation = conversation_get(project=self.project, conversation_id=pk)
        if request.method == "POST":
            data = validated(ParticipantJoinInputSerializer, request.data)
            link, created = participant_join(
                conversation=conversation, actor=self.actor, **data
            )
            return Response(
                ParticipantSerializer(link).data, status=created_status(created)
            )
        page = self.paginate_queryset(participant_list(conversation=conversation))
        return self.get_paginated_response(ParticipantSerializer(page, many=True).data)

    @extend_schema(
        summary="Make an agent leave a conversation; its history is kept",
        request=None,
        # A DELETE is documented as a 204 unless told: this one answers the
        # participant, now inactive.
        responses={200: ParticipantSerializer},
        parameters=[OpenApiParameter("agent_id", OpenApiTypes.UUID, "path")],
    )
    @action(
        detail=True,
        methods=["delete"],
        url_path=r"participants/(?P<agent_id>[^/]+)",
        filterset_class=None,
    )
    def participant_leave(self, request, pk=None, agent_id=None):
        conversation = conversation_get(project=self.project, conversation_id=pk)
        link = participant_leave(
            conversation=conversation,
            agent=_path_uuid(agent_id, "participant"),
            actor=self.actor,
        )
        return Response(ParticipantSerializer(link).data)

    @extend_schema(
        summary="Move an agent's read marker forward (never back)",
        request=ReadInputSerializer,
        responses=ParticipantSerializer,
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def read(self, request, pk=None):
        data = validated(ReadInputSerializer, request.data)
        conversation = conversation_get(project=self.project, conversation_id=pk)
        link = participant_read(conversation=conversation, actor=self.actor, **data)
        return Response(ParticipantSerializer(link).data)

    @extend_schema(
        summary="Revise a message's content; the earlier text stays in the events",
        description=(
            "The message shows the new content, `revision` + 1 and `revised_at`; "
            "the event `message.revised` keeps the previous content. An `id` "
            "names the operation: repeating it changes nothing."
        ),
        request=MessageReviseInputSerializer,
        responses=MessageSerializer,
        parameters=[OpenApiParameter("message_id", OpenApiTypes.UUID, "path")],
    )
    @action(
        detail=True,
        methods=["post"],
        url_path=r"messages/(?P<message_id>[^/]+)/revise",
        filterset_class=None,
    )
    def revise(self, request, pk=None, message_id=None):
        data = validated(MessageReviseInputSerializer, request.data)
        conversation = conversation_get(project=self.project, conversation_id=pk)
        message = message_get(
            conversation=conversation, message_id=_path_uuid(message_id, "message")
        )
        message = message_revise(
            message=message,
            content=data["content"],
            operation_id=data.get("id"),
            actor=self.actor,
        )
        stored = message_page_queryset(conversation=conversation).get(pk=message.pk)
        return Response(MessageSerializer(stored).data)


@extend_schema_view(
    list=extend_schema(
        summary="List messages across conversations in creation order",
        description=(
            "Filters: `sender`, `recipient`, `thread`, `conversation`, "
            "`unread_by` (an agent: messages addressed to it after its read "
            "marker in their conversation), `role`, `created_after`, "
            "`created_before`. Leaves out `content`, `tool_calls` and "
            "`metadata` unless `fields=full`."
        ),
        parameters=[FIELDS_PARAMETER],
        responses=MessageListSerializer(many=True),
    ),
    retrieve=extend_schema(summary="Get a message", responses=MessageSerializer),
)
class MessageViewSet(ProjectScopedMixin, viewsets.ReadOnlyModelViewSet):
    """The project's messages across conversations: inboxes and threads."""

    serializer_class = MessageListSerializer
    filterset_class = MessageFeedFilterSet
    pagination_class = FeedPagination

    def _full(self) -> bool:
        return wants_full(self.request.query_params) or self.action == "retrieve"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Message.objects.none()
        return message_feed(project=self.project, full=self._full())

    def get_serializer_class(self):
        return MessageSerializer if self._full() else MessageListSerializer

    def get_object(self) -> Message:
        pk = _path_uuid(self.kwargs["pk"], "message")
        try:
            return self.get_queryset().get(pk=pk)
        except Message.DoesNotExist as exc:
            raise errors.NotFound(f"No message {pk}.") from exc


SEARCH_PARAMETER = OpenApiParameter(
    "q",
    OpenApiTypes.STR,
    description=(
        "Words to search for: memories matching any of them, most relevant "
        "first, each with its `score`. Without `q`, newest first."
    ),
)


def _search_offset(request) -> int:
    raw = request.query_params.get("cursor")
    if not raw:
        return 0
    try:
        text = base64.urlsafe_b64decode(raw.encode()).decode()
        key, _, value = text.partition("=")
        offset = int(value)
        if key != "o" or not 0 <= offset < MAX_SEARCH_RESULTS:
            raise ValueError(text)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise exceptions.ValidationError({"cursor": ["Invalid cursor."]}) from exc
    return offset


def _search_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o={offset}".encode()).decode()


@extend_schema_view(
    list=extend_schema(
        summary="List or search memories",
        description=(
            "With `q`, full-text search ranked by relevance (at most "
            f"{MAX_SEARCH_RESULTS} results, paged); without it, newest first. "
            "Expired memories are never returned."
        ),
        parameters=[SEARCH_PARAMETER],
        responses=MemorySearchResultSerializer(many=True),
    ),
    retrieve=extend_schema(summary="Get a memory"),
    create=extend_schema(
        summary="Write a memory (with `key`: create or update that entry)",
        request=MemoryInputSerializer,
        responses={
            201: MemorySerializer,
            200: OpenApiResponse(
                MemorySerializer,
                description="Updated, or identical to what is stored.",
            ),
        },
    ),
    partial_update=extend_schema(
        summary="Change a memory's content, tags, metadata, links or expiry",
        request=MemoryUpdateInputSerializer,
        responses=MemorySerializer,
    ),
    destroy=extend_schema(summary="Delete a memory", responses={204: None}),
)
class MemoryViewSet(ProjectScopedMixin, viewsets.ModelViewSet):
    """Memories of the caller's project: put, get, search, change, delete."""

    serializer_class = MemorySerializer
    filterset_class = MemoryFilterSet
    pagination_class = CreatedCursorPagination
    # The public id is `uuid`; the integer key stays inside.
    lookup_field = "uuid"
    lookup_url_kwarg = "id"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_serializer_class(self):
        # A list answers in the documented shape, `score` null without `q`.
        if self.action == "list":
            return MemorySearchResultSerializer
        return MemorySerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Memory.objects.none()
        return memory_list(project=self.project)

    def get_object(self) -> Memory:
        return memory_get(
            project=self.project, memory_id=_path_uuid(self.kwargs["id"], "memory")
        )

    def list(self, request, *args, **kwargs):
        text = request.query_params.get("q")
        if text is None:
            return super().list(request, *args, **kwargs)
        memories = self.filter_queryset(self.get_queryset())
        offset = _search_offset(request)
        limit = page_size_from(request)
        page = memory_search(memories=memories, text=text, offset=offset, limit=limit)
        url = request.build_absolute_uri()
        next_url = (
            replace_query_param(url, "cursor", _search_cursor(offset + limit))
            if page.more
            else None
        )
        previous_url = None
        if offset > 0:
            previous_url = (
                replace_query_param(url, "cursor", _search_cursor(offset - limit))
                if offset - limit > 0
                else remove_query_param(url, "cursor")
            )
        return Response(
            {
                "next": next_url,
                "previous": previous_url,
                "results": MemorySearchResultSerializer(page.results, many=True).data,
            }
        )

    def create(self, request, *args, **kwargs):
        data = validated(MemoryInputSerializer, request.data)
        if "id" in data:
            data["memory_id"] = data.pop("id")
        memory, created = memory_put(project=self.project, actor=self.actor, **data)
        return Response(MemorySerializer(memory).data, status=created_status(created))

    def partial_update(self, request, *args, **kwargs):
        data = validated(MemoryUpdateInputSerializer, request.data)
        memory = memory_update(
            memory=self.get_object(),
            operation_id=data.pop("id", None),
            actor=self.actor,
            **data,
        )
        return Response(MemorySerializer(memory).data)

    def destroy(self, request, *args, **kwargs):
        memory_delete(memory=self.get_object(), actor=self.actor)
        return Response(status=204)
