"""View-only admin of the event log and the audit log."""

from django.contrib import admin, messages

from audit.chain import audit_chain_verify
from audit.models import (
    AuditAction,
    AuditLog,
    DeletionGrant,
    Event,
    EventKind,
    JournalHead,
)
from swarmsite.admin_utils import (
    LargeTableAdminMixin,
    PrettyJSONMixin,
    ReadOnlyAdminMixin,
    UUIDSearchMixin,
    admin_link,
    choices_filter,
    truncate,
)

EventKindFilter = choices_filter(
    "kind",
    [(kind, kind) for kind in EventKind.values],
    title="kind",
    other_label="Custom kinds",
)
AuditActionFilter = choices_filter(
    "action",
    [(action, action) for action in AuditAction.values],
    title="action",
    other_label="Other actions",
)


@admin.register(Event)
class EventAdmin(
    PrettyJSONMixin,
    ReadOnlyAdminMixin,
    LargeTableAdminMixin,
    UUIDSearchMixin,
    admin.ModelAdmin,
):
    """The append-only event log, newest first."""

    json_fields = ("payload",)
    list_display = (
        "id",
        "position",
        "kind",
        "project",
        "task_link",
        "conversation_link",
        "actor_label",
        "occurred_at",
    )
    list_select_related = ("project",)
    list_filter = (
        EventKindFilter,
        "actor_type",
        ("occurred_at", admin.DateFieldListFilter),
        "project",
    )
    search_fields = ("=kind", "=actor_id", "=correlation_id")
    uuid_search_fields = ("uuid", "task_id", "conversation_id")
    ordering = ("-id",)
    sortable_by = ("id",)
    changelist_defer = ("payload",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "uuid",
                    "project",
                    "position",
                    "kind",
                    "task_link",
                    "conversation_link",
                )
            },
        ),
        (
            "Actor",
            {"fields": ("actor_type", "actor_id", "actor_label", "correlation_id")},
        ),
        ("Payload", {"fields": ("payload_json",)}),
        ("Times", {"fields": ("occurred_at", "recorded_at")}),
    )

    def get_ordering(self, request):
        # Links from a task or conversation filter by project too, which the
        # (project, task_id, position) indexes serve in position order.
        if "task_id" in request.GET or "conversation_id" in request.GET:
            return ("-position",)
        return super().get_ordering(request)

    @admin.display(description="task")
    def task_link(self, obj: Event) -> str:
        return admin_link("admin:tasks_task_change", obj.task_id, obj.task_id)

    @admin.display(description="conversation")
    def conversation_link(self, obj: Event) -> str:
        return admin_link(
            "admin:conversations_conversation_change",
            obj.conversation_id,
            obj.conversation_id,
        )


@admin.register(AuditLog)
class AuditLogAdmin(
    PrettyJSONMixin,
    ReadOnlyAdminMixin,
    LargeTableAdminMixin,
    UUIDSearchMixin,
    admin.ModelAdmin,
):
    """The hash-chained audit log, newest first."""

    json_fields = ("details", "changes")
    list_display = (
        "id",
        "occurred_at",
        "project",
        "seq",
        "actor_label",
        "action",
        "short_target",
        "success",
        "status_code",
        "duration_ms",
    )
    list_select_related = ("project",)
    list_filter = (
        AuditActionFilter,
        "success",
        "actor_type",
        ("occurred_at", admin.DateFieldListFilter),
        "project",
    )
    search_fields = ("=request_id", "=actor_id", "=object_id", "^target")
    uuid_search_fields = ("uuid",)
    ordering = ("-id",)
    sortable_by = ("id",)
    changelist_defer = (
        "details",
        "changes",
        "error",
        "user_agent",
        "prev_hash",
        "hash",
    )
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "uuid",
                    "project",
                    "seq",
                    "action",
                    "target",
                    "success",
                    "error",
                )
            },
        ),
        ("Actor", {"fields": ("actor_type", "actor_id", "actor_label")}),
        ("Object", {"fields": ("content_type", "object_id", "object_repr")}),
        (
            "Request",
            {
                "fields": (
                    "request_id",
                    "method",
                    "path",
                    "status_code",
                    "duration_ms",
                    "ip",
                    "user_agent",
                )
            },
        ),
        ("Data", {"fields": ("details_json", "changes_json")}),
        ("Chain", {"fields": ("prev_hash", "hash")}),
        ("Times", {"fields": ("occurred_at", "recorded_at")}),
    )

    @admin.display(description="target")
    def short_target(self, obj: AuditLog) -> str:
        return truncate(obj.target)


@admin.register(JournalHead)
class JournalHeadAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Per-project counters of the event log and the audit chain."""

    list_display = (
        "project",
        "last_position",
        "audit_seq",
        "short_audit_hash",
        "audit_anchor_seq",
    )
    list_select_related = ("project",)
    search_fields = ("project__slug",)
    actions = ("verify_audit_chain",)
    fields = (
        "project",
        "last_position",
        "audit_seq",
        "audit_hash",
        "audit_anchor_seq",
        "audit_anchor_hash",
    )

    @admin.display(description="audit hash")
    def short_audit_hash(self, obj: JournalHead) -> str:
        return obj.audit_hash[:12]

    @admin.action(description="Verify the audit chain of the selected projects")
    def verify_audit_chain(self, request, queryset) -> None:
        for head in queryset.select_related("project"):
            report = audit_chain_verify(project_id=head.project_id)
            if report.intact:
                self.message_user(
                    request,
                    f"{head.project}: {report.checked} audit records, chain intact.",
                    level=messages.SUCCESS,
                )
            else:
                self.message_user(
                    request,
                    f"{head.project}: chain broken at seq {report.broken_at}: "
                    f"{report.reason}.",
                    level=messages.ERROR,
                )


@admin.register(DeletionGrant)
class DeletionGrantAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Grants that let pruning delete from the append-only tables (normally none)."""

    list_display = ("id", "reason", "created_at")
    fields = ("reason", "created_at")
