"""The audit log's hash chain: each record's digest covers the one before."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from audit.models import AuditLog, JournalHead
from swarmsite.validation import json_default

GENESIS_HASH = "0" * 64


def _plain(value: Any) -> Any:
    # The types json_default converts; checked first, as raising is slow.
    if isinstance(value, datetime | Decimal | uuid.UUID):
        return json_default(value)
    return value


AUDIT_HASHED_FIELDS = (
    "uuid",
    "project_id",
    "seq",
    "prev_hash",
    "actor_type",
    "actor_id",
    "actor_label",
    "action",
    "target",
    "content_type_id",
    "object_id",
    "object_repr",
    "request_id",
    "method",
    "path",
    "status_code",
    "success",
    "duration_ms",
    "ip",
    "user_agent",
    "error",
    "details",
    "changes",
    "occurred_at",
)


def audit_log_digest(entry: AuditLog) -> str:
    """SHA-256 over the previous hash and every recorded field of `entry`."""
    body = {name: _plain(getattr(entry, name)) for name in AUDIT_HASHED_FIELDS}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class ChainReport:
    """Outcome of an audit chain check for one project."""

    project_id: int
    checked: int = 0
    broken_at: int | None = None
    reason: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def audit_chain_verify(*, project_id: int) -> ChainReport:
    """Recompute the project's audit chain and report the first broken link."""
    report = ChainReport(project_id=project_id)
    head = JournalHead.objects.filter(project_id=project_id).first()
    expected_seq = (head.audit_anchor_seq if head else 0) + 1
    prev_hash = (head.audit_anchor_hash if head else "") or GENESIS_HASH
    rows = AuditLog.objects.filter(project_id=project_id).order_by("seq")
    for entry in rows.iterator(chunk_size=2000):
        if entry.seq != expected_seq:
            report.broken_at = expected_seq
            report.reason = (
                f"seq {expected_seq} is missing (next stored row is seq {entry.seq})"
            )
            return report
        if entry.prev_hash != prev_hash:
            report.broken_at = entry.seq
            report.reason = f"seq {entry.seq} does not link to the row before it"
            return report
        if audit_log_digest(entry) != entry.hash:
            report.broken_at = entry.seq
            report.reason = f"seq {entry.seq} was altered (its hash does not match)"
            return report
        prev_hash = entry.hash
        expected_seq += 1
        report.checked += 1
    last_seq = head.audit_seq if head else 0
    if expected_seq - 1 != last_seq:
        report.broken_at = expected_seq
        report.reason = (
            f"the chain ends at seq {expected_seq - 1} but the head records {last_seq}"
        )
    elif head and last_seq and prev_hash != head.audit_hash:
        report.broken_at = last_seq
        report.reason = f"seq {last_seq} does not match the head's hash"
    return report
