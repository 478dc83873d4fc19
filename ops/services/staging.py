"""Staging of an import: each field's value check and the temporary tables."""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import connection, models

from ops.selectors import ModelSpec

STAGE_BATCH = 5000


# -- value checks: JSON value -> Python value, or ValueError naming the problem


def _check_null(model_field: models.Field, check: Callable) -> Callable:
    nullable = model_field.null

    def convert(value: Any) -> Any:
        if value is None:
            if nullable:
                return None
            raise ValueError("may not be null")
        return check(value)

    return convert


def _as_int(model_field: models.Field) -> Callable:
    positive = isinstance(
        model_field, (models.PositiveIntegerField, models.PositiveSmallIntegerField)
    )

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be a whole number, not {value!r}")
        if positive and value < 0:
            raise ValueError(f"must be zero or more, not {value}")
        if abs(value) >= 2**63:
            raise ValueError(f"{value} is out of range")
        return value

    return check


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number, not {value!r}")
    return float(value)


def _as_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {value!r}")
    return value


def _as_decimal(model_field: models.DecimalField) -> Callable:
    places = model_field.decimal_places
    limit = Decimal(10) ** (model_field.max_digits - places)

    def check(value: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError(f"must be a decimal string, not {value!r}")
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
        if not number.is_finite() or abs(number) >= limit:
            raise ValueError(f"{value!r} is out of range")
        if number.as_tuple().exponent < -places:
            raise ValueError(f"{value!r} has more than {places} decimal places")
        return number

    return check


def _as_datetime(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"must be an ISO 8601 time, not {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return parsed


def _as_uuid(value: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise ValueError(f"must be a UUID string, not {value!r}")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a UUID") from None


def _as_text(model_field: models.Field) -> Callable:
    max_length = model_field.max_length
    choices = {c[0] for c in model_field.choices} if model_field.choices else None
    ip = isinstance(model_field, models.GenericIPAddressField)

    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"must be a string, not {value!r}")
        if max_length is not None and len(value) > max_length:
            raise ValueError(f"is longer than {max_length} characters")
        if choices is not None and value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(sorted(choices))}")
        if ip:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address") from None
        return value

    return check


def _as_json(value: Any) -> Any:
    return value


def field_checker(model_field: models.Field) -> Callable:
    if isinstance(model_field, models.ForeignKey):
        return _check_null(model_field, _as_uuid)
    if isinstance(model_field, models.JSONField):
        return _as_json if model_field.null else _check_null(model_field, _as_json)
    if isinstance(model_field, models.DateTimeField):
        return _check_null(model_field, _as_datetime)
    if isinstance(model_field, models.UUIDField):
        return _check_null(model_field, _as_uuid)
    if isinstance(model_field, models.DecimalField):
        return _check_null(model_field, _as_decimal(model_field))
    if isinstance(model_field, models.BooleanField):
        return _check_null(model_field, _as_bool)
    if isinstance(model_field, models.FloatField):
        return _check_null(model_field, _as_float)
    if isinstance(model_field, (models.IntegerField, models.AutoField)):
        return _check_null(model_field, _as_int(model_field))
    return _check_null(model_field, _as_text(model_field))


def field_adapter(model_field: models.Field) -> Callable:
    """Python value -> what the staging insert sends to this database."""
    sqlite = connection.vendor == "sqlite"
    if isinstance(model_field, models.JSONField):
        null = model_field.null
        return lambda v: None if v is None and null else json.dumps(v)
    if sqlite and isinstance(model_field, models.DateTimeField):
        return connection.ops.adapt_datetimefield_value
    if sqlite and (
        isinstance(model_field, models.UUIDField)
        or (
            isinstance(model_field, models.ForeignKey)
            and isinstance(model_field.target_field, models.UUIDField)
        )
    ):
        return lambda v: None if v is None else v.hex
    return lambda v: v


class Stage:
    """A temporary table holding one model's records before they are written."""

    def __init__(self, spec: ModelSpec, cursor: Any):
        self.spec = spec
        self.cursor = cursor
        self.fields = spec.model_fields()
        self.columns = [f.column for f in self.fields]
        self.table = spec.model._meta.db_table
        self.name = f"ops_stage_{self.table}"
        self.rows: list[list[Any]] = []
        self.count = 0
        cols = ", ".join(self._q(c) for c in self.columns)
        if connection.vendor == "postgresql":
            cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{self.name}")
            cursor.execute(
                f"CREATE TEMP TABLE {self.name} ON COMMIT DROP AS "
                f"SELECT CAST(0 AS bigint) AS _line, {cols} FROM {self.table} "
                "WITH NO DATA"
            )
        else:
            cursor.execute(f"DROP TABLE IF EXISTS temp.{self.name}")
            cursor.execute(
                f"CREATE TEMP TABLE {self.name} AS "
                f"SELECT 0 AS _line, {cols} FROM {self.table} WHERE 0"
            )

    @staticmethod
    def _q(name: str) -> str:
        return connection.ops.quote_name(name)

    def add(self, row: list[Any]) -> None:
        self.rows.append(row)
        self.count += 1
        if len(self.rows) >= STAGE_BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        cols = ", ".join(["_line", *(self._q(c) for c in self.columns)])
        if connection.vendor == "postgresql":
            raw = self.cursor.cursor
            with raw.copy(f"COPY {self.name} ({cols}) FROM STDIN") as copy:
                for row in self.rows:
                    copy.write_row(row)
        else:
            marks = ", ".join(["%s"] * (len(self.columns) + 1))
            self.cursor.executemany(
                f"INSERT INTO {self.name} ({cols}) VALUES ({marks})", self.rows
            )
        self.rows.clear()

    def drop(self) -> None:
        schema = "pg_temp" if connection.vendor == "postgresql" else "temp"
        self.cursor.execute(f"DROP TABLE IF EXISTS {schema}.{self.name}")
