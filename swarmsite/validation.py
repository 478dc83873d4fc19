"""Input checks shared by the services of every app."""

from __future__ import annotations

import hashlib
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


class Resolver:
    """Rows of one model that references name, fetched with one query.

    A batch service names every reference first (`want`, `want_many`), then
    resolves each (`one`, `many`) with the answers `resolve` and
    `resolve_many` give for a single item. `earlier` holds rows the batch is
    creating itself, which later items may reference.
    """

    def __init__(self, model: type[models.Model], *, project: Project) -> None:
        self.model = model
        self.project = project
        self.wanted: set[uuid.UUID] = set()
        self.loaded: set[uuid.UUID] = set()
        self.found: dict[Any, Any] = {}

    def _key(self, value: Any) -> Any:
        if isinstance(value, self.model):
            return value.pk
        try:
            return uuid.UUID(str(value))
        except ValueError:
            return value

    def want(self, value: Any) -> None:
        if value is not None and value != "":
            key = self._key(value)
            if isinstance(key, uuid.UUID):
                self.wanted.add(key)

    def want_many(self, values: Any) -> None:
        if isinstance(values, list | tuple | set):
            for value in values:
                self.want(value)

    def _rows(self) -> dict[Any, Any]:
        # Only keys named since the last fetch cost a query.
        missing = self.wanted - self.loaded
        if missing:
            self.found.update(
                (o.pk, o)
                for o in self.model.objects.filter(project=self.project, pk__in=missing)
            )
            self.loaded |= missing
        return self.found

    def one(self, *, field: str, value: Any, earlier: dict | None = None) -> Any:
        """The row `value` names, or a field error; None for no value."""
        if value is None or value == "":
            return None
        self.want(value)
        pk = self._key(value)
        obj = (earlier or {}).get(pk) or self._rows().get(pk)
        if obj is None:
            name = self.model._meta.verbose_name
            shown = value.pk if isinstance(value, self.model) else value
            raise ValidationError({field: f"No {name} {shown} in this project."})
        return obj

    def many(self, *, field: str, values: Any, earlier: dict | None = None) -> list:
        """The rows a list of ids names, in order without repeats."""
        if values is None:
            return []
        if not isinstance(values, list | tuple | set):
            raise ValidationError({field: "Must be a list of ids."})
        pks = list(dict.fromkeys(self._key(v) for v in values))
        if any(not isinstance(pk, uuid.UUID) for pk in pks):
            raise ValidationError({field: "Every item must be a UUID."})
        self.want_many(pks)
        earlier = earlier or {}
        rows = self._rows()
        objs = {pk: earlier.get(pk) or rows.get(pk) for pk in pks}
        missing = [str(pk) for pk, obj in objs.items() if obj is None]
        if missing:
            name = self.model._meta.verbose_name_plural
            raise ValidationError(
                {field: f"No {name} {', '.join(missing)} in this project."}
            )
        return list(objs.values())


def resolve(
    model: type[models.Model],
    *,
    project: Project,
    field: str,
    value: Any,
) -> Any:
    """The `model` row with pk `value` in `project`, or a field error."""
    return Resolver(model, project=project).one(field=field, value=value)


def resolve_many(
    model: type[models.Model], *, project: Project, field: str, values: Any
) -> list[Any]:
    """The `model` rows a list of ids names in `project`, or a field error."""
    return Resolver(model, project=project).many(field=field, values=values)


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


def to_utc(value: datetime, *, field: str) -> datetime:
    """An aware datetime in UTC, which every database keeps.

    PostgreSQL refuses offsets beyond 15:59 that Python allows; a naive
    value is taken as UTC; a value that leaves the year range is an error.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValidationError({field: "Out of the supported date range."}) from exc


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
    text = json_check(value, field=field)
    if "e+" in text or "-0.0" in text:
        return _as_jsonb_returns(json.loads(text))
    # No float of the text is one that jsonb would return changed.
    return json.loads(text)


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


def id_or_none(value: Any) -> str | None:
    """A foreign key's stored value (`obj.<name>_id`) as text.

    Read from the key, never the related object: on a row loaded without
    it, that would be one query per row (a replayed batch of runs: one per run).
    """
    return None if value is None else str(value)


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


def body_digest(snapshot: dict[str, Any]) -> str:
    """A fingerprint of a create's normalised body, kept to judge replays."""
    text = json.dumps(snapshot, sort_keys=True, default=json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def check_replay(
    *,
    stored_digest: str,
    stored: dict[str, Any],
    supplied: dict[str, Any],
    what: str,
    grown: Iterable[str] = (),
) -> None:
    """Raise IdempotencyConflict unless a repeated create has the created body.

    The row may have changed since it was created (an update, a transition):
    a replay is judged against the body that created it, kept as a digest.
    Rows stored before digests existed are judged against their values.
    """
    if stored_digest:
        if body_digest(supplied) == stored_digest:
            return
        if body_digest(stored) != stored_digest:
            raise IdempotencyConflict(
                f"A {what} with this id was created with a different body."
            )
    check_same(stored, supplied, what=what, grown=grown)


_AGE = re.compile(r"^(\d+)([hdw])$")
_AGE_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def parse_age(value: str) -> timedelta:
    """An age such as 90d, 12w or 36h; 0d means "up to now"."""
    match = _AGE.match(value.strip().lower())
    if match is None:
        raise ValueError(f"{value!r} is not an age such as 90d, 12w or 36h.")
    return timedelta(**{_AGE_UNITS[match[2]]: int(match[1])})
