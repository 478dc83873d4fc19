"""Admin of projects and API keys; writes go through swarmsite.services."""

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

from swarmsite.admin_utils import ServiceAdminMixin, run_service_action
from swarmsite.errors import ValidationError
from swarmsite.models import ApiKey, ApiKeyScope, Project
from swarmsite.services import (
    DEFAULT_SCOPES,
    api_key_create,
    api_key_revoke,
    project_create,
)


@admin.register(Project)
class ProjectAdmin(ServiceAdminMixin, admin.ModelAdmin):
    """Projects (tenants); created through project_create, not edited here."""

    list_display = (
        "slug",
        "name",
        "event_retention_days",
        "audit_retention_days",
        "created_at",
    )
    search_fields = ("slug", "name")
    ordering = ("slug",)
    fields = ("slug", "name", "event_retention_days", "audit_retention_days")
    readonly_fields = ("created_at", "updated_at")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("slug", "name")
        return (*self.fields, *self.readonly_fields)

    # No project_update service yet: a project cannot be changed here.
    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def service_save(self, request, form, formsets, change):
        data = form.cleaned_data
        project, created = project_create(slug=data["slug"], name=data["name"])
        if not created:
            raise ValidationError({"slug": f"Project {project.slug} exists."})
        return project


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiKeyScope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=list(DEFAULT_SCOPES),
    )

    class Meta:
        model = ApiKey
        fields = ("project", "name", "scopes", "expires_at")


@admin.register(ApiKey)
class ApiKeyAdmin(ServiceAdminMixin, admin.ModelAdmin):
    """API keys: created through api_key_create, revoked by an action."""

    form = ApiKeyForm
    list_display = (
        "name",
        "project",
        "prefix",
        "scopes",
        "is_active",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )
    list_select_related = ("project",)
    list_filter = ("project", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("name", "=prefix")
    ordering = ("-created_at",)
    autocomplete_fields = ("project",)
    actions = ("revoke_keys",)
    # Never key_hash: only the secret's hash is stored, and not shown.
    exclude = ("key_hash",)
    change_fields = (
        "id",
        "project",
        "name",
        "prefix",
        "scopes",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("project", "name", "scopes", "expires_at")
        return self.change_fields

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.change_fields

    # No api_key_update service: keys are created and revoked, not edited.
    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm("swarmsite.change_apikey")

    @admin.display(boolean=True, description="active")
    def is_active(self, obj: ApiKey) -> bool:
        return obj.is_active

    def service_save(self, request, form, formsets, change):
        data = form.cleaned_data
        key, secret = api_key_create(
            project=data["project"],
            name=data["name"],
            scopes=data["scopes"],
            expires_at=data.get("expires_at"),
        )
        self.message_user(
            request,
            format_html(
                "The secret of API key {} is <code>{}</code>. Copy it now: it is "
                "not stored and will not be shown again.",
                key.name,
                secret,
            ),
            level=messages.WARNING,
        )
        return key

    @admin.action(description="Revoke selected API keys", permissions=["revoke"])
    def revoke_keys(self, request, queryset) -> None:
        run_service_action(
            self,
            request,
            queryset,
            lambda key: api_key_revoke(key=key),
            done="Revoked {n} API keys.",
            failed="{n} API keys could not be revoked",
        )
