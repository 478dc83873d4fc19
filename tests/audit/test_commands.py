from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from audit import triggers
from audit.chain import audit_log_digest
from audit.models import AuditLog
from audit.services import audit_log_record

pytestmark = pytest.mark.django_db


def verify(*args: str) -> str:
    out = StringIO()
    call_command("verify_audit_chain", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def verify_failing(*args: str) -> tuple[str, str]:
    """Run a check expected to fail; return its stdout and error message."""
    out = StringIO()
    with pytest.raises(CommandError) as excinfo:
        call_command("verify_audit_chain", *args, stdout=out, stderr=StringIO())
    return out.getvalue(), str(excinfo.value)


@pytest.fixture
def records(project) -> list[AuditLog]:
    """Four chained audit records in the default project, by seq."""
    for n in range(4):
        audit_log_record(
            project_id=project.pk,
            action="tool.invoke",
            target=f"tool-{n}",
            details={"n": n},
        )
    return list(AuditLog.objects.filter(project=project).order_by("seq"))


@pytest.fixture
def tampering():
    """Opens a window in which the append-only triggers are dropped.

    The schema editor is used without its context manager: on SQLite entering
    it fails inside the test's transaction (foreign keys cannot be switched
    off there), and these statements need none of what it sets up.
    """

    @contextmanager
    def window() -> Iterator[None]:
        editor = connection.schema_editor()
        triggers.uninstall(None, editor)
        try:
            yield
        finally:
            triggers.install(None, editor)

    return window


def test_verify_reports_an_intact_chain_with_its_length(records):
    out = verify()

    assert "default: intact (4 records)" in out


def test_verify_reports_every_project_by_default(records, other_project):
    out = verify()

    assert "default: intact (4 records)" in out
    assert "other: intact (0 records)" in out


def test_verify_checks_one_project_when_asked(records, other_project):
    out = verify("--project", "other")

    assert out.strip() == "other: intact (0 records)"


def test_verify_rejects_an_unknown_project():
    with pytest.raises(CommandError, match="No project 'nope'"):
        verify("--project", "nope")


def test_audit_rows_cannot_be_changed_outside_the_tampering_window(records, tampering):
    with tampering():
        AuditLog.objects.filter(pk=records[0].pk).update(target="edited")

    with pytest.raises(DatabaseError), transaction.atomic():
        AuditLog.objects.filter(pk=records[0].pk).update(target="again")


def test_verify_detects_an_edited_row(records, tampering):
    with tampering():
        AuditLog.objects.filter(pk=records[1].pk).update(target="innocent")

    out, error = verify_failing()

    assert "default: BROKEN at seq 2" in out
    assert "altered" in out
    assert "default" in error


def test_verify_detects_an_edited_row_whose_hash_was_recomputed(records, tampering):
    entry = records[1]
    entry.details = {"n": "forged"}
    with tampering():
        AuditLog.objects.filter(pk=entry.pk).update(
            details=entry.details, hash=audit_log_digest(entry)
        )

    out, _ = verify_failing()

    assert "BROKEN at seq 3" in out
    assert "does not link" in out


def test_verify_detects_a_deleted_row(records, tampering):
    with tampering():
        AuditLog.objects.filter(pk=records[1].pk).delete()

    out, _ = verify_failing()

    assert "BROKEN at seq 2" in out
    assert "missing" in out


def test_verify_detects_a_deleted_last_row(records, tampering):
    with tampering():
        AuditLog.objects.filter(pk=records[-1].pk).delete()

    out, _ = verify_failing()

    assert "BROKEN at seq 4" in out
    assert "head records 4" in out


def test_verify_detects_two_swapped_rows(records, tampering):
    second, third = records[1], records[2]
    with tampering():
        # A free seq first: (project, seq) is unique.
        AuditLog.objects.filter(pk=second.pk).update(seq=10**9)
        AuditLog.objects.filter(pk=third.pk).update(seq=2)
        AuditLog.objects.filter(pk=second.pk).update(seq=3)

    out, _ = verify_failing()

    assert "BROKEN at seq 2" in out
    assert "does not link" in out


def test_verify_names_only_the_broken_project(records, other_project, tampering):
    audit_log_record(project_id=other_project.pk, action="file.write", target="a")
    with tampering():
        AuditLog.objects.filter(project=other_project).update(target="b")

    out, error = verify_failing()

    assert "default: intact (4 records)" in out
    assert "other: BROKEN at seq 1" in out
    assert error == "Audit chain broken in: other."
