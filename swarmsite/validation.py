"""Input checks shared by the services of every app."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models

from swarmsite.errors import IdempotencyConflict, ValidationError
from swarmsite.models import Project

# Helpers ------------------------------------------------------------------


def clean_fields(obj: models.Model, *, exclude: Iterable[str] = ()) -> None:
    """Field-level validation without the queries of full_clean's checks."""
    skip = set(exclude) | {f.name for f in obj._meta.concrete_fields if f.is_relation}
    try:
        obj.clean_fields(exclude=skip)
    except DjangoValidationError as exc:
        raise ValidationError.from_django(exc) from exc


def resolve(
    model: type[models.Model],
    *,
    project: Project,
    field: str,
    value: Any,
) -> Any:
    """The `model` row with pk `value` in `project`, or a field error."""
    if value is None or value == "":
        return None
    pk = value.pk if isinstance(value, model) else value
    try:
        return model.objects.get(project=project, pk=pk)
    except (model.DoesNotExist, DjangoValidationError, ValueError) as exc:
        name = model._meta.verbose_name
        raise ValidationError({field: f"No {name} {pk} in this project."}) from exc


def resolve_many(
    model: type[models.Model], *, project: Project, field: str, values: Any
) -> list[Any]:
    if values is None:
        return []
    if not isinstance(values, list | tuple | set):
        raise ValidationError({field: "Must be a list of ids."})
    try:
        pks = list(
            dict.fromkeys(
                v.pk if isinstance(v, model) else uuid.UUID(str(v)) for v in values
            )
        )
    except ValueError as exc:
        raise ValidationError({field: "Every item must be a UUID."}) from exc
    found = {o.pk: o for o in model.objects.filter(project=project, pk__in=pks)}
    missing = [str(pk) for pk in pks if pk not in found]
    if missing:
        name = model._meta.verbose_name_plural
        raise ValidationError(
            {field: f"No {name} {', '.join(missing)} in this project."}
        )
    return [found[pk] for pk in pks]


def parse_uuid(value: Any, *, field: str = "id") -> uuid.UUID | None:
    if value is None or value == "":
        return None
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise ValidationError({field: "Must be a UUID."}) from exc


def to_decimal(value: Any, *, field: str) -> Decimal:
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ValidationError({field: "Must be a number."}) from exc
    if not result.is_finite() or result < 0:
        raise ValidationError({field: "Must be a number of zero or more."})
    return result.quantize(Decimal("0.000001"))


def to_count(value: Any, *, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError({field: "Must be a whole number of zero or more."})
    return value


def json_default(value: Any) -> Any:
    """json.dumps' `default` for the values services store in JSON columns."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _as_jsonb_returns(value: Any) -> Any:
    # PostgreSQL's jsonb keeps numbers as numeric: 1e+20 comes back as an
    # integer and -0.0 as 0.0. Storing them that way keeps hashes verifiable.
    if isinstance(value, float):
        text = repr(value)
        return int(Decimal(text)) if "e+" in text else value + 0.0
    if isinstance(value, dict):
        return {k: _as_jsonb_returns(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_jsonb_returns(v) for v in value]
    return value


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def json_check(value: Any, *, field: str) -> str:
    """The JSON text of `value`, or a field error for what no database keeps.

    PostgreSQL's json types refuse NUL characters and lone UTF-16 surrogates
    (in keys too); SQLite would keep them, so both refuse them here.
    """
    try:
        text = json.dumps(
            value, default=json_default, allow_nan=False, ensure_ascii=False
        )
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError({field: f"Not JSON-serialisable: {exc}."}) from exc
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(
            {field: "Must not contain lone surrogate characters."}
        ) from exc
    if "\\u0000" in text and _has_nul(value):
        raise ValidationError({field: "Must not contain NUL characters."})
    return text


def json_clean(value: Any, *, field: str) -> Any:
    """`value` as the database will return it, checked by `json_check`."""
    return _as_jsonb_returns(json.loads(json_check(value, field=field)))


def json_object(value: Any, *, field: str) -> dict:
    """A JSON object any database keeps; None is an empty one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError({field: "Must be a JSON object."})
    json_check(value, field=field)
    return value


def json_list(value: Any, *, field: str) -> list:
    """A JSON list any database keeps; None is an empty one."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError({field: "Must be a JSON list."})
    json_check(value, field=field)
    return value


def pk_or_none(obj: models.Model | None) -> str | None:
    return None if obj is None else str(obj.pk)


def check_same(
    stored: dict[str, Any],
    supplied: dict[str, Any],
    *,
    what: str,
    grown: Iterable[str] = (),
) -> None:
    """Raise IdempotencyConflict unless a repeated create matches the stored row.

    `grown` names id lists that later writes may extend (a run adds its agent
    to the task): a retry matches while what it sends is still a subset.
    """
    grown = set(grown)

    def same(key: str, value: Any) -> bool:
        if key in grown:
            return set(value) <= set(stored.get(key) or ())
        return stored.get(key) == value

    differing = sorted(k for k, v in supplied.items() if not same(k, v))
    if differing:
        raise IdempotencyConflict(
            f"A {what} with this id exists with different values for: "
            f"{', '.join(differing)}."
        )


_AGE = re.compile(r"^(\d+)([hdw])$")
_AGE_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def parse_age(value: str) -> timedelta:
    """An age such as 90d, 12w or 36h; 0d means "up to now"."""
    match = _AGE.match(value.strip().lower())
    if match is None:
        raise ValueError(f"{value!r} is not an age such as 90d, 12w or 36h.")
    return timedelta(**{_AGE_UNITS[match[2]]: int(match[1])})
