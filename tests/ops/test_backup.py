"""backup, verify_backup and restore on the configured database.

The acceptance test restores a backup taken while another thread writes into
a fresh database, through the real commands in a subprocess.
"""

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections
from django.test import override_settings

from audit.journal import journaled
from audit.services import audit_log_record
from ops.backup import backup_create, backup_name
from tasks.models import Task
from tasks.services import task_create
from tests.utils import ON_POSTGRES, postgres_only

pytestmark = pytest.mark.django_db(transaction=True)

BASE_DIR = Path(settings.BASE_DIR)
MARK = "RESULT:"
SUFFIX = ".dump" if ON_POSTGRES else ".sqlite3"


def run(name: str, *args: str) -> str:
    out = StringIO()
    call_command(name, *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _pg_admin():
    import psycopg

    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"] or "localhost",
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    )


@pytest.fixture
def scratch_env(tmp_path) -> Iterator[dict[str, str]]:
    """Environment for manage.py on a new, empty database."""
    env = os.environ.copy()
    env.pop("REDIS_URL", None)
    env.update(DJANGO_DEBUG="true", SWARMSITE_DATA_DIR=str(tmp_path / "scratch"))
    if not ON_POSTGRES:
        env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'restored.sqlite3'}"
        yield env
        return
    db = connection.settings_dict
    name = f"swarmsite_restore_{uuid.uuid4().hex[:12]}"
    with _pg_admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    host = db["HOST"] or "localhost"
    env["DATABASE_URL"] = f"postgres://{auth}@{host}:{db['PORT'] or 5432}/{name}"
    try:
        yield env
    finally:
        with _pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


READ_IDS = f"""
import json
from tasks.models import Task
ids = sorted(str(pk) for pk in Task.objects.values_list("pk", flat=True))
print("{MARK}" + json.dumps(ids))
"""


def restored_task_ids(env: dict[str, str]) -> set[str]:
    done = manage(env, "shell", "-c", READ_IDS)
    assert done.returncode == 0, done.stderr
    line = [x for x in done.stdout.splitlines() if x.startswith(MARK)][-1]
    return set(json.loads(line[len(MARK) :]))


def test_backup_taken_while_writing_restores_every_earlier_row_and_a_valid_chain(
    project, tmp_path, scratch_env
):
    committed: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def write() -> None:
        try:
            n = 0
            while not stop.is_set():
                with journaled():
                    task = task_create(project=project, title=f"written {n}")[0]
                    audit_log_record(
                        project_id=project.pk, action="tool.invoke", target=f"{n}"
                    )
                committed.append(str(task.pk))
                n += 1
        except BaseException as exc:
            failures.append(exc)
        finally:
            connections.close_all()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        deadline = time.monotonic() + 30
        while len(committed) < 30 and time.monotonic() < deadline and not failures:
            time.sleep(0.01)
        before = set(committed)
        report = backup_create(output=tmp_path / "backups")
        at_end = len(committed)
        # The writer was never stopped by the backup: it keeps committing.
        deadline = time.monotonic() + 30
        while len(committed) < at_end + 10 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        writer.join(30)
    assert not failures, failures
    assert len(before) >= 30
    assert len(committed) >= at_end + 10

    restore = manage(scratch_env, "restore", str(report.path))
    assert restore.returncode == 0, restore.stderr
    chain = manage(scratch_env, "verify_audit_chain")
    assert chain.returncode == 0, chain.stdout + chain.stderr
    assert "default: intact" in chain.stdout

    restored = restored_task_ids(scratch_env)
    assert before <= restored
    assert restored <= set(committed)
    assert report.tables["tasks_task"] == len(restored)


def test_restore_refuses_a_database_that_is_not_empty(task, tmp_path):
    report = backup_create(output=tmp_path)
    task_create(project=task.project, title="after the backup")

    with pytest.raises(CommandError, match="is not empty .*--force"):
        run("restore", str(report.path))
    assert Task.objects.filter(title="after the backup").exists()


def test_restore_force_replaces_a_database_that_is_not_empty(task, tmp_path):
    report = backup_create(output=tmp_path)
    task_create(project=task.project, title="after the backup")

    out = run("restore", "--force", str(report.path))

    assert "row counts match the backup" in out
    assert list(Task.objects.values_list("pk", flat=True)) == [task.pk]


def test_backup_defaults_to_a_utc_timestamped_file_in_data_dir(task, tmp_path):
    with override_settings(DATA_DIR=tmp_path):
        out = run("backup")

    (path,) = (tmp_path / "backups").iterdir()
    assert path.name.startswith("swarmsite-") and path.name.endswith(f"Z{SUFFIX}")
    assert out.splitlines()[-1] == str(path)
    assert "tasks_task" in out and "Verified" in out
    assert not list((tmp_path / "backups").glob(".*partial"))


def test_backup_keep_rotates_older_backups_only(task, tmp_path):
    unrelated = tmp_path / "notes.txt"
    unrelated.write_text("kept")
    for _ in range(3):
        run("backup", "--output", str(tmp_path), "--keep", "2")

    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 3 and "notes.txt" in names
    backups = [n for n in names if n.startswith("swarmsite-")]
    assert backups == sorted(backups)


def test_backup_refuses_a_keep_below_one(tmp_path):
    with pytest.raises(CommandError, match="--keep must be at least 1"):
        run("backup", "--output", str(tmp_path), "--keep", "0")
    assert list(tmp_path.iterdir()) == []


def test_backup_names_sort_by_time():
    from datetime import UTC, datetime

    early = backup_name("sqlite", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    late = backup_name("sqlite", datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC))
    assert early == "swarmsite-20260102T030405.000000Z.sqlite3"
    assert early < late


def test_verify_backup_prints_tables_and_row_counts(task, tmp_path):
    report = backup_create(output=tmp_path)

    out = run("verify_backup", str(report.path))

    assert "readable" in out
    line = [x for x in out.splitlines() if x.strip().startswith("tasks_task ")][0]
    assert line.split()[-1] == "1"


def test_verify_backup_refuses_a_file_that_is_not_a_backup(tmp_path):
    bogus = tmp_path / "bogus.dump"
    bogus.write_bytes(b"hello, not a backup at all")
    with pytest.raises(CommandError, match="neither a SQLite database"):
        run("verify_backup", str(bogus))
    with pytest.raises(CommandError, match="Cannot read"):
        run("verify_backup", str(tmp_path / "missing.dump"))


def test_verify_backup_refuses_a_truncated_backup(task, tmp_path):
    report = backup_create(output=tmp_path)
    data = report.path.read_bytes()
    report.path.write_bytes(data[: len(data) // 2])

    with pytest.raises(CommandError):
        run("verify_backup", str(report.path))


@postgres_only
def test_backup_explains_a_missing_pg_dump(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(CommandError, match="pg_dump was not found on PATH"):
        run("backup", "--output", str(tmp_path / "out"))


@postgres_only
def test_backup_reports_a_failing_pg_dump_and_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "NAME", "no_such_database_h6")
    with pytest.raises(CommandError, match="pg_dump failed"):
        run("backup", "--output", str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def _counts(out: str) -> dict[str, int]:
    rows = [line.split() for line in out.splitlines() if line.startswith("  ")]
    return {name: int(count) for name, count in rows}


def test_verify_backup_counts_match_the_database_table_by_table(task, tmp_path):
    report = backup_create(output=tmp_path)

    counts = _counts(run("verify_backup", str(report.path)))

    with connection.cursor() as cursor:
        for name in ("tasks_task", "audit_event", "audit_auditlog"):
            cursor.execute(f"SELECT COUNT(*) FROM {name}")
            assert counts[name] == cursor.fetchone()[0]
    assert counts["tasks_task"] == 1
    assert counts["audit_event"] >= 1


@postgres_only
def test_verify_backup_restore_test_restores_into_a_scratch_database(task, tmp_path):
    report = backup_create(output=tmp_path)

    quick = _counts(run("verify_backup", str(report.path)))
    full = _counts(run("verify_backup", "--restore-test", str(report.path)))

    assert full == quick
    with _pg_admin() as admin:
        left = admin.execute(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'swarmsite_verify_%'"
        ).fetchone()[0]
    assert left == 0


@pytest.mark.skipif(ON_POSTGRES, reason="SQLite file handling")
def test_backup_refuses_a_missing_sqlite_file_without_creating_it(
    tmp_path, monkeypatch
):
    missing = tmp_path / "missing.sqlite3"
    monkeypatch.setitem(connection.settings_dict, "NAME", str(missing))
    with pytest.raises(CommandError, match="There is no SQLite database"):
        run("backup", "--output", str(tmp_path / "out"))
    assert not missing.exists()
