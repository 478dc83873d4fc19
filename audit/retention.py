"""Audit log retention that keeps the chain verifiable."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from audit.chain import GENESIS_HASH, audit_log_digest
from audit.journal import journaled
from audit.models import AuditLog, DeletionGrant, JournalHead
from audit.services import audit_log_record
from swarmsite.actors import SYSTEM, Actor
from swarmsite.errors import ValidationError


@contextmanager
def audit_deletion_granted(*, reason: str) -> Iterator[None]:
    """Let deletes through the append-only triggers inside this transaction."""
    with transaction.atomic():
        grant = DeletionGrant.objects.create(reason=reason)
        yield
        DeletionGrant.objects.filter(pk=grant.pk).delete()


AUDIT_PRUNED_ACTION = "audit.pruned"


@dataclass
class PruneReport:
    """What `audit_log_prune` deleted (or would delete) and why it stopped."""

    project_id: int
    cutoff: datetime
    dry_run: bool
    deleted: int = 0
    batches: int = 0
    first_seq: int | None = None
    anchor_seq: int = 0
    stopped: str = ""
    chain_broken: bool = False


def _prunable_prefix(
    rows: list[AuditLog],
    *,
    cutoff: datetime,
    expected_seq: int,
    prev_hash: str,
    report: PruneReport,
) -> list[AuditLog]:
    """The leading rows recorded before `cutoff` whose links all check out."""
    taken: list[AuditLog] = []
    for row in rows:
        if row.recorded_at >= cutoff:
            report.stopped = (
                f"seq {row.seq} was recorded at {row.recorded_at.isoformat()}, "
                "after the cutoff"
            )
            break
        problem = ""
        if row.seq != expected_seq:
            problem = f"seq {expected_seq} is missing"
        elif row.prev_hash != prev_hash:
            problem = f"seq {row.seq} does not link to the row before it"
        elif audit_log_digest(row) != row.hash:
            problem = f"seq {row.seq} was altered"
        if problem:
            # Deleting past a broken link would erase the evidence.
            report.chain_broken = True
            report.stopped = f"the chain is broken ({problem}); nothing past it pruned"
            break
        taken.append(row)
        expected_seq += 1
        prev_hash = row.hash
    return taken


def audit_log_prune(
    *,
    project_id: int,
    cutoff: datetime,
    dry_run: bool = False,
    batch_size: int = 1000,
    actor: Actor = SYSTEM,
) -> PruneReport:
    """Delete the oldest audit records recorded before `cutoff`, in batches.

    Only a prefix of the chain goes: its last deleted record becomes the
    head's anchor, so `audit_chain_verify` still checks every record left.
    Each batch is one transaction that also records an `audit.pruned` entry.
    """
    if cutoff.tzinfo is None:
        raise ValidationError({"cutoff": "Must be timezone-aware."})
    if batch_size < 1:
        raise ValidationError({"batch_size": "Must be at least 1."})
    report = PruneReport(project_id=project_id, cutoff=cutoff, dry_run=dry_run)
    head = JournalHead.objects.filter(project_id=project_id).first()
    if head is None:
        report.stopped = "the project has no audit records"
        return report
    anchor_seq = head.audit_anchor_seq
    anchor_hash = head.audit_anchor_hash or GENESIS_HASH
    report.anchor_seq = anchor_seq
    # Records appended meanwhile (this prune's own among them) are left alone.
    last_seq = head.audit_seq
    while not report.stopped:
        # A dry run only reads: no transaction, so no SQLite write lock.
        with nullcontext() if dry_run else journaled():
            if not dry_run:
                head = JournalHead.objects.select_for_update().get(
                    project_id=project_id
                )
                anchor_seq = head.audit_anchor_seq
                anchor_hash = head.audit_anchor_hash or GENESIS_HASH
            rows = list(
                AuditLog.objects.filter(
                    project_id=project_id, seq__gt=anchor_seq, seq__lte=last_seq
                ).order_by("seq")[:batch_size]
            )
            if not rows:
                report.stopped = "every older record is pruned"
                break
            taken = _prunable_prefix(
                rows,
                cutoff=cutoff,
                expected_seq=anchor_seq + 1,
                prev_hash=anchor_hash,
                report=report,
            )
            if not taken:
                break
            last = taken[-1]
            if not dry_run:
                with audit_deletion_granted(reason="prune_audit"):
                    AuditLog.objects.filter(
                        project_id=project_id,
                        seq__gt=anchor_seq,
                        seq__lte=last.seq,
                    ).delete()
                head.audit_anchor_seq = last.seq
                head.audit_anchor_hash = last.hash
                head.save(update_fields=["audit_anchor_seq", "audit_anchor_hash"])
                audit_log_record(
                    project_id=project_id,
                    action=AUDIT_PRUNED_ACTION,
                    actor=actor,
                    target=f"seq {taken[0].seq}..{last.seq}",
                    details={
                        "from_seq": taken[0].seq,
                        "to_seq": last.seq,
                        "deleted": len(taken),
                        "cutoff": cutoff.isoformat(),
                        "anchor_hash": last.hash,
                    },
                )
        if report.first_seq is None:
            report.first_seq = taken[0].seq
        report.deleted += len(taken)
        report.batches += 1
        report.anchor_seq = anchor_seq = last.seq
        anchor_hash = last.hash
    return report
