"""prune_audit: retention of the audit log that keeps its chain verifiable."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, transaction
from django.utils import timezone

from audit.chain import audit_chain_verify
from audit.models import AuditLog, DeletionGrant, JournalHead
from audit.retention import (
    AUDIT_PRUNED_ACTION,
    audit_deletion_granted,
    audit_log_prune,
)
from audit.services import audit_log_record
from swarmsite.errors import ValidationError

pytestmark = pytest.mark.django_db


def record(project, n: int) -> AuditLog:
    return audit_log_record(
        project_id=project.pk, action="tool.invoke", target=f"tool-{n}"
    )


def seqs(project) -> list[int]:
    return list(
        AuditLog.objects.filter(project=project)
        .order_by("seq")
        .values_list("seq", flat=True)
    )


def actions(project) -> list[str]:
    return list(
        AuditLog.objects.filter(project=project)
        .order_by("seq")
        .values_list("action", flat=True)
    )


def prune(*args: str) -> str:
    out = StringIO()
    call_command("prune_audit", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def verify() -> str:
    out = StringIO()
    call_command("verify_audit_chain", stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def old_and_new(project):
    """Five records, a cutoff, then three newer records."""
    for n in range(5):
        record(project, n)
    cutoff = timezone.now()
    for n in range(5, 8):
        record(project, n)
    return cutoff


def test_prune_deletes_only_records_older_than_the_cutoff(project, old_and_new):
    report = audit_log_prune(project_id=project.pk, cutoff=old_and_new)

    assert report.deleted == 5
    assert (report.first_seq, report.anchor_seq) == (1, 5)
    assert "seq 6 was recorded at" in report.stopped
    assert seqs(project) == [6, 7, 8, 9]
    assert actions(project)[-1] == AUDIT_PRUNED_ACTION


def test_pruned_chain_still_verifies_and_keeps_growing(project, old_and_new):
    audit_log_prune(project_id=project.pk, cutoff=old_and_new)
    record(project, 99)

    report = audit_chain_verify(project_id=project.pk)
    assert report.intact, report.reason
    assert report.checked == 5
    assert "default: intact (5 records)" in verify()


def test_prune_moves_the_chain_anchor_to_the_last_deleted_record(project, old_and_new):
    fifth = AuditLog.objects.get(project=project, seq=5)
    audit_log_prune(project_id=project.pk, cutoff=old_and_new)

    head = JournalHead.objects.get(project=project)
    assert (head.audit_anchor_seq, head.audit_anchor_hash) == (5, fifth.hash)
    assert AuditLog.objects.get(project=project, seq=6).prev_hash == fifth.hash


def test_prune_records_what_it_deleted_in_the_audit_log(project, old_and_new):
    audit_log_prune(project_id=project.pk, cutoff=old_and_new)

    entry = AuditLog.objects.get(project=project, action=AUDIT_PRUNED_ACTION)
    assert entry.details["from_seq"] == 1
    assert entry.details["to_seq"] == 5
    assert entry.details["deleted"] == 5


def test_prune_works_in_batches_of_the_given_size(project, old_and_new):
    report = audit_log_prune(project_id=project.pk, cutoff=old_and_new, batch_size=2)

    assert (report.deleted, report.batches) == (5, 3)
    assert seqs(project)[:3] == [6, 7, 8]
    # One audit.pruned record per batch, each a transaction of its own.
    assert actions(project).count(AUDIT_PRUNED_ACTION) == 3
    assert audit_chain_verify(project_id=project.pk).intact


def test_prune_can_empty_the_chain_and_it_still_verifies(project):
    for n in range(3):
        record(project, n)
    report = audit_log_prune(
        project_id=project.pk, cutoff=timezone.now() + timedelta(seconds=1)
    )

    assert report.deleted == 3
    assert report.stopped == "every older record is pruned"
    assert seqs(project) == [4]  # the audit.pruned record itself
    assert audit_chain_verify(project_id=project.pk).intact


def test_a_second_prune_starts_after_the_anchor(project, old_and_new):
    audit_log_prune(project_id=project.pk, cutoff=old_and_new)
    report = audit_log_prune(project_id=project.pk, cutoff=old_and_new)

    assert report.deleted == 0
    assert report.batches == 0
    assert "seq 6 was recorded at" in report.stopped


def test_dry_run_deletes_nothing_and_reports_the_count(project, old_and_new):
    report = audit_log_prune(
        project_id=project.pk, cutoff=old_and_new, dry_run=True, batch_size=2
    )

    assert (report.deleted, report.anchor_seq) == (5, 5)
    assert seqs(project) == list(range(1, 9))
    assert JournalHead.objects.get(project=project).audit_anchor_seq == 0


def test_prune_stops_before_a_broken_link_and_says_so(project, old_and_new):
    with transaction.atomic(), audit_deletion_granted(reason="tamper"):
        AuditLog.objects.filter(project=project, seq=3).delete()

    report = audit_log_prune(project_id=project.pk, cutoff=old_and_new)

    assert report.chain_broken
    assert report.deleted == 2
    assert "seq 3 is missing" in report.stopped
    assert seqs(project)[:2] == [4, 5]


def test_prune_leaves_no_deletion_grant_behind(project, old_and_new):
    audit_log_prune(project_id=project.pk, cutoff=old_and_new)

    assert not DeletionGrant.objects.exists()
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditLog.objects.filter(project=project).delete()


def test_prune_only_touches_the_given_project(project, other_project):
    record(project, 1)
    record(other_project, 1)
    cutoff = timezone.now() + timedelta(seconds=1)

    audit_log_prune(project_id=other_project.pk, cutoff=cutoff)

    assert seqs(project) == [1]
    assert actions(other_project) == [AUDIT_PRUNED_ACTION]


def test_prune_refuses_a_naive_cutoff_and_a_bad_batch_size(project):
    with pytest.raises(ValidationError) as naive:
        audit_log_prune(
            project_id=project.pk, cutoff=timezone.now().replace(tzinfo=None)
        )
    assert "cutoff" in naive.value.fields
    with pytest.raises(ValidationError) as batch:
        audit_log_prune(project_id=project.pk, cutoff=timezone.now(), batch_size=0)
    assert "batch_size" in batch.value.fields


# The command ----------------------------------------------------------------


def test_command_prunes_records_older_than_the_age(project, monkeypatch):
    long_ago = timezone.now() - timedelta(days=100)
    with monkeypatch.context() as patch:
        patch.setattr(timezone, "now", lambda: long_ago)
        for n in range(3):
            record(project, n)
    record(project, 3)

    out = prune("--older-than", "90d", "--project", project.slug)

    assert "default: deleted 3 audit records (seq 1..3)" in out
    assert "stopped: seq 4 was recorded at" in out
    assert seqs(project) == [4, 5]
    assert "intact" in verify()


def test_command_dry_run_reports_and_keeps_everything(project):
    for n in range(2):
        record(project, n)

    out = prune("--older-than", "0d", "--dry-run")

    assert "default: would delete 2 audit records" in out
    assert seqs(project) == [1, 2]


def test_command_falls_back_to_each_projects_retention(project, other_project):
    record(project, 1)
    record(other_project, 1)
    project.audit_retention_days = 0
    project.save(update_fields=["audit_retention_days"])

    out = prune()

    assert "default: deleted 1 audit records" in out
    assert "other: kept (no audit_retention_days)" in out
    assert seqs(other_project) == [1]


@pytest.mark.parametrize("age", ["90", "ninety days", "-1d", "3y"])
def test_command_refuses_a_malformed_age(project, age):
    with pytest.raises(CommandError, match="--older-than"):
        prune("--older-than", age)


def test_command_refuses_an_unknown_project(project):
    with pytest.raises(CommandError, match="--project: no project 'nope'"):
        prune("--older-than", "90d", "--project", "nope")


def test_command_fails_when_a_chain_is_broken(project):
    for n in range(3):
        record(project, n)
    with transaction.atomic(), audit_deletion_granted(reason="tamper"):
        AuditLog.objects.filter(project=project, seq=2).delete()

    with pytest.raises(CommandError, match="Audit chain broken in: default"):
        prune("--older-than", "0d")
    assert seqs(project)[0] == 3
