"""Admin of conversations, messages and memories; writes go through
conversations.services."""

import uuid

from django.contrib import admin
from django.db.models import OuterRef, Prefetch, Subquery
from django.db.models.functions import Substr
from django.utils.html import format_html, format_html_join

from conversations.models import (
    Conversation,
    Memory,
    Message,
    MessageRecipient,
    Participant,
)
from conversations.selectors import (
    MAX_SEARCH_RESULTS,
    memory_list,
    memory_search,
    participant_list,
)
from conversations.services import conversation_create, conversation_update
from swarmsite.admin_utils import (
    JSON_FORMFIELD_OVERRIDES,
    LargeTableAdminMixin,
    PrettyJSONMixin,
    ReadOnlyAdminMixin,
    ReadOnlyTabularInline,
    ServiceAdminMixin,
    UUIDSearchMixin,
    admin_actor,
    changelist_link,
    truncate,
)
from swarmsite.models import Project
from tasks.admin import TASK_BIG_FIELDS

MESSAGES_PER_PAGE = 50
PREVIEW_LENGTH = 120
TRANSCRIPT_LENGTH = 500


def _after_seq(request) -> int:
    try:
        return max(0, int(request.GET.get("after_seq", 0)))
    except ValueError:
        return 0


class ParticipantInline(admin.TabularInline):
    """The agents of a conversation; saved through the conversation services."""

    model = Participant
    fields = ("agent", "role", "joined_at", "message_count", "last_read_seq")
    readonly_fields = ("role", "joined_at", "message_count", "last_read_seq")
    autocomplete_fields = ("agent",)
    extra = 0
    verbose_name_plural = "active participants (deleting one makes it leave)"

    def get_queryset(self, request):
        # Former participants are listed in the transcript; removing a row
        # here makes the agent leave, its history kept.
        return super().get_queryset(request).filter(active=True).select_related("agent")


class MessageInline(ReadOnlyTabularInline):
    """One page of a conversation's messages in seq order."""

    model = Message
    limit = MESSAGES_PER_PAGE
    fields = (
        "seq",
        "role",
        "sender",
        "short_content",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "created_at",
    )
    select_related = ("sender",)
    ordering = ("seq",)

    def get_queryset(self, request):
        return super().get_queryset(request).defer("tool_calls", "metadata")

    def get_formset_filters(self, request, obj):
        return {"seq__gt": _after_seq(request)}

    def get_formset(self, request, obj=None, **kwargs):
        if obj is not None:
            # Inline instances are made per request, so this is not shared.
            first = _after_seq(request) + 1
            last = min(first + MESSAGES_PER_PAGE - 1, obj.message_count)
            self.verbose_name_plural = (
                f"messages {first}–{last} of {obj.message_count}"
                if last >= first
                else "messages"
            )
        return super().get_formset(request, obj, **kwargs)

    @admin.display(description="content")
    def short_content(self, obj: Message) -> str:
        return truncate(obj.content, 200)


class TaskConversationInline(ReadOnlyTabularInline):
    """The latest conversations of a task, shown on the task's page."""

    model = Conversation
    fk_name = "task"
    fields = ("title", "status", "message_count", "last_message_at", "created_at")
    ordering = ("-created_at",)
    verbose_name_plural = "latest conversations"

    def get_queryset(self, request):
        return super().get_queryset(request).defer("metadata")


def _participants(formset) -> list:
    if formset is None:
        return []
    deleted = formset.deleted_forms
    return [
        form.cleaned_data["agent"]
        for form in formset.forms
        if form.cleaned_data.get("agent") and form not in deleted
    ]


@admin.register(Conversation)
class ConversationAdmin(
    ServiceAdminMixin, LargeTableAdminMixin, UUIDSearchMixin, admin.ModelAdmin
):
    """Conversations: opened and changed through the conversation services."""

    formfield_overrides = JSON_FORMFIELD_OVERRIDES
    list_display = (
        "display_title",
        "project",
        "task",
        "status",
        "message_count",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "last_message_at",
        "created_at",
    )
    list_select_related = ("project", "task")
    list_filter = ("status", ("created_at", admin.DateFieldListFilter), "project")
    search_fields = ("title",)
    uuid_search_fields = ("id", "task")
    ordering = ("-created_at",)
    sortable_by = ("created_at",)
    changelist_defer = ("metadata", *(f"task__{f}" for f in TASK_BIG_FIELDS))
    # Read by the task page (OfferedInlinesMixin): tasks cannot import this app.
    inlines_for = {"tasks.Task": TaskConversationInline}
    autocomplete_fields = ("project", "task")
    add_fields = ("project", "task", "title", "metadata")
    change_fieldsets = (
        (None, {"fields": ("id", "project", "task", "title", "status", "metadata")}),
        (
            "Transcript",
            {"fields": ("participants_state", "transcript")},
        ),
        (
            "Messages",
            {
                "fields": (
                    "message_pages",
                    "message_count",
                    "last_message_at",
                    "prompt_tokens",
                    "completion_tokens",
                    "cached_tokens",
                    "cost",
                )
            },
        ),
        ("Times", {"fields": ("created_at", "updated_at")}),
    )
    change_readonly_fields = (
        "id",
        "project",
        "task",
        "participants_state",
        "transcript",
        "message_pages",
        "message_count",
        "last_message_at",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cost",
        "created_at",
        "updated_at",
    )

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return ((None, {"fields": self.add_fields}),)
        return self.change_fieldsets

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.change_readonly_fields

    def get_inlines(self, request, obj):
        return (
            (ParticipantInline,) if obj is None else (ParticipantInline, MessageInline)
        )

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            # Read by message_pages, which gets no request.
            obj.admin_after_seq = _after_seq(request)
        return obj

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="conversation", ordering="created_at")
    def display_title(self, obj: Conversation) -> str:
        return obj.title or str(obj.pk)

    @admin.display(description="pages")
    def message_pages(self, obj: Conversation) -> str:
        after = getattr(obj, "admin_after_seq", 0)
        total = obj.message_count
        pages = []
        if after > 0:
            pages.append(("?after_seq=0", "« first"))
            pages.append(
                (f"?after_seq={max(0, after - MESSAGES_PER_PAGE)}", "‹ previous")
            )
        if after + MESSAGES_PER_PAGE < total:
            pages.append((f"?after_seq={after + MESSAGES_PER_PAGE}", "next ›"))
            pages.append((f"?after_seq={total - MESSAGES_PER_PAGE}", "last »"))
        links = format_html_join(" · ", '<a href="{}">{}</a>', pages)
        everything = changelist_link(
            "admin:conversations_message_changelist",
            "All messages in the message list",
            conversation__id__exact=obj.pk,
        )
        return format_html(
            "{} messages, {} per page below. {} {}",
            total,
            MESSAGES_PER_PAGE,
            links,
            everything,
        )

    @admin.display(description="participants")
    def participants_state(self, obj: Conversation) -> str:
        rows = format_html_join(
            "",
            "<li>{} <em>{}</em>: {}, {} sent, read up to #{}</li>",
            (
                (
                    link.agent.name,
                    link.role or "no role",
                    "active" if link.active else f"left {link.left_at:%Y-%m-%d %H:%M}",
                    link.message_count,
                    link.last_read_seq,
                )
                for link in participant_list(conversation=obj).select_related("agent")
            ),
        )
        return format_html("<ul>{}</ul>", rows) if rows else "none"

    @admin.display(description="transcript")
    def transcript(self, obj: Conversation) -> str:
        """One page of messages as a transcript: who to whom, threads, revisions."""
        after = getattr(obj, "admin_after_seq", 0)
        messages = (
            Message.objects.filter(conversation=obj, seq__gt=after)
            .select_related("sender")
            .prefetch_related(
                Prefetch(
                    "recipient_links",
                    queryset=MessageRecipient.objects.select_related("agent").order_by(
                        "id"
                    ),
                )
            )
            .annotate(
                reply_seq=Subquery(
                    Message.objects.filter(pk=OuterRef("reply_to_id")).values("seq")
                ),
                thread_seq=Subquery(
                    Message.objects.filter(pk=OuterRef("thread")).values("seq")
                ),
                content_head=Substr("content", 1, TRANSCRIPT_LENGTH + 1),
            )
            .defer("content", "tool_calls", "metadata")
            .order_by("seq")[:MESSAGES_PER_PAGE]
        )
        lines = []
        for m in messages:
            to = ", ".join(link.agent.name for link in m.recipient_links.all())
            reply = f" ↳ #{m.reply_seq}" if m.reply_seq else ""
            thread = f" thread #{m.thread_seq}" if m.thread_seq != m.seq else ""
            revised = f" (revised, revision {m.revision})" if m.revision > 1 else ""
            lines.append(
                (
                    m.seq,
                    m.role,
                    m.sender.name if m.sender else "—",
                    f" → {to}" if to else "",
                    f"{reply}{thread}",
                    revised,
                    truncate(m.content_head or "", TRANSCRIPT_LENGTH),
                )
            )
        if not lines:
            return "no messages"
        return format_html(
            '<ol class="transcript" style="list-style:none;padding:0">{}</ol>',
            format_html_join(
                "",
                "<li><b>#{} {}</b> {}{}<small>{}</small><em>{}</em>: {}</li>",
                lines,
            ),
        )

    def service_save(self, request, form, formsets, change):
        actor = admin_actor(request)
        data = form.cleaned_data
        participants = next((fs for fs in formsets if fs.model is Participant), None)
        if not change:
            conversation, _ = conversation_create(
                project=data["project"],
                conversation_id=form.instance.pk,
                task=data["task"],
                title=data["title"],
                participants=_participants(participants),
                metadata=data["metadata"],
                actor=actor,
            )
            return conversation
        conversation = Conversation.objects.select_related("project").get(
            pk=form.instance.pk
        )
        fields = {
            name: data[name]
            for name in form.changed_data
            if name in ("title", "status", "metadata")
        }
        if participants is not None and participants.has_changed():
            fields["participants"] = _participants(participants)
        if not fields:
            return conversation
        return conversation_update(conversation=conversation, actor=actor, **fields)


@admin.register(Participant)
class ParticipantAdmin(
    ReadOnlyAdminMixin, LargeTableAdminMixin, UUIDSearchMixin, admin.ModelAdmin
):
    """Who takes part in which conversation; edited on the conversation's page."""

    list_display = ("id", "conversation", "agent", "joined_at")
    list_select_related = ("conversation", "agent")
    search_fields = ("agent__name",)
    uuid_search_fields = ("conversation", "agent")
    ordering = ("-id",)
    sortable_by = ("id",)
    changelist_defer = ("conversation__metadata",)
    fields = ("conversation", "agent", "joined_at")


@admin.register(Message)
class MessageAdmin(
    PrettyJSONMixin,
    ReadOnlyAdminMixin,
    LargeTableAdminMixin,
    UUIDSearchMixin,
    admin.ModelAdmin,
):
    """Messages, view only: appended through message_append and never changed."""

    json_fields = ("tool_calls", "metadata")
    list_display = (
        "seq",
        "conversation",
        "role",
        "sender",
        "content_preview",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "created_at",
    )
    list_select_related = ("conversation", "sender")
    list_filter = ("role", ("created_at", admin.DateFieldListFilter), "project")
    search_fields = ("=tool_call_id", "=model", "content")
    uuid_search_fields = ("id", "conversation", "sender", "reply_to")
    # (conversation_id, seq) is unique and indexed: threads in order.
    ordering = ("conversation_id", "seq")
    sortable_by = ()
    fields = (
        "id",
        "project",
        "conversation",
        "seq",
        "role",
        "sender",
        "reply_to",
        "content",
        "tool_calls_json",
        "tool_call_id",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cost",
        "latency_ms",
        "metadata_json",
        "created_at",
    )

    def changelist_queryset(self, qs):
        # Contents can be long: the list reads only their beginning.
        return qs.annotate(content_head=Substr("content", 1, PREVIEW_LENGTH + 1)).defer(
            "content", "tool_calls", "metadata", "conversation__metadata"
        )

    @admin.display(description="content")
    def content_preview(self, obj: Message) -> str:
        return truncate(getattr(obj, "content_head", None) or "", PREVIEW_LENGTH)


@admin.register(Memory)
class MemoryAdmin(
    PrettyJSONMixin,
    ReadOnlyAdminMixin,
    LargeTableAdminMixin,
    UUIDSearchMixin,
    admin.ModelAdmin,
):
    """Memories, view only; the search box ranks like `?q=` in the API."""

    json_fields = ("tags", "metadata")
    list_display = (
        "display_key",
        "project",
        "agent",
        "namespace",
        "content_preview",
        "version",
        "expires_at",
        "created_at",
    )
    list_select_related = ("project", "agent")
    list_filter = ("namespace", ("created_at", admin.DateFieldListFilter), "project")
    search_fields = ("content",)
    uuid_search_fields = ("uuid", "agent", "task", "conversation")
    ordering = ("-created_at", "-id")
    sortable_by = ("created_at",)
    fields = (
        "uuid",
        "project",
        "agent",
        "namespace",
        "key",
        "content",
        "tags_json",
        "metadata_json",
        "task",
        "conversation",
        "expires_at",
        "version",
        "created_at",
        "updated_at",
    )

    def changelist_queryset(self, qs):
        return qs.annotate(content_head=Substr("content", 1, PREVIEW_LENGTH + 1)).defer(
            "content", "metadata"
        )

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            uuid.UUID(term)
        except ValueError:
            pass
        else:
            return super().get_search_results(request, queryset, search_term)
        # The API's full-text search in each project; the list's filters
        # then apply to what it found.
        ids: list[int] = []
        for project in Project.objects.all():
            page = memory_search(
                memories=memory_list(project=project),
                text=search_term,
                limit=MAX_SEARCH_RESULTS,
            )
            ids += [m.pk for m in page.results]
        return queryset.filter(pk__in=ids), False

    @admin.display(description="memory", ordering="created_at")
    def display_key(self, obj: Memory) -> str:
        return obj.key or str(obj.uuid)

    @admin.display(description="content")
    def content_preview(self, obj: Memory) -> str:
        return truncate(getattr(obj, "content_head", None) or "", PREVIEW_LENGTH)
