"""Consistent backups of the whole database, their verification and restore.

SQLite: the online backup API copies the file page by page inside one read
transaction, so a server writing meanwhile (WAL) neither blocks nor tears it.
PostgreSQL: `pg_dump -Fc` reads everything in one snapshot; `pg_restore`
puts it back in a single transaction. A backup is written under a temporary
name, verified, then renamed, so a file named like a backup is a whole one.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections

PREFIX = "swarmsite-"
_NAME_RE = re.compile(r"^swarmsite-\d{8}T\d{6}\.\d{6}Z\.(sqlite3|dump)$")
_SUFFIX = {"sqlite": ".sqlite3", "postgresql": ".dump"}


class BackupError(Exception):
    """A backup, verification or restore that could not be done."""


@dataclass
class BackupReport:
    """A verified backup file: its tables and their row counts."""

    path: Path
    vendor: str
    tables: dict[str, int] = field(default_factory=dict)
    size_bytes: int = 0
    seconds: float = 0.0
    rotated: list[Path] = field(default_factory=list)

    @property
    def total_rows(self) -> int:
        return sum(self.tables.values())


def _database(using: str) -> dict[str, Any]:
    return connections[using].settings_dict


def _vendor(db: dict[str, Any]) -> str:
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return "sqlite"
    if db["ENGINE"] == "django.db.backends.postgresql":
        return "postgresql"
    raise BackupError(f"Backups support SQLite and PostgreSQL, not {db['ENGINE']}.")


def backup_name(vendor: str, now: datetime | None = None) -> str:
    """`swarmsite-<UTC timestamp>.<sqlite3|dump>`, sortable by time."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{PREFIX}{stamp}{_SUFFIX[vendor]}"


def vendor_of(path: Path) -> str:
    """The database kind a backup file holds, from its first bytes."""
    try:
        with path.open("rb") as handle:
            magic = handle.read(16)
    except OSError as exc:
        raise BackupError(f"Cannot read {path}: {exc.strerror}.") from exc
    if magic.startswith(b"SQLite format 3\x00"):
        return "sqlite"
    if magic.startswith(b"PGDMP"):
        return "postgresql"
    raise BackupError(
        f"{path} is neither a SQLite database nor a pg_dump custom-format archive."
    )


# SQLite ---------------------------------------------------------------------


def _sqlite_path(db: dict[str, Any]) -> str:
    name = str(db["NAME"])
    if name.startswith(":memory:") or "mode=memory" in name:
        raise BackupError("An in-memory SQLite database cannot be backed up.")
    return name


def _sqlite_tables(conn: sqlite3.Connection) -> dict[str, int]:
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    return {
        name: conn.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0]
        for name in names
    }


def _sqlite_backup(db: dict[str, Any], target: Path) -> None:
    name = _sqlite_path(db)
    if not Path(name).is_file():
        raise BackupError(f"There is no SQLite database at {name}.")
    timeout = db.get("OPTIONS", {}).get("timeout", 30)
    source = sqlite3.connect(name, timeout=timeout)
    try:
        copy = sqlite3.connect(target)
        try:
            # All pages in one step: one read transaction, one snapshot.
            source.backup(copy)
            # A self-contained file, without a -wal beside it.
            copy.execute("PRAGMA journal_mode=DELETE")
        finally:
            copy.close()
    finally:
        source.close()


def _sqlite_verify(path: Path) -> dict[str, int]:
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"{path} does not open: {exc}.") from exc
    try:
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"{path} is damaged: {check}.")
        tables = _sqlite_tables(conn)
    except sqlite3.Error as exc:
        raise BackupError(f"{path} cannot be read: {exc}.") from exc
    finally:
        conn.close()
    if "django_migrations" not in tables:
        raise BackupError(f"{path} is not a Swarmsite database (no migrations).")
    return tables


def _sqlite_restore(path: Path, db: dict[str, Any], *, force: bool) -> None:
    target = _sqlite_path(db)
    if Path(target).exists():
        conn = sqlite3.connect(target)
        try:
            existing = _sqlite_tables(conn)
        finally:
            conn.close()
        _refuse_unless_empty(existing, force=force, where=target)
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        copy = sqlite3.connect(target, timeout=db.get("OPTIONS", {}).get("timeout", 30))
        try:
            # Replaces every page of the target in one write transaction.
            source.backup(copy)
        finally:
            copy.close()
    finally:
        source.close()


# PostgreSQL -----------------------------------------------------------------


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} was not found on PATH; install the PostgreSQL client tools "
            "(Debian: apt-get install postgresql-client) matching the server."
        )
    return found


def _pg_env(db: dict[str, Any]) -> dict[str, str]:
    """Connection settings for the client tools, from DATABASES."""
    env = os.environ.copy()
    options = db.get("OPTIONS", {})
    values = {
        "PGHOST": db.get("HOST") or "",
        "PGPORT": str(db.get("PORT") or ""),
        "PGUSER": db.get("USER") or "",
        "PGPASSWORD": db.get("PASSWORD") or "",
        "PGSSLMODE": options.get("sslmode", ""),
        "PGCONNECT_TIMEOUT": str(options.get("connect_timeout", "") or ""),
    }
    for key, value in values.items():
        if value:
            env[key] = value
    return env


def _run(args: list[str], db: dict[str, Any], *, what: str) -> str:
    try:
        done = subprocess.run(
            args, env=_pg_env(db), capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise BackupError(f"{what} could not start: {exc}.") from exc
    if done.returncode != 0:
        detail = done.stderr.strip() or done.stdout.strip()
        raise BackupError(f"{what} failed (exit {done.returncode}): {detail}")
    return done.stdout


def _pg_connect(db: dict[str, Any], dbname: str):
    import psycopg

    try:
        return psycopg.connect(
            host=db.get("HOST") or None,
            port=db.get("PORT") or None,
            user=db.get("USER") or None,
            password=db.get("PASSWORD") or None,
            dbname=dbname,
            autocommit=True,
            connect_timeout=10,
        )
    except psycopg.OperationalError as exc:
        raise BackupError(f"Cannot connect to database {dbname!r}: {exc}") from exc


def _pg_tables(db: dict[str, Any], dbname: str) -> dict[str, int]:
    with _pg_connect(db, dbname) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "ORDER BY tablename"
            )
        ]
        return {
            name: conn.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0]
            for name in names
        }


def _pg_backup(db: dict[str, Any], target: Path) -> None:
    _run(
        [_pg_tool("pg_dump"), "-Fc", "--no-owner", "-f", str(target), db["NAME"]],
        db,
        what="pg_dump",
    )


def _pg_restore_into(path: Path, db: dict[str, Any], dbname: str, *, clean: bool):
    args = [
        _pg_tool("pg_restore"),
        "--no-owner",
        "--no-privileges",
        "--single-transaction",
        "--exit-on-error",
        "-d",
        dbname,
    ]
    if clean:
        args += ["--clean", "--if-exists"]
    _run([*args, str(path)], db, what="pg_restore")


def _pg_count_rows(path: Path, db: dict[str, Any]) -> dict[str, int]:
    """Rows of each table, by streaming the archive's COPY data through."""
    args = [_pg_tool("pg_restore"), "--data-only", "-f", "-", str(path)]
    tables: dict[str, int] = {}
    with subprocess.Popen(
        args,
        env=_pg_env(db),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        current: str | None = None
        for line in process.stdout:
            if current is None:
                if line.startswith(b"COPY ") and line.endswith(b" FROM stdin;\n"):
                    name = line.split(b" ", 2)[1].decode()
                    current = name.removeprefix("public.").strip('"')
                    tables[current] = 0
            elif line == b"\\.\n":
                current = None
            else:
                # COPY text format escapes newlines: one line is one row.
                tables[current] += 1
        stderr = process.stderr.read().decode(errors="replace").strip()
    if process.returncode != 0 or current is not None:
        raise BackupError(f"{path} cannot be read back by pg_restore: {stderr}")
    return dict(sorted(tables.items()))


def _pg_verify(
    path: Path, db: dict[str, Any], *, restore_test: bool = False
) -> dict[str, int]:
    listing = _run([_pg_tool("pg_restore"), "--list", str(path)], db, what="pg_restore")
    if " TABLE DATA public django_migrations " not in listing:
        raise BackupError(f"{path} is not a Swarmsite database (no migrations).")
    if not restore_test:
        return _pg_count_rows(path, db)
    # A real restore into a scratch database, dropped afterwards: slower,
    # and the full proof that the archive restores.
    scratch = f"swarmsite_verify_{uuid.uuid4().hex[:12]}"
    with _pg_connect(db, "postgres") as admin:
        admin.execute(f'CREATE DATABASE "{scratch}"')
    try:
        _pg_restore_into(path, db, scratch, clean=False)
        return _pg_tables(db, scratch)
    finally:
        with _pg_connect(db, "postgres") as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')


def _pg_restore(path: Path, db: dict[str, Any], *, force: bool) -> None:
    existing = _pg_tables(db, db["NAME"])
    _refuse_unless_empty(existing, force=force, where=f"database {db['NAME']!r}")
    _pg_restore_into(path, db, db["NAME"], clean=bool(existing))


# Shared ---------------------------------------------------------------------


def _refuse_unless_empty(existing: dict[str, int], *, force: bool, where: str):
    if existing and not force:
        rows = sum(existing.values())
        raise BackupError(
            f"{where} is not empty ({len(existing)} tables, {rows} rows); restore "
            "into an empty database, or pass --force to replace its contents."
        )


def backup_rotate(*, folder: Path, keep: int, suffix: str) -> list[Path]:
    """Delete all but the newest `keep` backups of this kind in `folder`."""
    if keep < 1:
        raise BackupError("--keep must be at least 1.")
    backups = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and _NAME_RE.match(p.name) and p.name.endswith(suffix)
    )
    removed = backups[:-keep]
    for path in removed:
        path.unlink()
    return removed


def backup_verify(
    *, path: Path, restore_test: bool = False, using: str = "default"
) -> BackupReport:
    """Open a backup and read back its tables and row counts.

    `restore_test` also restores a pg_dump archive into a scratch database.
    """
    path = Path(path)
    vendor = vendor_of(path)
    if vendor == "sqlite":
        tables = _sqlite_verify(path)
    else:
        tables = _pg_verify(path, _database(using), restore_test=restore_test)
    return BackupReport(
        path=path, vendor=vendor, tables=tables, size_bytes=path.stat().st_size
    )


def backup_create(
    *, output: Path | None = None, keep: int | None = None, using: str = "default"
) -> BackupReport:
    """Back the database up while it serves, verify the copy, then rotate.

    `output` is a folder (default DATA_DIR/backups) or a file path.
    """
    if keep is not None and keep < 1:
        raise BackupError("--keep must be at least 1.")
    db = _database(using)
    vendor = _vendor(db)
    if output is None:
        output = Path(settings.DATA_DIR) / "backups"
    output = Path(output)
    if output.is_dir() or not output.suffix:
        output.mkdir(parents=True, exist_ok=True)
        target = output / backup_name(vendor)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        target = output
    if target.exists():
        raise BackupError(f"{target} already exists; choose another --output.")
    partial = target.with_name(f".{target.name}.partial")
    started = time.monotonic()
    try:
        if vendor == "sqlite":
            _sqlite_backup(db, partial)
        else:
            _pg_backup(db, partial)
        report = backup_verify(path=partial, using=using)
        partial.rename(target)
    finally:
        partial.unlink(missing_ok=True)
    report.path = target
    report.seconds = time.monotonic() - started
    if keep is not None:
        report.rotated = backup_rotate(
            folder=target.parent, keep=keep, suffix=_SUFFIX[vendor]
        )
    return report


def backup_restore(
    *, path: Path, force: bool = False, using: str = "default"
) -> BackupReport:
    """Restore a verified backup into the (empty, unless `force`) database."""
    path = Path(path)
    report = backup_verify(path=path, using=using)
    db = _database(using)
    vendor = _vendor(db)
    if report.vendor != vendor:
        raise BackupError(
            f"{path} is a {report.vendor} backup; the database is {vendor}."
        )
    connections.close_all()
    if vendor == "sqlite":
        _sqlite_restore(path, db, force=force)
        conn = sqlite3.connect(_sqlite_path(db))
        try:
            restored = _sqlite_tables(conn)
        finally:
            conn.close()
    else:
        _pg_restore(path, db, force=force)
        restored = _pg_tables(db, db["NAME"])
    differing = [
        name for name, rows in report.tables.items() if restored.get(name) != rows
    ]
    if differing:
        raise BackupError(
            f"The restored database differs from the backup in: {', '.join(differing)}."
        )
    return report
