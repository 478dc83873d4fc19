"""Serializer building blocks shared by every app's API."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

from swarmsite import errors
from swarmsite.validation import json_check, to_utc


class StrictCharField(serializers.CharField):
    """Text from a JSON string only; DRF's CharField turns 123 into "123"."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictUUIDField(serializers.UUIDField):
    """A UUID from a JSON string only; DRF's reads an integer (or false) as one."""

    def to_internal_value(self, data: Any) -> uuid.UUID:
        if not isinstance(data, str | uuid.UUID):
            self.fail("invalid")
        return super().to_internal_value(data)


def _is_number(data: Any) -> bool:
    return isinstance(data, int | float) and not isinstance(data, bool)


class StrictIntegerField(serializers.IntegerField):
    """A JSON number only; DRF's IntegerField reads "12" as 12."""

    def to_internal_value(self, data: Any) -> int:
        if not _is_number(data):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    """A JSON number only; DRF's FloatField reads "1.5" and false as numbers."""

    def to_internal_value(self, data: Any) -> float:
        if not _is_number(data):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """`true` or `false` only; DRF's BooleanField reads "yes" and 1 as true."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


STRICT_FIELDS: dict[type[serializers.Field], type[serializers.Field]] = {
    serializers.CharField: StrictCharField,
    serializers.UUIDField: StrictUUIDField,
    serializers.IntegerField: StrictIntegerField,
    serializers.FloatField: StrictFloatField,
    serializers.BooleanField: StrictBooleanField,
}


# The base of every ModelSerializer: the fields it generates are strict, as
# a request's must be, should one ever be writable. No docstring:
# drf-spectacular would show it as the description of every schema.
class StrictModelSerializer(serializers.ModelSerializer):
    serializer_field_mapping = {
        model_field: STRICT_FIELDS.get(field, field)
        for model_field, field in (
            serializers.ModelSerializer.serializer_field_mapping.items()
        )
    }


class JSONValueField(serializers.JSONField):
    """Any JSON, or only an object / a list; NUL characters are refused."""

    def __init__(self, *, kind: type | None = None, **kwargs: Any) -> None:
        self.kind = kind
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        data = super().to_internal_value(data)
        if self.kind is dict and not isinstance(data, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        if self.kind is list and not isinstance(data, list):
            raise serializers.ValidationError("Must be a JSON list.")
        try:
            json_check(data, field="value")
        except errors.ValidationError as exc:
            raise serializers.ValidationError(exc.fields["value"]) from exc
        return data


class StrictInputSerializer(serializers.Serializer):
    """Refuses keys it does not accept instead of silently dropping them.

    `read_only_names` lists output fields a client cannot set, so the error
    says why.
    """

    read_only_names: tuple[str, ...] = ()

    def to_internal_value(self, data):
        extra: dict[str, list[str]] = {}
        if isinstance(data, Mapping):
            for name in data:
                if name in self.fields and not self.fields[name].read_only:
                    continue
                extra[str(name)] = [
                    "This field is read-only."
                    if name in self.read_only_names
                    else "This field is not accepted here."
                ]
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not extra:
                raise
            detail = (
                exc.detail
                if isinstance(exc.detail, dict)
                else {"non_field_errors": exc.detail}
            )
            raise serializers.ValidationError({**detail, **extra}) from exc
        if extra:
            raise serializers.ValidationError(extra)
        return value


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict:
    """Validate `data` with `serializer_class`; a 400 names each bad field."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def created_status(created: bool) -> int:
    """201 for a new resource; 200 for a repeated create with a known id."""
    return 201 if created else 200


class UTCDateTimeField(serializers.DateTimeField):
    """An ISO 8601 datetime, stored and compared in UTC (see `to_utc`)."""

    def to_internal_value(self, value: Any) -> Any:
        parsed = super().to_internal_value(value)
        try:
            return to_utc(parsed, field="value")
        except errors.ValidationError as exc:
            raise serializers.ValidationError(exc.fields["value"]) from exc


class DecimalAmountField(serializers.DecimalField):
    """A non-negative amount such as a cost (see `DecimalAmountScheme`)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 0)
        super().__init__(**kwargs)
