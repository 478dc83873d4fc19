import gzip
import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import DatabaseError, transaction

from audit.chain import audit_chain_verify
from audit.models import AuditLog, Event, JournalHead
from audit.retention import audit_deletion_granted
from ops.services import data_import
from swarmsite.models import Project
from tasks.services import task_create
from tests.e2e import stack
from tests.ops.conftest import (
    empty_database,
    export_text,
    import_file,
    row_counts,
)

pytestmark = pytest.mark.django_db


def test_export_imported_into_an_empty_database_exports_byte_identical(swarm, tmp_path):
    before = export_text(tmp_path)
    counts = row_counts()
    empty_database()
    assert sum(row_counts().values()) == 0

    import_file(tmp_path / "export.jsonl")

    assert row_counts() == counts
    assert export_text(tmp_path, name="again.jsonl") == before


def test_import_updates_the_default_project_a_fresh_database_already_has(
    swarm, tmp_path
):
    before = export_text(tmp_path)
    project_id = swarm["root"].project_id
    empty_database()
    Project.objects.create(id=project_id, slug="default", name="Made by migrate")

    import_file(tmp_path / "export.jsonl")

    assert Project.objects.get(slug="default").name == "Default"
    assert export_text(tmp_path, name="again.jsonl") == before


def test_importing_twice_changes_nothing(swarm, tmp_path):
    export_text(tmp_path)
    empty_database()
    first = data_import(lines=(tmp_path / "export.jsonl").open("rb"))
    after_first = export_text(tmp_path, name="first.jsonl")

    second = data_import(lines=(tmp_path / "export.jsonl").open("rb"))

    assert sum(first.written.values()) > 0
    assert set(second.written.values()) == {0}
    assert export_text(tmp_path, name="second.jsonl") == after_first


def test_importing_into_the_source_database_changes_nothing(swarm, tmp_path):
    before = export_text(tmp_path)

    report = data_import(lines=(tmp_path / "export.jsonl").open("rb"))

    assert report.written["audit.event"] == 0
    assert report.written["audit.auditlog"] == 0
    assert export_text(tmp_path, name="again.jsonl") == before


def test_import_keeps_positions_and_hashes_and_later_writes_continue(swarm, tmp_path):
    project = swarm["root"].project
    positions = list(
        Event.objects.filter(project=project)
        .order_by("position")
        .values_list("uuid", "position")
    )
    hashes = list(
        AuditLog.objects.filter(project=project)
        .order_by("seq")
        .values_list("uuid", "seq", "hash")
    )
    export_text(tmp_path)
    empty_database()

    import_file(tmp_path / "export.jsonl")
    project = Project.objects.get(slug="default")
    task = task_create(project=project, title="After the import")[0]

    assert (
        list(
            Event.objects.filter(project=project, position__lte=positions[-1][1])
            .order_by("position")
            .values_list("uuid", "position")
        )
        == positions
    )
    assert (
        list(
            AuditLog.objects.filter(project=project, seq__lte=hashes[-1][1])
            .order_by("seq")
            .values_list("uuid", "seq", "hash")
        )
        == hashes
    )
    created = Event.objects.get(task_id=task.pk, kind="task.created")
    assert created.position == positions[-1][1] + 1
    assert JournalHead.objects.get(project=project).last_position == created.position
    assert audit_chain_verify(project_id=project.pk).intact


def test_imported_events_stay_append_only(swarm, tmp_path):
    export_text(tmp_path)
    empty_database()
    import_file(tmp_path / "export.jsonl")

    with pytest.raises(DatabaseError), transaction.atomic():
        Event.objects.all().update(kind="forged")
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditLog.objects.all().delete()


def test_gzip_round_trip(swarm, tmp_path):
    plain = export_text(tmp_path)
    call_command("export", "--output", str(tmp_path / "export.jsonl.gz"))
    assert (
        gzip.decompress((tmp_path / "export.jsonl.gz").read_bytes()).decode() == plain
    )
    empty_database()

    import_file(tmp_path / "export.jsonl.gz")

    assert export_text(tmp_path, name="again.jsonl") == plain


def _corrupt(tmp_path, text: str, line: int, replacement: str):
    lines = text.splitlines(keepends=True)
    lines[line - 1] = replacement + "\n"
    path = tmp_path / "corrupt.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _line_of(text: str, model: str) -> tuple[int, dict]:
    for number, line in enumerate(text.splitlines(), 1):
        record = json.loads(line)
        if record.get("model") == model:
            return number, record
    raise AssertionError(model)


def _edit(record: dict, **fields) -> str:
    edited = {"model": record["model"], "fields": {**record["fields"], **fields}}
    return json.dumps(edited)


@pytest.mark.parametrize(
    ("model", "change", "message"),
    [
        ("tasks.task", lambda r: '{"model": "tasks.task", "fields": {', "bad JSON"),
        (
            "tasks.task",
            lambda r: json.dumps({**r, "model": "tasks.nope"}),
            "unknown model",
        ),
        (
            "tasks.task",
            lambda r: json.dumps(
                {
                    "model": r["model"],
                    "fields": {k: v for k, v in r["fields"].items() if k != "title"},
                }
            ),
            "missing field title",
        ),
        (
            "tasks.task",
            lambda r: _edit(r, status="exploded"),
            "status 'exploded' is not one of",
        ),
        (
            "tasks.task",
            lambda r: _edit(r, cost="1.1234567"),
            "more than 6 decimal places",
        ),
        (
            "tasks.task",
            lambda r: _edit(r, created_at="yesterday"),
            "not an ISO 8601 time",
        ),
        ("tasks.task", lambda r: _edit(r, unexpected=1), "unknown field unexpected"),
        (
            "tasks.task",
            lambda r: _edit(r, assigned_agent="00000000-0000-0000-0000-000000000001"),
            "assigned_agent '00000000-0000-0000-0000-000000000001' is neither",
        ),
        ("tasks.agent", lambda r: _edit(r, project="nowhere"), "'nowhere' is neither"),
        (
            "tasks.task",
            lambda r: _edit(r, progress=101),
            "tasks.task: the database refused it",
        ),
        ("audit.auditlog", lambda r: _edit(r, target="forged"), "hash does not match"),
    ],
)
def test_a_bad_record_is_reported_by_line_and_nothing_is_imported(
    swarm, tmp_path, model, change, message
):
    text = export_text(tmp_path)
    empty_database()
    number, record = _line_of(text, model)
    path = _corrupt(tmp_path, text, number, change(record))

    with pytest.raises(CommandError) as error:
        call_command("import", str(path))

    assert f"line {number}:" in str(error.value)
    assert message in str(error.value)
    assert "Nothing was imported" in str(error.value)
    assert sum(row_counts().values()) == 0


def test_an_event_that_differs_from_the_stored_one_is_refused(swarm, tmp_path):
    text = export_text(tmp_path)
    number, record = _line_of(text, "audit.event")
    path = _corrupt(tmp_path, text, number, _edit(record, kind="rewritten"))
    counts = row_counts()

    with pytest.raises(CommandError, match=rf"line {number}: .*append-only"):
        call_command("import", str(path))

    assert row_counts() == counts


def test_a_project_id_taken_by_another_project_is_refused(swarm, tmp_path):
    text = export_text(tmp_path, "--project", "other")
    empty_database()
    Project.objects.create(id=swarm["helper"].project_id, slug="squatter", name="S")

    with pytest.raises(CommandError, match=r"line 2: project id \d+ belongs to"):
        import_file(tmp_path / "export.jsonl")
    assert text


def test_a_file_without_header_is_refused(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"model": "tasks.task", "fields": {}}\n')

    with pytest.raises(CommandError, match="line 1: not a swarmsite-export file"):
        call_command("import", str(path))


def test_a_truncated_gzip_file_is_refused_and_nothing_is_imported(swarm, tmp_path):
    call_command("export", "--output", str(tmp_path / "export.jsonl.gz"))
    data = (tmp_path / "export.jsonl.gz").read_bytes()
    (tmp_path / "cut.gz").write_bytes(data[: len(data) // 2])
    empty_database()

    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command("import", str(tmp_path / "cut.gz"))
    assert sum(row_counts().values()) == 0


def test_events_at_positions_taken_by_other_events_are_refused(swarm, tmp_path):
    text = export_text(tmp_path, "--project", "other")
    other = Project.objects.get(slug="other")
    with audit_deletion_granted(reason="tests: replace the log"):
        Event.objects.filter(project=other).delete()
    JournalHead.objects.filter(project=other).update(last_position=0)
    task_create(project=other, title="A different history")
    number = next(
        n for n, line in enumerate(text.splitlines(), 1) if '"audit.event"' in line
    )

    with pytest.raises(
        CommandError,
        match=rf"line {number}: audit.event: another row of the database has the "
        "same project, position",
    ):
        import_file(tmp_path / "export.jsonl")


@pytest.fixture
def fresh_database(tmp_path):
    """The URL of a database that only `migrate` has touched."""
    with stack.fresh_database(tmp_path) as url:
        yield url


def _manage(url: str, *args: str) -> str:
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_DEBUG": "true"}
    env.pop("DATABASE_TEST_NAME", None)
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_export_into_a_freshly_migrated_database_exports_byte_identical(
    swarm, tmp_path, fresh_database
):
    source = export_text(tmp_path)
    again = tmp_path / "again.jsonl.gz"

    _manage(fresh_database, "import", str(tmp_path / "export.jsonl"))
    _manage(fresh_database, "export", "--output", str(again))
    chain = _manage(fresh_database, "verify_audit_chain")
    second = _manage(fresh_database, "import", str(again))

    assert gzip.decompress(again.read_bytes()).decode() == source
    assert "default: intact" in chain
    assert second.strip().endswith("0 rows written.")
