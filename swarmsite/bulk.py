"""Bulk INSERT of built rows: PostgreSQL's COPY for big lists, else bulk_create.

Services build and check their model instances first (clean_fields and
their own rules); this only writes them. A COPY skips the SQL that
bulk_create composes and the driver parses for every row, several times
cheaper for an ingest batch. Triggers, constraints and unique keys apply as
to an INSERT: a lost unique-key race raises the same IntegrityError.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from django.db import connections, models, router

M = TypeVar("M", bound=models.Model)

# From this many rows a COPY pays for its extra round trip.
COPY_MIN_ROWS = 100

# Python types each kind of column takes as they are; any other value goes
# through the field's own conversion, as bulk_create would send it.
_AS_IS: dict[str, tuple[type, ...]] = {
    "CharField": (str,),
    "TextField": (str,),
    "SlugField": (str,),
    "UUIDField": (uuid.UUID,),
    "BooleanField": (bool,),
    "IntegerField": (int,),
    "BigIntegerField": (int,),
    "SmallIntegerField": (int,),
    "PositiveIntegerField": (int,),
    "PositiveBigIntegerField": (int,),
    "PositiveSmallIntegerField": (int,),
    "BigAutoField": (int,),
    "AutoField": (int,),
    "FloatField": (float,),
    "DecimalField": (Decimal,),
    "DateTimeField": (datetime,),
}


# Column types the binary COPY format takes from the values above; a table
# with any other column is copied as text.
_BINARY_TYPES = {
    "uuid": "uuid",
    "varchar": "varchar",
    "text": "text",
    "integer": "int4",
    "bigint": "int8",
    "smallint": "int2",
    "boolean": "bool",
    "double precision": "float8",
    "numeric": "numeric",
    "timestamp with time zone": "timestamptz",
    "jsonb": "jsonb",
}


def _binary_type(field: models.Field, connection: Any) -> str | None:
    db_type = (field.db_type(connection) or "").split("(")[0].strip()
    return _BINARY_TYPES.get(db_type)


def _converter(field: models.Field, connection: Any) -> Callable[[Any], Any]:
    target = field.target_field if field.is_relation else field
    if isinstance(field, models.JSONField) and field.encoder is None:
        from psycopg.types.json import Jsonb

        # What the field's own conversion gives, without its per-value lookups.
        return lambda value: None if value is None else Jsonb(value)
    as_is = _AS_IS.get(target.get_internal_type(), ())

    def convert(value: Any) -> Any:
        if value is None:
            return None
        kind = type(value)
        if kind in as_is and (kind is not datetime or value.tzinfo is not None):
            return value
        return field.get_db_prep_save(value, connection)

    return convert


def bulk_insert(model: type[M], objs: Sequence[M]) -> None:
    """Insert `objs` of `model`; auto-increment keys stay unset on a COPY.

    Fields with `auto_now` / `auto_now_add` are set as a save would set them.
    """
    if not objs:
        return
    connection = connections[router.db_for_write(model)]
    pk = model._meta.pk
    auto_pk = isinstance(pk, models.AutoField | models.BigAutoField)
    if (
        connection.vendor != "postgresql"
        or len(objs) < COPY_MIN_ROWS
        or (auto_pk and any(obj.pk is not None for obj in objs))
    ):
        model.objects.bulk_create(objs)
        return
    fields = [f for f in model._meta.concrete_fields if not (auto_pk and f is pk)]
    stamped = [
        f
        for f in fields
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
    ]
    for obj in objs:
        for f in stamped:
            f.pre_save(obj, add=True)
    columns = [(f.attname, _converter(f, connection)) for f in fields]
    types = [_binary_type(f, connection) for f in fields]
    binary = None not in types
    quote = connection.ops.quote_name
    sql = (
        f"COPY {quote(model._meta.db_table)} "
        f"({', '.join(quote(f.column) for f in fields)}) FROM STDIN"
        + (" (FORMAT BINARY)" if binary else "")
    )
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.cursor.copy(sql) as copy,
    ):
        if binary:
            copy.set_types(types)
        for obj in objs:
            values = obj.__dict__
            copy.write_row([convert(values[name]) for name, convert in columns])
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias
