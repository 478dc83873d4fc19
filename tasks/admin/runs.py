"""Admin of agent runs; started through run_create, reported through run_update."""

from django.contrib import admin

from swarmsite.admin_utils import (
    JSON_FORMFIELD_OVERRIDES,
    LargeTableAdminMixin,
    ServiceAdminMixin,
    UUIDSearchMixin,
    admin_actor,
    changed_fields,
)
from tasks.admin.tasks import TASK_BIG_FIELDS
from tasks.models import AgentRun
from tasks.services import RUN_UPDATABLE_FIELDS, run_create, run_update


@admin.register(AgentRun)
class AgentRunAdmin(
    ServiceAdminMixin, LargeTableAdminMixin, UUIDSearchMixin, admin.ModelAdmin
):
    """Agent runs: started through run_create, reported through run_update."""

    formfield_overrides = JSON_FORMFIELD_OVERRIDES
    list_display = (
        "id",
        "task",
        "agent",
        "status",
        "model",
        "started_at",
        "ended_at",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "project",
    )
    list_select_related = ("task", "agent", "project")
    list_filter = ("status", ("created_at", admin.DateFieldListFilter), "project")
    search_fields = ("=model",)
    uuid_search_fields = ("id", "task", "agent")
    ordering = ("-created_at",)
    sortable_by = ("created_at",)
    autocomplete_fields = ("project", "task", "agent")
    add_fields = (
        "project",
        "task",
        "agent",
        "status",
        "model",
        "started_at",
        "output_summary",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cost",
        "error",
        "metadata",
    )
    change_readonly_fields = (
        "id",
        "project",
        "task",
        "agent",
        "started_at",
        "ended_at",
        "created_at",
        "updated_at",
    )

    def get_fields(self, request, obj=None):
        if obj is None:
            return self.add_fields
        return ("id", *self.add_fields, "ended_at", "created_at", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.change_readonly_fields

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_queryset(self, qs):
        return qs.defer(
            "output_summary",
            "error",
            "metadata",
            *(f"task__{f}" for f in TASK_BIG_FIELDS),
        )

    def service_save(self, request, form, formsets, change):
        actor = admin_actor(request)
        data = form.cleaned_data
        if change:
            run = AgentRun.objects.get(pk=form.instance.pk)
            fields = changed_fields(form, RUN_UPDATABLE_FIELDS)
            return run_update(run=run, actor=actor, **fields) if fields else run
        run, _ = run_create(
            project=data["project"],
            task=data["task"],
            agent=data["agent"],
            run_id=form.instance.pk,
            status=data["status"],
            output_summary=data["output_summary"],
            model=data["model"],
            prompt_tokens=data["prompt_tokens"],
            completion_tokens=data["completion_tokens"],
            cached_tokens=data["cached_tokens"],
            cost=data["cost"],
            error=data["error"],
            metadata=data["metadata"],
            started_at=data["started_at"],
            actor=actor,
        )
        return run
