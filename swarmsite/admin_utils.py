"""Shared admin helpers: service-backed saves, big-table changelists, JSON."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import connections, models
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.urls import NoReverseMatch, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from swarmsite.actors import Actor
from swarmsite.errors import ServiceError, ValidationError, VersionConflict

# Admin actions act on at most this many rows at once: each one is a service
# call with its own transaction and events.
MAX_ACTION_ROWS = 500


def admin_actor(request) -> Actor:
    """The audit actor for a write made by the logged-in admin user."""
    return Actor(
        type="user", id=str(request.user.pk), label=request.user.get_username()
    )


# Display ------------------------------------------------------------------


def pretty_json(value: Any) -> SafeString:
    """`value` as indented, escaped JSON inside <pre>."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html(
        '<pre style="white-space: pre-wrap; margin: 0; max-height: 40em; '
        'overflow: auto;">{}</pre>',
        text,
    )


def _json_display(name: str) -> Callable[[Any, models.Model], SafeString]:
    @admin.display(description=name.replace("_", " "))
    def display(self, obj: models.Model) -> SafeString:
        return pretty_json(getattr(obj, name))

    display.__name__ = f"{name}_json"
    return display


class PrettyJSONFormField(forms.JSONField):
    """A JSON form field that shows its value indented."""

    def prepare_value(self, value: Any) -> str:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)


JSON_FORMFIELD_OVERRIDES = {
    models.JSONField: {
        "form_class": PrettyJSONFormField,
        "widget": forms.Textarea(attrs={"rows": 6, "cols": 80}),
    }
}


class PrettyJSONMixin:
    """Adds a read-only `<name>_json` display for each name in `json_fields`."""

    json_fields: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls.json_fields:
            setattr(cls, f"{name}_json", _json_display(name))


def admin_link(url_name: str, pk: Any, text: Any) -> str:
    """A link to an admin page, or the bare text when the URL does not resolve."""
    if pk is None:
        return "-"
    try:
        url = reverse(url_name, args=[pk])
    except NoReverseMatch:
        return str(text)
    return format_html('<a href="{}">{}</a>', url, text)


def changelist_link(url_name: str, text: str, **params: Any) -> str:
    """A link to a changelist filtered by `params`."""
    query = urlencode({k: str(v) for k, v in params.items()})
    return format_html('<a href="{}?{}">{}</a>', reverse(url_name), query, text)


def truncate(text: str, length: int = 80) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


# Read-only admins and inlines ---------------------------------------------


class ReadOnlyAdminMixin:
    """View only: no add, change or delete, whoever asks."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_readonly_fields(self, request, obj=None):
        if self.fieldsets:
            return flatten_fieldsets(self.fieldsets)
        if self.fields:
            return list(self.fields)
        return [f.name for f in self.model._meta.concrete_fields]


class LimitedInlineFormSet(BaseInlineFormSet):
    """An inline formset showing at most `limit` rows after `filters`."""

    limit = 20
    filters: dict[str, Any] = {}

    def get_queryset(self) -> QuerySet:
        if not hasattr(self, "_limited"):
            qs = super().get_queryset()
            if self.filters:
                qs = qs.filter(**self.filters)
            self._limited = qs[: self.limit]
        return self._limited


class ReadOnlyTabularInline(ReadOnlyAdminMixin, admin.TabularInline):
    """A view-only inline limited to the first `limit` rows of its ordering."""

    formset = LimitedInlineFormSet
    limit = 20
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    select_related: tuple[str, ...] = ()

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        return qs.select_related(*self.select_related) if self.select_related else qs

    def get_formset_filters(self, request, obj) -> dict[str, Any]:
        return {}

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        attrs = {"limit": self.limit, "filters": self.get_formset_filters(request, obj)}
        return type(formset.__name__, (formset,), attrs)


class OfferedInlinesMixin:
    """Adds the inlines that admins of other apps offer for this model's page.

    Imports run one way, so a lower app's admin cannot name the inlines of an
    app above it. The upper app's ModelAdmin offers them instead, with
    `inlines_for = {"tasks.Task": SomeInline}`, and the page asks the admin
    site for them per request: no app changes another app's admin.
    """

    def offered_inlines(
        self, request, obj
    ) -> list[type[admin.options.InlineModelAdmin]]:
        offered = []
        for relation in self.model._meta.related_objects:
            try:
                other = self.admin_site.get_model_admin(relation.related_model)
            except admin.sites.NotRegistered:
                continue
            inline = getattr(other, "inlines_for", {}).get(self.model._meta.label)
            if inline is not None and inline not in offered:
                offered.append(inline)
        return offered


# Big tables ---------------------------------------------------------------


class ApproximateCount(int):
    """A row count that renders as "10,000+" or "about 1,000,000"."""

    def __new__(cls, value: int, text: str) -> ApproximateCount:
        count = super().__new__(cls, value)
        count.text = text
        return count

    def __str__(self) -> str:
        return self.text


def table_estimate(model: type[models.Model], *, using: str = "default") -> int | None:
    """PostgreSQL's planner estimate of the rows of `model`'s table, if any."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
            [connection.ops.quote_name(model._meta.db_table)],
        )
        row = cursor.fetchone()
    # -1 means never analysed.
    return int(row[0]) if row and row[0] is not None and row[0] >= 0 else None


class LargeTablePaginator(Paginator):
    """Never runs COUNT(*) over a whole big table.

    Unfiltered, a big table is counted from the planner's estimate; otherwise
    at most `count_cap` rows are counted and more shows as "10,000+".
    """

    count_cap = 10_000

    @cached_property
    def count(self) -> int:
        qs = self.object_list
        if not isinstance(qs, QuerySet):
            return super().count
        if not qs.query.where:
            estimate = table_estimate(qs.model, using=qs.db)
            if estimate is not None and estimate > self.count_cap:
                return ApproximateCount(estimate, f"about {estimate:,}")
        # No ORDER BY: the database stops after cap + 1 matching rows.
        counted = qs.order_by().values("pk")[: self.count_cap + 1].count()
        if counted > self.count_cap:
            return ApproximateCount(self.count_cap, f"{self.count_cap:,}+")
        return counted


class LeanChangeList(ChangeList):
    """A changelist whose rows go through the admin's `changelist_queryset`."""

    def get_queryset(self, request, exclude_parameters=None):
        qs = super().get_queryset(request, exclude_parameters)
        return self.model_admin.changelist_queryset(qs)


class LargeTableAdminMixin:
    """Changelist settings that stay fast at millions of rows."""

    paginator = LargeTablePaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    # Big columns the list never shows.
    changelist_defer: tuple[str, ...] = ()

    def get_changelist(self, request, **kwargs):
        return LeanChangeList

    def changelist_queryset(self, qs: QuerySet) -> QuerySet:
        return qs.defer(*self.changelist_defer) if self.changelist_defer else qs


def choices_filter(
    field: str,
    choices: Iterable[tuple[str, str]],
    *,
    title: str,
    other_label: str = "",
) -> type[admin.SimpleListFilter]:
    """A list filter from fixed choices: no SELECT DISTINCT over the table.

    With `other_label`, an extra choice keeps the values outside `choices`.
    """
    choices = list(choices)
    known = [value for value, _ in choices]
    other = "__other__"

    class ChoicesFilter(admin.SimpleListFilter):
        parameter_name = field

        def lookups(self, request, model_admin):
            return [*choices, (other, other_label)] if other_label else choices

        def queryset(self, request, queryset):
            value = self.value()
            if not value:
                return queryset
            if value == other and other_label:
                return queryset.exclude(**{f"{field}__in": known})
            return queryset.filter(**{field: value})

    ChoicesFilter.title = title
    ChoicesFilter.__name__ = f"{field.title().replace('_', '')}Filter"
    return ChoicesFilter


class UUIDSearchMixin:
    """A search term that is a UUID matches `uuid_search_fields` exactly.

    Exact matches use the indexes; other terms fall back to `search_fields`.
    """

    uuid_search_fields: tuple[str, ...] = ("pk",)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        try:
            value = uuid.UUID(term)
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        query = models.Q()
        for name in self.uuid_search_fields:
            query |= models.Q(**{name: value})
        return queryset.filter(query), False


# Writes through services --------------------------------------------------


def service_error_messages(error: ServiceError) -> dict[str | None, list[str]]:
    """A service error's messages by field name; None for the object as a whole."""
    if isinstance(error, ValidationError) and error.fields:
        return {
            None if name == "non_field_errors" else name: msgs
            for name, msgs in error.fields.items()
        }
    if isinstance(error, VersionConflict):
        return {None: [f"{error.message} Reload the page to see the changes."]}
    return {None: [error.message]}


def add_service_error(form, error: ServiceError) -> None:
    """Show a service error on the form, on its field when the form has one."""
    for name, msgs in service_error_messages(error).items():
        if name is None or name in form.fields:
            form.add_error(name, msgs)
        else:
            form.add_error(None, [f"{name}: {m}" for m in msgs])


def service_error_text(error: ServiceError) -> str:
    """A service error as one line, for `message_user`."""
    return "; ".join(
        msg if name is None else f"{name}: {msg}"
        for name, msgs in service_error_messages(error).items()
        for msg in msgs
    )


def changed_fields(form, allowed) -> dict[str, Any]:
    """The form's changed values that an update service accepts."""
    fields = {name: form.cleaned_data[name] for name in form.changed_data}
    return {name: value for name, value in fields.items() if name in allowed}


class ServiceAdminMixin:
    """Saves through a service, called by `service_save` with form and inlines.

    A ServiceError rolls the whole request back and shows the form again with
    the error on it, as a form validation error would.
    """

    def service_save(self, request, form, formsets, change: bool) -> models.Model:
        raise NotImplementedError

    def save_model(self, request, obj, form, change) -> None:
        # Deferred to save_related, which also sees the inline formsets.
        return None

    def save_related(self, request, form, formsets, change) -> None:
        saved = self.service_save(request, form, formsets, change)
        for formset in formsets:
            # Read by the admin's change message; the service saved the rows.
            formset.new_objects, formset.changed_objects = [], []
            formset.deleted_objects = []
        obj = form.instance
        for field in saved._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))
        obj._state.adding = False
        obj._state.db = saved._state.db

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceError as exc:
            if request.method != "POST" or hasattr(request, "_service_error"):
                raise
            request._service_error = exc
        # The failed save was rolled back; validate again to show the error.
        return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        error = getattr(request, "_service_error", None)
        if error is None:
            return form

        def clean(self):
            cleaned = form.clean(self)
            add_service_error(self, error)
            return cleaned

        return type(form.__name__, (form,), {"clean": clean})


def run_service_action(
    modeladmin: admin.ModelAdmin,
    request,
    queryset: QuerySet,
    func: Callable[[Any], Any],
    *,
    done: str,
    failed: str,
) -> None:
    """Call `func` for each selected row and report successes and failures.

    `done` and `failed` are messages with a `{n}` placeholder.
    """
    rows = list(queryset[: MAX_ACTION_ROWS + 1])
    if len(rows) > MAX_ACTION_ROWS:
        modeladmin.message_user(
            request,
            f"Select at most {MAX_ACTION_ROWS} rows for this action.",
            level=messages.ERROR,
        )
        return
    ok, errors = 0, []
    for row in rows:
        try:
            func(row)
        except ServiceError as exc:
            errors.append(f"{row}: {service_error_text(exc)}")
        else:
            ok += 1
    if ok:
        modeladmin.message_user(request, done.format(n=ok), level=messages.SUCCESS)
    if errors:
        shown = "; ".join(errors[:10])
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        modeladmin.message_user(
            request,
            f"{failed.format(n=len(errors))}: {shown}{more}",
            level=messages.ERROR,
        )
