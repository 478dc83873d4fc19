"""Admin of tasks and their dependencies; writes go through tasks.services."""

import json

from django import forms
from django.contrib import admin
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime

from audit.selectors import event_list_for_task
from swarmsite.admin_utils import (
    JSON_FORMFIELD_OVERRIDES,
    LargeTableAdminMixin,
    OfferedInlinesMixin,
    PrettyJSONMixin,
    ReadOnlyTabularInline,
    ServiceAdminMixin,
    UUIDSearchMixin,
    admin_actor,
    admin_link,
    changed_fields,
    changelist_link,
    run_service_action,
    truncate,
)
from tasks.models import AgentRun, Task, TaskDependency, TaskStatus
from tasks.selectors import blocked_expression
from tasks.services import (
    TASK_UPDATABLE_FIELDS,
    task_create,
    task_dependency_add,
    task_dependency_remove,
    task_retry,
    task_transition,
    task_update,
)

# Columns of a task that lists never show; also deferred behind select_related.
TASK_BIG_FIELDS = (
    "description",
    "input",
    "result",
    "result_summary",
    "error",
    "files_touched",
    "metadata",
)
EVENTS_SHOWN = 20
TASK_MAIN_FIELDS = (
    "project",
    "title",
    "description",
    "priority",
    "session_id",
    "workflow",
    "parent",
    "assigned_agent",
    "agents",
)
TASK_DATA_FIELDS = ("input", "metadata", "files_touched")


class DependencyInline(admin.TabularInline):
    """The tasks this task waits for; saved through the dependency services."""

    model = TaskDependency
    fk_name = "task"
    fields = ("depends_on", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("depends_on",)
    extra = 0
    verbose_name = "dependency"
    verbose_name_plural = "depends on"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("depends_on")


class SubtaskInline(ReadOnlyTabularInline):
    """The latest subtasks of a task."""

    model = Task
    fk_name = "parent"
    fields = ("title", "status", "progress", "assigned_agent", "created_at")
    select_related = ("assigned_agent",)
    ordering = ("-created_at",)
    verbose_name = "subtask"
    verbose_name_plural = "latest subtasks"

    def get_queryset(self, request):
        return super().get_queryset(request).defer(*TASK_BIG_FIELDS)


class RunInline(ReadOnlyTabularInline):
    """The latest runs of a task."""

    model = AgentRun
    fields = (
        "agent",
        "status",
        "model",
        "started_at",
        "ended_at",
        "prompt_tokens",
        "completion_tokens",
        "cost",
    )
    select_related = ("agent",)
    ordering = ("-created_at",)
    verbose_name_plural = "latest runs"

    def get_queryset(self, request):
        return super().get_queryset(request).defer("output_summary", "metadata")


class TaskForm(forms.ModelForm):
    # The version the user saw: a save over a newer version is refused.
    expected_version = forms.IntegerField(widget=forms.HiddenInput, required=False)

    class Meta:
        model = Task
        fields = (*TASK_MAIN_FIELDS, *TASK_DATA_FIELDS)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not self.instance._state.adding:
            self.fields["expected_version"].initial = self.instance.version


def _dependency_changes(formset) -> tuple[list, list]:
    """Tasks to add and task ids to remove, from the dependency inline."""
    added, removed = [], []
    if formset is None:
        return added, removed
    deleted = formset.deleted_forms
    for form in formset.forms:
        old = form.initial.get("depends_on")
        new = form.cleaned_data.get("depends_on")
        if form in deleted:
            if old:
                removed.append(old)
            continue
        if old and (new is None or new.pk != old):
            removed.append(old)
        if new is not None and new.pk != old:
            added.append(new)
    return added, removed


class QueueFilter(admin.SimpleListFilter):
    """The work queue: what a claim would take now, what is leased, what expired."""

    title = "queue"
    parameter_name = "queue"

    def lookups(self, request, model_admin):
        return (
            ("claimable", "Claimable now"),
            ("leased", "Leased"),
            ("expired", "Lease expired"),
        )

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "claimable":
            return queryset.filter(status=TaskStatus.QUEUED).filter(
                ~blocked_expression()
            )
        if self.value() == "leased":
            return queryset.filter(status=TaskStatus.RUNNING, lease_expires_at__gte=now)
        if self.value() == "expired":
            return queryset.filter(status=TaskStatus.RUNNING, lease_expires_at__lt=now)
        return queryset


@admin.register(Task)
class TaskAdmin(
    OfferedInlinesMixin,
    PrettyJSONMixin,
    ServiceAdminMixin,
    LargeTableAdminMixin,
    UUIDSearchMixin,
    admin.ModelAdmin,
):
    """Tasks: created through task_create, changed through task_update."""

    form = TaskForm
    formfield_overrides = JSON_FORMFIELD_OVERRIDES
    json_fields = ("result",)
    list_display = (
        "title",
        "status",
        "priority",
        "progress",
        "assigned_agent",
        "workflow",
        "project",
        "version",
        "created_at",
    )
    list_select_related = ("project", "assigned_agent", "workflow")
    list_filter = (
        QueueFilter,
        "status",
        ("created_at", admin.DateFieldListFilter),
        "project",
    )
    search_fields = ("title", "=session_id", "=key")
    uuid_search_fields = ("id", "parent", "assigned_agent", "workflow")
    ordering = ("-created_at",)
    sortable_by = ("created_at",)
    changelist_defer = TASK_BIG_FIELDS
    autocomplete_fields = ("project", "workflow", "parent", "assigned_agent", "agents")
    actions = ("cancel_tasks", "retry_tasks")

    add_fieldsets = (
        (None, {"fields": TASK_MAIN_FIELDS}),
        ("Data", {"fields": TASK_DATA_FIELDS}),
    )
    change_fieldsets = (
        (None, {"fields": ("id", *TASK_MAIN_FIELDS, "expected_version")}),
        (
            "Status",
            {
                "fields": (
                    "status",
                    "version",
                    "progress",
                    "key",
                    "attempts",
                    "lease_expires_at",
                    "started_at",
                    "completed_at",
                    "result_summary",
                    "error",
                    "result_json",
                )
            },
        ),
        (
            "Usage",
            {"fields": ("prompt_tokens", "completion_tokens", "cached_tokens", "cost")},
        ),
        ("Data", {"fields": TASK_DATA_FIELDS}),
        ("Related", {"fields": ("swarm_view", "related_links", "latest_events")}),
        ("Times", {"fields": ("created_at", "updated_at")}),
    )
    # Status, version, progress and roll-ups change through their own services.
    change_readonly_fields = (
        "id",
        "project",
        "parent",
        "status",
        "version",
        "progress",
        "key",
        "attempts",
        "lease_expires_at",
        "started_at",
        "completed_at",
        "result_summary",
        "error",
        "result_json",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cost",
        "swarm_view",
        "related_links",
        "latest_events",
        "created_at",
        "updated_at",
    )

    def get_fieldsets(self, request, obj=None):
        return self.add_fieldsets if obj is None else self.change_fieldsets

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.change_readonly_fields

    def get_inlines(self, request, obj):
        if obj is None:
            return (DependencyInline,)
        # Conversations are offered by their own app's admin.
        inlines = (DependencyInline, SubtaskInline, RunInline)
        return (*inlines, *self.offered_inlines(request, obj))

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="swarm view")
    def swarm_view(self, obj: Task) -> str:
        # By URL name at runtime: the view lives in `reports`, above tasks.
        try:
            url = reverse("swarm-task", args=[obj.pk])
        except NoReverseMatch:
            return "-"
        return format_html(
            '<a href="{}">Watch this task live: subtasks, agents, runs and '
            "conversations</a>",
            url,
        )

    @admin.display(description="lists")
    def related_links(self, obj: Task) -> str:
        links = [
            changelist_link(
                "admin:tasks_task_changelist",
                "All subtasks",
                parent__id__exact=obj.pk,
            ),
            changelist_link(
                "admin:tasks_agentrun_changelist", "All runs", task__id__exact=obj.pk
            ),
            changelist_link(
                "admin:conversations_conversation_changelist",
                "All conversations",
                task__id__exact=obj.pk,
            ),
            changelist_link(
                "admin:audit_event_changelist",
                "All events",
                project__id__exact=obj.project_id,
                task_id=obj.pk,
            ),
        ]
        return format_html_join(" · ", "{}", ((link,) for link in links))

    @admin.display(description=f"latest {EVENTS_SHOWN} events")
    def latest_events(self, obj: Task) -> str:
        events = event_list_for_task(
            project_id=obj.project_id, task_id=obj.pk, limit=EVENTS_SHOWN
        )
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code>"
            "</td></tr>",
            (
                (
                    admin_link("admin:audit_event_change", e.pk, e.position),
                    e.kind,
                    e.actor_label,
                    localtime(e.occurred_at).strftime("%Y-%m-%d %H:%M:%S"),
                    truncate(json.dumps(e.payload, default=str), 160),
                )
                for e in events
            ),
        )
        if not rows:
            return "No events."
        return format_html(
            "<table><thead><tr><th>position</th><th>kind</th><th>actor</th>"
            "<th>occurred</th><th>payload</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    def service_save(self, request, form, formsets, change):
        actor = admin_actor(request)
        data = form.cleaned_data
        dependencies = next((fs for fs in formsets if fs.model is TaskDependency), None)
        added, removed = _dependency_changes(dependencies)
        if not change:
            task, _ = task_create(
                project=data["project"],
                task_id=form.instance.pk,
                title=data["title"],
                description=data["description"],
                session_id=data["session_id"],
                workflow=data["workflow"],
                parent=data["parent"],
                priority=data["priority"],
                assigned_agent=data["assigned_agent"],
                agents=list(data["agents"]),
                depends_on=added,
                input=data["input"],
                metadata=data["metadata"],
                files_touched=data["files_touched"],
                actor=actor,
            )
            return task
        task = Task.objects.select_related("project").get(pk=form.instance.pk)
        fields = changed_fields(form, TASK_UPDATABLE_FIELDS)
        if "agents" in fields:
            fields["agents"] = list(fields["agents"])
        if fields:
            task = task_update(
                task=task,
                expected_version=data.get("expected_version"),
                actor=actor,
                **fields,
            )
        for other in removed:
            task_dependency_remove(task=task, depends_on=other, actor=actor)
        for other in added:
            task_dependency_add(task=task, depends_on=other, actor=actor)
        return task

    @admin.action(description="Cancel selected tasks", permissions=["change"])
    def cancel_tasks(self, request, queryset) -> None:
        actor = admin_actor(request)
        run_service_action(
            self,
            request,
            queryset,
            lambda task: task_transition(
                task=task,
                status=TaskStatus.CANCELLED,
                expected_version=task.version,
                actor=actor,
            ),
            done="Cancelled {n} tasks.",
            failed="{n} tasks could not be cancelled",
        )

    @admin.action(description="Retry selected tasks", permissions=["change"])
    def retry_tasks(self, request, queryset) -> None:
        actor = admin_actor(request)

        run_service_action(
            self,
            request,
            queryset,
            lambda task: task_retry(
                task=task, expected_version=task.version, actor=actor
            ),
            done="Queued {n} tasks again.",
            failed="{n} tasks could not be retried",
        )


@admin.register(TaskDependency)
class TaskDependencyAdmin(
    ServiceAdminMixin, LargeTableAdminMixin, UUIDSearchMixin, admin.ModelAdmin
):
    """Dependency edges: added and removed through the dependency services."""

    list_display = ("id", "task", "depends_on", "created_at")
    list_select_related = ("task", "depends_on")
    search_fields = ("task__title", "depends_on__title")
    uuid_search_fields = ("task", "depends_on")
    ordering = ("-id",)
    sortable_by = ("id",)
    autocomplete_fields = ("task", "depends_on")
    fields = ("task", "depends_on")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("task", "depends_on", "created_at")

    def get_fields(self, request, obj=None):
        return self.fields if obj is None else (*self.fields, "created_at")

    def changelist_queryset(self, qs):
        return qs.defer(
            *(f"task__{f}" for f in TASK_BIG_FIELDS),
            *(f"depends_on__{f}" for f in TASK_BIG_FIELDS),
        )

    # An edge is removed and added again, never changed.
    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def service_save(self, request, form, formsets, change):
        return task_dependency_add(
            task=form.cleaned_data["task"],
            depends_on=form.cleaned_data["depends_on"],
            actor=admin_actor(request),
        )

    def delete_model(self, request, obj) -> None:
        task_dependency_remove(
            task=obj.task, depends_on=obj.depends_on_id, actor=admin_actor(request)
        )

    def delete_queryset(self, request, queryset) -> None:
        for edge in queryset.select_related("task__project"):
            self.delete_model(request, edge)
