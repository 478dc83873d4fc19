"""Admin of workflows; created through workflow_create."""

from django.contrib import admin

from swarmsite.admin_utils import (
    JSON_FORMFIELD_OVERRIDES,
    ServiceAdminMixin,
    UUIDSearchMixin,
    admin_actor,
    changelist_link,
)
from swarmsite.errors import ValidationError
from tasks.models import Workflow
from tasks.services import workflow_create


@admin.register(Workflow)
class WorkflowAdmin(ServiceAdminMixin, UUIDSearchMixin, admin.ModelAdmin):
    """Workflows: created through workflow_create, not edited here."""

    formfield_overrides = JSON_FORMFIELD_OVERRIDES
    list_display = (
        "name",
        "status",
        "tasks_total",
        "tasks_queued",
        "tasks_running",
        "tasks_completed",
        "tasks_failed",
        "tasks_cancelled",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "project",
        "created_at",
    )
    list_select_related = ("project",)
    list_filter = ("project",)
    search_fields = ("name",)
    date_hierarchy = "created_at"
    ordering = ("name",)
    autocomplete_fields = ("project",)
    fields = ("project", "name", "description", "metadata")

    # Roll-ups kept by the task and usage services; the status derives from them.
    rollup_fields = (
        "status",
        "tasks_total",
        "tasks_pending",
        "tasks_queued",
        "tasks_running",
        "tasks_waiting",
        "tasks_completed",
        "tasks_failed",
        "tasks_cancelled",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cost",
    )

    def get_fields(self, request, obj=None):
        if obj is None:
            return self.fields
        return (
            "id",
            *self.fields,
            *self.rollup_fields,
            "tasks_link",
            "created_at",
            "updated_at",
        )

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("id", *self.rollup_fields, "tasks_link", "created_at", "updated_at")

    @admin.display(description="status")
    def status(self, obj: Workflow) -> str:
        return obj.status

    @admin.display(description="tasks")
    def tasks_total(self, obj: Workflow) -> int:
        return obj.tasks_total

    # No workflow_update service yet: a workflow cannot be changed here.
    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="tasks")
    def tasks_link(self, obj: Workflow) -> str:
        return changelist_link(
            "admin:tasks_task_changelist",
            "Tasks of this workflow",
            workflow__id__exact=obj.pk,
        )

    def service_save(self, request, form, formsets, change):
        data = form.cleaned_data
        workflow, created = workflow_create(
            project=data["project"],
            name=data["name"],
            description=data["description"],
            metadata=data["metadata"],
            workflow_id=form.instance.pk,
            actor=admin_actor(request),
        )
        if not created:
            raise ValidationError({"name": f"A workflow named {workflow} exists."})
        return workflow
