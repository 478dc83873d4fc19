"""Query-string filters shared by every app's lists."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField
from rest_framework import exceptions

from swarmsite import errors
from swarmsite.validation import to_utc

EMPTY_FILTER_MESSAGE = "Give a value, or leave the filter out."


def _raw_values(data: Any, key: str) -> list[Any]:
    if hasattr(data, "getlist"):
        return data.getlist(key)
    if key not in data:
        return []
    value = data[key]
    return list(value) if isinstance(value, list | tuple) else [value]


def empty_names(data: Any, names: Iterable[str]) -> list[str]:
    """The names of `names` that `data` (a query) has with an empty value."""
    return [
        name
        for name in names
        if any(
            isinstance(value, str) and not value.strip()
            for value in _raw_values(data, name)
        )
    ]


def refuse_empty(data: Any, names: Iterable[str]) -> None:
    """A 400 naming each of `names` present in the query without a value."""
    empty = empty_names(data, names)
    if empty:
        raise exceptions.ValidationError(dict.fromkeys(empty, [EMPTY_FILTER_MESSAGE]))


def wants_full(query_params: Any) -> bool:
    """Whether `?fields=full` asks a list for its big fields; else a 400."""
    if "fields" not in query_params:
        return False
    if query_params.get("fields") != "full":
        raise exceptions.ValidationError({"fields": ["Only 'full' is accepted."]})
    return True


class _NoEmptyValuesForm(forms.Form):
    """Refuses a filter that is present with an empty value (`?task=`)."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        names = {self.add_prefix(name): name for name in self.fields}
        for key in empty_names(self.data, names):
            # The one message for every filter, whatever its field said.
            self.errors.pop(names[key], None)
            self.add_error(names[key], EMPTY_FILTER_MESSAGE)
        return cleaned


class StrictFilterSet(django_filters.FilterSet):
    """The base of every list's FilterSet: `?name=` is a 400, not "no filter".

    django-filter reads an empty value as "no filter", so a client whose
    value went missing would silently get the whole list.
    """

    def get_form_class(self) -> type[forms.Form]:
        form_class = super().get_form_class()
        return type(form_class.__name__, (_NoEmptyValuesForm, form_class), {})


class UTCIsoDateTimeField(IsoDateTimeField):
    """ISO 8601 in a query, compared in UTC so any offset is valid SQL."""

    def to_python(self, value: Any) -> Any:
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return to_utc(parsed, field="value")
        except errors.ValidationError as exc:
            raise forms.ValidationError(exc.fields["value"]) from exc


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    """The one datetime filter of the API's lists."""

    field_class = UTCIsoDateTimeField


class StrictBooleanField(forms.NullBooleanField):
    """`true` or `false`; anything else is a 400, not "no filter"."""

    # NullBooleanSelect would read any other value (`1`, `null`) as "no
    # filter" before to_python sees it.
    widget = forms.TextInput

    def to_python(self, value: Any) -> bool | None:
        if value in (None, ""):
            return None
        text = str(value).strip().lower()
        if text in ("true", "false"):
            return text == "true"
        raise forms.ValidationError("Enter true or false.")

    def validate(self, value: Any) -> None:
        return None


class StrictBooleanFilter(django_filters.BooleanFilter):
    """The one boolean filter of the API's lists."""

    field_class = StrictBooleanField
