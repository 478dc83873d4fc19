"""Import of an export: stage each model, check it, write it in one go.

Import stages every record in a temporary table per model (COPY on
PostgreSQL, batched INSERTs on SQLite), checks references and conflicts with
SQL that names the offending line, then writes each model with one
`INSERT ... SELECT ... ON CONFLICT` statement, all in one transaction.
Importing the same file again writes nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.core.management.color import no_style
from django.db import IntegrityError, connection, models, transaction

from audit.chain import audit_log_digest
from audit.journal import journal_head_advance, journal_head_lock
from audit.models import AuditLog, Event
from ops.selectors import (
    APPEND,
    FORMAT_NAME,
    FORMAT_VERSION,
    HEAD,
    INSERT,
    SPECS,
    SPECS_BY_NAME,
    UPSERT,
    ModelSpec,
)
from ops.services.staging import Stage, field_adapter, field_checker
from swarmsite.models import Project
from tasks.models import (
    AgentHeartbeat,
)


class DataImportError(Exception):
    """A record of an import file is unusable; nothing was imported."""

    def __init__(self, line: int | None, message: str):
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}" if line else message)


@dataclass
class ImportReport:
    """What an import read and wrote, per model."""

    read: dict[str, int] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)


# -- import


class _Importer:
    def __init__(self, cursor: Any):
        self.cursor = cursor
        self.report = ImportReport()
        self.stages: dict[str, Stage] = {}
        self.converters: dict[str, list[tuple[str, Callable, Callable]]] = {}
        self.file_projects: dict[str, int] = {}
        self.db_projects = dict(Project.objects.values_list("slug", "id"))
        self.db_project_slugs = {v: k for k, v in self.db_projects.items()}
        self.content_types: dict[tuple[str, str], int] = {}
        self.journal_projects: set[int] = set()

    # reading

    def read(self, lines: Iterable[bytes]) -> None:
        number = 0
        for number, raw in enumerate(lines, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataImportError(number, f"not UTF-8 ({exc.reason})") from None
            if number == 1:
                self._header(text)
                continue
            if not text.strip():
                continue
            self._record(number, text)
        if number == 0:
            raise DataImportError(None, "the file is empty")
        for stage in self.stages.values():
            stage.flush()

    def _header(self, text: str) -> None:
        try:
            header = json.loads(text)
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
            raise DataImportError(1, f"not a {FORMAT_NAME} file (no header line)")
        if header.get("version") != FORMAT_VERSION:
            raise DataImportError(
                1, f"format version {header.get('version')!r} is not supported"
            )

    def _record(self, number: int, text: str) -> None:
        try:
            record = json.loads(text)
        except ValueError as exc:
            raise DataImportError(number, f"bad JSON ({exc})") from None
        if not isinstance(record, dict) or set(record) != {"model", "fields"}:
            raise DataImportError(number, 'a record is {"model": ..., "fields": {...}}')
        spec = (
            SPECS_BY_NAME.get(record["model"])
            if isinstance(record["model"], str)
            else None
        )
        if spec is None:
            raise DataImportError(number, f"unknown model {record['model']!r}")
        values = record["fields"]
        if not isinstance(values, dict):
            raise DataImportError(number, "fields must be an object")
        missing = [n for n in spec.fields if n not in values]
        if missing:
            raise DataImportError(
                number, f"{spec.name}: missing field {', '.join(missing)}"
            )
        unknown = sorted(set(values) - set(spec.fields))
        if unknown:
            raise DataImportError(
                number, f"{spec.name}: unknown field {', '.join(unknown)}"
            )
        python: dict[str, Any] = {}
        row: list[Any] = [number]
        for name, check, adapt in self._converters(spec):
            try:
                value = check(values[name])
            except ValueError as exc:
                raise DataImportError(number, f"{spec.name}: {name} {exc}") from None
            python[name] = value
            row.append(adapt(value))
        if spec.model is Project:
            self._project(number, python)
        elif spec.model is AuditLog:
            self._check_audit_hash(number, python)
        if spec.model in (Event, AuditLog):
            self.journal_projects.add(python["project"])
        stage = self.stages.get(spec.name)
        if stage is None:
            stage = self.stages[spec.name] = Stage(spec, self.cursor)
        stage.add(row)
        self.report.read[spec.name] = self.report.read.get(spec.name, 0) + 1

    def _converters(self, spec: ModelSpec) -> list[tuple[str, Callable, Callable]]:
        converters = self.converters.get(spec.name)
        if converters is None:
            converters = []
            for model_field in spec.model_fields():
                target = model_field.related_model if model_field.is_relation else None
                if target is Project:
                    check, adapt = self._project_ref, int
                elif target is ContentType:
                    check, adapt = self._content_type_ref, lambda v: v
                else:
                    check, adapt = (
                        field_checker(model_field),
                        field_adapter(model_field),
                    )
                converters.append((model_field.name, check, adapt))
            self.converters[spec.name] = converters
        return converters

    def _project_ref(self, value: Any) -> int:
        if not isinstance(value, str):
            raise ValueError(f"must be a project slug, not {value!r}")
        project_id = self.file_projects.get(value, self.db_projects.get(value))
        if project_id is None:
            raise ValueError(
                f"{value!r} is neither earlier in the file nor in the database"
            )
        return project_id

    def _content_type_ref(self, value: Any) -> int | None:
        if value is None:
            return None
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, str) for v in value)
        ):
            raise ValueError(f"must be [app_label, model], not {value!r}")
        key = (value[0], value[1])
        if key not in self.content_types:
            try:
                found = ContentType.objects.get_by_natural_key(*key)
            except ContentType.DoesNotExist:
                raise ValueError(f"{value!r} is not a known model") from None
            self.content_types[key] = found.pk
        return self.content_types[key]

    def _project(self, number: int, values: dict[str, Any]) -> None:
        slug, project_id = values["slug"], values["id"]
        # Audit hashes cover project_id: a project must keep its id.
        stored_id = self.db_projects.get(slug)
        if stored_id is not None and stored_id != project_id:
            raise DataImportError(
                number,
                f"project {slug!r} has id {stored_id} here but {project_id} in the "
                "file; audit hashes cover the project id",
            )
        holder = self.db_project_slugs.get(project_id)
        if holder is not None and holder != slug:
            raise DataImportError(
                number,
                f"project id {project_id} belongs to {holder!r} here, not {slug!r}",
            )
        if self.file_projects.get(slug, project_id) != project_id:
            raise DataImportError(number, f"project {slug!r} appears twice")
        self.file_projects[slug] = project_id

    def _check_audit_hash(self, number: int, values: dict[str, Any]) -> None:
        entry = AuditLog(
            **{k: v for k, v in values.items() if k not in ("project", "content_type")},
            project_id=values["project"],
            content_type_id=values["content_type"],
        )
        if audit_log_digest(entry) != entry.hash:
            raise DataImportError(
                number,
                f"audit record seq {entry.seq}: the hash does not match its fields "
                "(edited, or content type ids differ between the databases)",
            )

    # writing

    def apply(self) -> None:
        for spec in SPECS:
            stage = self.stages.get(spec.name)
            if stage is None:
                continue
            if spec.mode == HEAD:
                continue
            if spec.model in (Event, AuditLog):
                # Writers of these projects wait until the import commits, so
                # none takes a position or seq the file brings.
                self._touched_heads(lock=True)
            self._check_references(stage)
            self._check_unique(stage)
            self.report.written[spec.name] = self._write(stage)
            if spec.model is Project and connection.vendor == "postgresql":
                for sql in connection.ops.sequence_reset_sql(no_style(), [Project]):
                    self.cursor.execute(sql)
        self._move_heads()
        for stage in self.stages.values():
            stage.drop()

    def _first(self, sql: str, params: Iterable[Any] = ()) -> tuple | None:
        self.cursor.execute(sql, list(params))
        return self.cursor.fetchone()

    def _check_references(self, stage: Stage) -> None:
        for model_field in stage.fields:
            target = model_field.related_model if model_field.is_relation else None
            if target is None or target in (Project, ContentType):
                continue
            col = stage._q(model_field.column)
            target_table = target._meta.db_table
            target_pk = stage._q(target._meta.pk.column)
            also_staged = ""
            if target is stage.spec.model:
                also_staged = (
                    f" AND NOT EXISTS (SELECT 1 FROM {stage.name} o "
                    f"WHERE o.{target_pk} = s.{col})"
                )
            found = self._first(
                f"SELECT s._line, s.{col} FROM {stage.name} s "
                f"WHERE s.{col} IS NOT NULL AND NOT EXISTS "
                f"(SELECT 1 FROM {target_table} t WHERE t.{target_pk} = s.{col})"
                f"{also_staged} ORDER BY s._line LIMIT 1"
            )
            if found:
                raise DataImportError(
                    found[0],
                    f"{stage.spec.name}: {model_field.name} "
                    f"{_show(found[1])} is neither in the file nor in the database",
                )

    def _key_columns(self, spec: ModelSpec) -> list[str]:
        return [spec.model._meta.get_field(n).column for n in spec.key]

    def _check_unique(self, stage: Stage) -> None:
        spec, q = stage.spec, stage._q
        key = self._key_columns(spec)
        if spec.mode == UPSERT:
            cols = ", ".join(q(c) for c in key)
            found = self._first(
                f"SELECT MIN(_line), MAX(_line) FROM {stage.name} GROUP BY {cols} "
                "HAVING COUNT(*) > 1 ORDER BY 1 LIMIT 1"
            )
            if found:
                raise DataImportError(
                    found[1], f"{spec.name}: same key as line {found[0]}"
                )
        # Another unique constraint taken by a different row of the database;
        # an empty table (a fresh import) has none to take.
        if self._first(f"SELECT 1 FROM {stage.table} LIMIT 1") is None:
            return
        meta = spec.model._meta
        uniques = [
            [meta.get_field(n).column for n in c.fields]
            for c in meta.constraints
            # A conditional constraint (memory keys) is left to the database.
            if isinstance(c, models.UniqueConstraint) and c.fields and not c.condition
        ] + [[f.column] for f in meta.local_fields if f.unique and not f.primary_key]
        for unique in uniques:
            if set(unique) == set(key) or not set(unique) <= set(stage.columns):
                continue
            join = " AND ".join(f"t.{q(c)} = s.{q(c)}" for c in unique)
            differs = " OR ".join(f"t.{q(c)} <> s.{q(c)}" for c in key)
            found = self._first(
                f"SELECT s._line FROM {stage.name} s JOIN {stage.table} t ON {join} "
                f"WHERE {differs} ORDER BY s._line LIMIT 1"
            )
            if found:
                names = ", ".join(f.name for f in stage.fields if f.column in unique)
                raise DataImportError(
                    found[0],
                    f"{spec.name}: another row of the database has the same {names}",
                )

    def _write_sql(self, stage: Stage, lines: str = "true") -> str:
        """The one statement that writes a model's staged rows (`lines`: a
        condition on `s._line`)."""
        spec, q = stage.spec, stage._q
        cols = ", ".join(q(c) for c in stage.columns)
        key = self._key_columns(spec)
        select = (
            f"SELECT {', '.join(f's.{q(c)}' for c in stage.columns)} "
            f"FROM {stage.name} s WHERE {lines}"
        )
        insert = f"INSERT INTO {stage.table} ({cols}) "
        if spec.mode == UPSERT:
            others = [c for c in stage.columns if c not in key and c != "id"]
            sets = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in others)
            if connection.vendor == "postgresql":
                changed = (
                    f"({', '.join(f'{stage.table}.{q(c)}' for c in others)}) IS "
                    f"DISTINCT FROM ({', '.join(f'excluded.{q(c)}' for c in others)})"
                )
            else:
                changed = " OR ".join(
                    f"{stage.table}.{q(c)} IS NOT excluded.{q(c)}" for c in others
                )
            return (
                f"{insert}{select} ON CONFLICT ({', '.join(q(c) for c in key)}) "
                f"DO UPDATE SET {sets} WHERE {changed}"
            )
        if spec.mode == INSERT and spec.model is AgentHeartbeat:
            match = " AND ".join(f"t.{q(c)} = s.{q(c)}" for c in key)
            return (
                f"{insert}{select} AND NOT EXISTS (SELECT 1 FROM {stage.table} t "
                f"WHERE {match})"
            )
        return f"{insert}{select} ON CONFLICT DO NOTHING"

    def _write(self, stage: Stage) -> int:
        try:
            with transaction.atomic():
                self.cursor.execute(self._write_sql(stage))
        except IntegrityError as exc:
            line = self._failing_line(stage)
            raise DataImportError(
                line, f"{stage.spec.name}: the database refused it ({exc})".strip()
            ) from None
        written = max(self.cursor.rowcount, 0)
        if stage.spec.mode == APPEND and written < stage.count:
            self._check_appended_equal(stage)
        return written

    def _failing_line(self, stage: Stage) -> int | None:
        """Bisect the staged lines for the first one the database refuses."""

        class _Undo(Exception):
            pass

        def refused(first: int, last: int) -> bool:
            try:
                with transaction.atomic():
                    self.cursor.execute(
                        self._write_sql(stage, "s._line BETWEEN %s AND %s"),
                        [first, last],
                    )
                    raise _Undo
            except _Undo:
                return False
            except IntegrityError:
                return True

        low, high = self._first(f"SELECT MIN(_line), MAX(_line) FROM {stage.name}")
        if low is None or not refused(low, high):
            return None
        while low < high:
            middle = (low + high) // 2
            if refused(low, middle):
                high = middle
            else:
                low = middle + 1
        return low

    def _check_appended_equal(self, stage: Stage) -> None:
        """Rows skipped as already present must equal the stored ones."""
        q = stage._q
        key = self._key_columns(stage.spec)
        match = " AND ".join(f"t.{q(c)} = s.{q(c)}" for c in key)
        json_cols = [f.column for f in stage.fields if isinstance(f, models.JSONField)]
        pg = connection.vendor == "postgresql"
        plain = [c for c in stage.columns if pg or c not in json_cols]
        same = " AND ".join(
            f"t.{q(c)} IS NOT DISTINCT FROM s.{q(c)}" if pg else f"t.{q(c)} IS s.{q(c)}"
            for c in plain
        )
        found = self._first(
            f"SELECT s._line FROM {stage.name} s WHERE NOT EXISTS "
            f"(SELECT 1 FROM {stage.table} t WHERE {match} AND {same}) "
            "ORDER BY s._line LIMIT 1"
        )
        if found is None and not pg and json_cols:
            # SQLite keeps JSON as text in insertion order: compare parsed.
            pairs = ", ".join(f"s.{q(c)}, t.{q(c)}" for c in json_cols)
            self.cursor.execute(
                f"SELECT s._line, {pairs} FROM {stage.name} s "
                f"JOIN {stage.table} t ON {match} ORDER BY s._line"
            )
            while found is None and (chunk := self.cursor.fetchmany(2000)):
                for row in chunk:
                    values = row[1:]
                    if any(
                        _loads(values[i]) != _loads(values[i + 1])
                        for i in range(0, len(values), 2)
                    ):
                        found = row
                        break
        if found is not None:
            raise DataImportError(
                found[0],
                f"{stage.spec.name}: differs from the stored record with the same "
                f"{', '.join(stage.spec.key)} (this log is append-only)",
            )

    def _touched_heads(self, *, lock: bool = False) -> dict[int, tuple]:
        """Staged journal heads by project id, with every project whose
        events or audit records the file holds; `lock` takes their rows."""
        heads: dict[int, tuple] = {}
        stage = self.stages.get("audit.journalhead")
        if stage is not None:
            self.cursor.execute(
                f"SELECT project_id, last_position, audit_anchor_seq, "
                f"audit_anchor_hash FROM {stage.name}"
            )
            heads = {row[0]: row[1:] for row in self.cursor.fetchall()}
        for project_id in self.journal_projects:
            heads.setdefault(project_id, (0, 0, ""))
        if lock:
            for project_id in sorted(heads):
                journal_head_lock(project_id=project_id)
        return heads

    def _move_heads(self) -> None:
        """Set the journal heads so later writes continue every sequence."""
        heads = self._touched_heads()
        stage = self.stages.get("audit.journalhead")
        written = 0
        for project_id in sorted(heads):
            file_position, anchor_seq, anchor_hash = heads[project_id]
            events = Event.objects.filter(project_id=project_id)
            audits = AuditLog.objects.filter(project_id=project_id)
            last_event = (
                events.order_by("-position").values_list("position", flat=True).first()
            )
            first_audit = audits.order_by("seq").values_list("seq", flat=True).first()
            last_audit = audits.order_by("-seq").values_list("seq", "hash").first()
            # The file's anchor holds only where no kept record precedes it.
            anchor_holds = first_audit is None or first_audit > anchor_seq
            written += journal_head_advance(
                project_id=project_id,
                last_position=max(file_position, last_event or 0),
                audit_seq=last_audit[0] if last_audit else 0,
                audit_hash=last_audit[1] if last_audit else "",
                audit_anchor=(anchor_seq, anchor_hash) if anchor_holds else None,
            )
        if stage is not None:
            self.report.written["audit.journalhead"] = written


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _show(value: Any) -> str:
    if isinstance(value, str) and len(value) == 32 and connection.vendor == "sqlite":
        try:
            return repr(str(uuid.UUID(value)))
        except ValueError:
            pass
    return repr(str(value))


def data_import(*, lines: Iterable[bytes]) -> ImportReport:
    """Import an export file (its raw lines) in one transaction.

    Raises DataImportError naming the line of the first bad record; then
    nothing is written.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        importer = _Importer(cursor)
        importer.read(lines)
        importer.apply()
    return importer.report
