"""Admin of agents and their heartbeats; writes go through tasks.services."""

import json

from django.contrib import admin

from swarmsite.admin_utils import (
    JSON_FORMFIELD_OVERRIDES,
    LargeTableAdminMixin,
    PrettyJSONMixin,
    ReadOnlyAdminMixin,
    ReadOnlyTabularInline,
    ServiceAdminMixin,
    UUIDSearchMixin,
    admin_actor,
    changed_fields,
    truncate,
)
from swarmsite.errors import ValidationError
from tasks.models import Agent, AgentHeartbeat
from tasks.services import AGENT_UPDATABLE_FIELDS, agent_register, agent_update


class HeartbeatInline(ReadOnlyTabularInline):
    """The latest heartbeats of an agent."""

    model = AgentHeartbeat
    fields = ("status", "created_at", "short_details")
    ordering = ("-id",)
    verbose_name_plural = "latest heartbeats"
    show_change_link = True

    @admin.display(description="details")
    def short_details(self, obj: AgentHeartbeat) -> str:
        return truncate(json.dumps(obj.details, default=str), 120)


@admin.register(Agent)
class AgentAdmin(ServiceAdminMixin, UUIDSearchMixin, admin.ModelAdmin):
    """Agents: registered through agent_register, changed through agent_update."""

    formfield_overrides = JSON_FORMFIELD_OVERRIDES
    list_display = (
        "name",
        "project",
        "role",
        "model",
        "status",
        "parent",
        "last_heartbeat_at",
        "created_at",
    )
    list_select_related = ("project", "parent")
    list_filter = ("status", "project", "role")
    search_fields = ("name", "role", "model")
    uuid_search_fields = ("id", "parent")
    date_hierarchy = "created_at"
    ordering = ("name",)
    autocomplete_fields = ("project", "parent")
    inlines = (HeartbeatInline,)
    add_fields = (
        "project",
        "name",
        "role",
        "model",
        "parent",
        "capabilities",
        "config",
        "metadata",
    )
    change_fields = (
        "id",
        "project",
        "name",
        "role",
        "model",
        "parent",
        "status",
        "capabilities",
        "config",
        "metadata",
        "last_heartbeat_at",
        "created_at",
        "updated_at",
    )
    change_readonly_fields = (
        "id",
        "project",
        "last_heartbeat_at",
        "created_at",
        "updated_at",
    )

    def get_fields(self, request, obj=None):
        return self.add_fields if obj is None else self.change_fields

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.change_readonly_fields

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else ()

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def service_save(self, request, form, formsets, change):
        actor = admin_actor(request)
        data = form.cleaned_data
        if change:
            agent = Agent.objects.select_related("project").get(pk=form.instance.pk)
            fields = changed_fields(form, AGENT_UPDATABLE_FIELDS)
            return agent_update(agent=agent, actor=actor, **fields) if fields else agent
        agent, created = agent_register(
            project=data["project"],
            name=data["name"],
            role=data["role"],
            model=data["model"],
            parent=data["parent"],
            capabilities=data["capabilities"],
            config=data["config"],
            metadata=data["metadata"],
            agent_id=form.instance.pk,
            actor=actor,
        )
        if not created:
            raise ValidationError({"name": f"An agent named {agent.name} exists."})
        return agent


@admin.register(AgentHeartbeat)
class AgentHeartbeatAdmin(
    PrettyJSONMixin,
    ReadOnlyAdminMixin,
    LargeTableAdminMixin,
    UUIDSearchMixin,
    admin.ModelAdmin,
):
    """Agent health reports, newest first; recorded by agent_heartbeat only."""

    json_fields = ("details",)
    list_display = ("id", "agent", "status", "project", "created_at")
    list_select_related = ("agent", "project")
    list_filter = ("status", ("created_at", admin.DateFieldListFilter), "project")
    search_fields = ("agent__name",)
    uuid_search_fields = ("agent",)
    ordering = ("-id",)
    sortable_by = ("id",)
    changelist_defer = ("details",)
