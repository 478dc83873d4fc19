"""FilterSet building blocks shared by every app's lists."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField

from swarmsite import errors
from swarmsite.validation import to_utc


class UTCIsoDateTimeField(IsoDateTimeField):
    """ISO 8601 in a query, compared in UTC so any offset is valid SQL."""

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            # Present but empty is not "no filter": the client meant a time.
            raise forms.ValidationError("Enter a valid date and time.")
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
    """`true` or `false` (also 1 / 0); anything else is a 400, not "no filter"."""

    def to_python(self, value: Any) -> bool | None:
        if value in (None, ""):
            return None
        text = str(value).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise forms.ValidationError("Enter true or false.")

    def validate(self, value: Any) -> None:
        return None


class StrictBooleanFilter(django_filters.BooleanFilter):
    """The one boolean filter of the API's lists."""

    field_class = StrictBooleanField
