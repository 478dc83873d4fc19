"""Query-string filters of the audit log list."""

from __future__ import annotations

import django_filters
from django_filters.widgets import QueryArrayWidget
from rest_framework.exceptions import ValidationError

from audit.models import AuditLog
from swarmsite.actors import ActorType
from swarmsite.filters import StrictFilterSet, UTCDateTimeFilter

MAX_FILTER_VALUES = 100


class RepeatedOrCommaWidget(QueryArrayWidget):
    def value_from_datadict(self, data, files, name):
        values = data.getlist(name) if hasattr(data, "getlist") else [data.get(name)]
        return [v for raw in values if raw for v in str(raw).split(",") if v]


class CharInFilter(django_filters.BaseInFilter, django_filters.CharFilter):
    """Several values, repeated (`?a=x&a=y`) or comma-separated (`?a=x,y`)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("lookup_expr", "in")
        kwargs.setdefault("widget", RepeatedOrCommaWidget)
        super().__init__(*args, **kwargs)

    def filter(self, qs, value):
        if value and len(value) > MAX_FILTER_VALUES:
            raise ValidationError(
                {self.field_name: [f"At most {MAX_FILTER_VALUES} values."]}
            )
        return super().filter(qs, value)


class AuditLogFilterSet(StrictFilterSet):
    """`action` is repeatable; `since` is inclusive and `until` exclusive."""

    action = CharInFilter(max_length=100)
    actor = django_filters.CharFilter(
        field_name="actor_id", max_length=64, help_text="The actor's id."
    )
    actor_type = django_filters.ChoiceFilter(choices=ActorType.choices)
    # Strict: a typo such as `?success=flase` is an error, not "no filter".
    success = django_filters.TypedChoiceFilter(
        choices=(("true", "true"), ("false", "false")),
        coerce=lambda value: value == "true",
    )
    since = UTCDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    until = UTCDateTimeFilter(field_name="occurred_at", lookup_expr="lt")
    request_id = django_filters.CharFilter(max_length=64)
    target = django_filters.CharFilter(max_length=500)

    class Meta:
        model = AuditLog
        fields = [
            "action",
            "actor",
            "actor_type",
            "success",
            "since",
            "until",
            "request_id",
            "target",
        ]
