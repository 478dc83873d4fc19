"""Retention: delete finished work older than a cut-off, batch by batch.

Prune deletes in bounded batches, one transaction each, under
`audit_deletion_granted()` so the append-only event table lets the deletes
through. It never writes to the audit chain except its own journaled record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import IO

from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from audit.journal import journaled
from audit.models import Event
from audit.retention import audit_deletion_granted
from audit.services import audit_log_record
from conversations.models import (
    Conversation,
    ConversationStatus,
    Memory,
    Message,
    MessageRecipient,
    Participant,
)
from ops.selectors import (
    SPECS,
    TaskAgents,
    export_querysets,
    export_write,
)
from swarmsite.models import Project
from tasks.models import (
    TERMINAL_STATUSES,
    AgentHeartbeat,
    AgentRun,
    Task,
    TaskDependency,
)
from tasks.services import messages_rollup, runs_rollup, tasks_rollup

# Columns the roll-ups of what prune deletes are computed from.
USAGE_COLUMNS = ("prompt_tokens", "completion_tokens", "cached_tokens", "cost")

STAGE_BATCH = 5000

PRUNE_MODELS = (
    "tasks.task",
    "tasks.task_agents",
    "tasks.taskdependency",
    "tasks.agentrun",
    "conversations.conversation",
    "conversations.participant",
    "conversations.message",
    "conversations.messagerecipient",
    "audit.event",
    "tasks.agentheartbeat",
    "conversations.memory",
)


@dataclass
class PruneReport:
    """What prune deleted (or would delete) in one project, and why it stopped."""

    project: str
    cutoff: datetime
    reason: str
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(PRUNE_MODELS, 0)
    )
    batches: int = 0
    stopped: str = ""

    def add(self, name: str, count: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + count


def _terminal_and_old(cutoff: datetime) -> Q:
    return Q(status__in=list(TERMINAL_STATUSES)) & (
        Q(completed_at__lt=cutoff) | Q(completed_at__isnull=True, updated_at__lt=cutoff)
    )


def _kept_task_ids(project: Project, cutoff: datetime) -> RawSQL:
    """Finished old tasks that must stay: ancestors of tasks that stay, and
    tasks an unfinished task depends on."""
    table, deps = Task._meta.db_table, TaskDependency._meta.db_table
    terminal = ", ".join(["%s"] * len(TERMINAL_STATUSES))
    statuses = sorted(TERMINAL_STATUSES)
    when = connection.ops.adapt_datetimefield_value(cutoff)
    sql = (
        "WITH RECURSIVE kept(id) AS ("
        f"SELECT d.depends_on_id FROM {deps} d JOIN {table} t ON t.id = d.task_id "
        f"WHERE t.project_id = %s AND t.status NOT IN ({terminal}) "
        "UNION "
        f"SELECT parent_id FROM {table} WHERE project_id = %s "
        "AND parent_id IS NOT NULL AND NOT ("
        f"status IN ({terminal}) AND COALESCE(completed_at, updated_at) < %s) "
        "UNION "
        f"SELECT t.parent_id FROM {table} t JOIN kept k ON t.id = k.id "
        "WHERE t.parent_id IS NOT NULL"
        ") SELECT id FROM kept"
    )
    params = [project.pk, *statuses, project.pk, *statuses, when]
    return RawSQL(sql, params)


@dataclass
class _Selection:
    """The querysets of what prune removes from one project."""

    tasks: QuerySet
    conversations: QuerySet
    loose_events: QuerySet
    heartbeats: QuerySet
    # Expired memories go whatever the cut-off: they are never read again.
    memories: QuerySet

    def task_events(self, project: Project) -> QuerySet:
        return Event.objects.filter(project=project).filter(
            Q(task_id__in=self.tasks.values("id"))
            | Q(conversation_id__in=self.conversations.values("id"))
        )

    def querysets(self, project: Project) -> dict[str, QuerySet]:
        task_ids = self.tasks.values("id")
        conversation_ids = self.conversations.values("id")
        return {
            "tasks.task": self.tasks,
            "tasks.task_agents": TaskAgents.objects.filter(task_id__in=task_ids),
            "tasks.taskdependency": TaskDependency.objects.filter(
                Q(task_id__in=task_ids) | Q(depends_on_id__in=task_ids)
            ),
            "tasks.agentrun": AgentRun.objects.filter(task_id__in=task_ids),
            "conversations.conversation": self.conversations,
            "conversations.participant": Participant.objects.filter(
                conversation_id__in=conversation_ids
            ),
            "conversations.message": Message.objects.filter(
                conversation_id__in=conversation_ids
            ),
            "conversations.messagerecipient": MessageRecipient.objects.filter(
                message__conversation_id__in=conversation_ids
            ),
            "audit.event": Event.objects.filter(
                Q(pk__in=self.task_events(project).values("pk"))
                | Q(pk__in=self.loose_events.values("pk"))
            ),
            "tasks.agentheartbeat": self.heartbeats,
            "conversations.memory": self.memories,
        }


def _selection(project: Project, cutoff: datetime) -> _Selection:
    tasks = (
        Task.objects.filter(project=project)
        .filter(_terminal_and_old(cutoff))
        .exclude(id__in=_kept_task_ids(project, cutoff))
    )
    conversations = Conversation.objects.filter(project=project).filter(
        Q(task_id__in=tasks.values("id"))
        | Q(
            task__isnull=True,
            status__in=[ConversationStatus.CLOSED, ConversationStatus.ARCHIVED],
        )
        & (
            Q(last_message_at__lt=cutoff)
            | Q(last_message_at__isnull=True, updated_at__lt=cutoff)
        )
    )
    # Events that concern nothing still stored: agent events, custom events,
    # and events of tasks or conversations deleted some other way.
    loose_events = Event.objects.filter(project=project, occurred_at__lt=cutoff).filter(
        (Q(task_id__isnull=True) | ~Exists(Task.objects.filter(pk=OuterRef("task_id"))))
        & (
            Q(conversation_id__isnull=True)
            | ~Exists(Conversation.objects.filter(pk=OuterRef("conversation_id")))
        )
    )
    heartbeats = AgentHeartbeat.objects.filter(project=project, created_at__lt=cutoff)
    memories = Memory.objects.filter(project=project, expires_at__lte=timezone.now())
    return _Selection(tasks, conversations, loose_events, heartbeats, memories)


def prune_count(*, project: Project, cutoff: datetime) -> dict[str, int]:
    """How many rows of each model `prune_run` would delete now."""
    selection = _selection(project, cutoff)
    return {name: rows.count() for name, rows in selection.querysets(project).items()}


def prune_archive(
    *, project: Project, cutoff: datetime, stream: IO[str], header: bool = True
) -> dict[str, int]:
    """Write what `prune_run` would delete as an export file.

    The project, its agents, workflows and journal head go along, so the
    archive imports back on its own.
    """
    selection = _selection(project, cutoff).querysets(project)
    reference = export_querysets(project=project)
    querysets = {
        spec.name: selection.get(spec.name, reference[spec.name])
        for spec in SPECS
        if spec.name in selection
        or spec.name
        in ("swarmsite.project", "tasks.agent", "tasks.workflow", "audit.journalhead")
    }
    return export_write(stream, querysets, header=header)


def _delete(rows: QuerySet) -> dict[str, int]:
    _, per_model = rows.delete()
    return {label.lower(): n for label, n in per_model.items()}


def _delete_conversations(ids: list, report: PruneReport) -> None:
    while True:
        message_ids = list(
            Message.objects.filter(conversation_id__in=ids).values_list(
                "id", flat=True
            )[:STAGE_BATCH]
        )
        if not message_ids:
            break
        # Their senders' roll-ups describe stored rows: take these out.
        messages_rollup(
            messages=Message.objects.filter(id__in=message_ids).only(
                "sender_id", "metadata", "latency_ms", *USAGE_COLUMNS
            ),
            sign=-1,
        )
        Message.objects.filter(reply_to_id__in=message_ids).exclude(
            conversation_id__in=ids
        ).update(reply_to=None)
        for name, n in _delete(
            Message.objects.filter(id__in=message_ids).only("id")
        ).items():
            report.add(name, n)
    for name, n in _delete(Conversation.objects.filter(id__in=ids)).items():
        report.add(name, n)


def prune_run(
    *,
    project: Project,
    cutoff: datetime,
    reason: str,
    batch_size: int = 500,
    max_batches: int | None = None,
) -> PruneReport:
    """Delete finished work of `project` older than `cutoff`, batch by batch.

    Each batch is its own transaction, so a stop keeps what was done. The
    report says how many rows went and why the run stopped.
    """
    report = PruneReport(project=project.slug, cutoff=cutoff, reason=reason)
    selection = _selection(project, cutoff)
    grant = f"prune {project.slug} before {cutoff.isoformat()}"
    # Leaves first: a parent goes once its subtasks are gone, so a delete
    # never cascades into an unbounded subtree.
    leaves = selection.tasks.filter(
        ~Exists(Task.objects.filter(parent_id=OuterRef("pk")))
    )

    def budget_left() -> bool:
        return max_batches is None or report.batches < max_batches

    while budget_left():
        with audit_deletion_granted(reason=grant):
            task_ids = list(
                leaves.order_by("completed_at", "id").values_list("id", flat=True)[
                    :batch_size
                ]
            )
            if not task_ids:
                break
            conversation_ids = list(
                Conversation.objects.filter(task_id__in=task_ids).values_list(
                    "id", flat=True
                )
            )
            report.add(
                "audit.event",
                Event.objects.filter(project=project)
                .filter(
                    Q(task_id__in=task_ids) | Q(conversation_id__in=conversation_ids)
                )
                .delete()[0],
            )
            _delete_conversations(conversation_ids, report)
            # Workflow and agent roll-ups lose these tasks and their runs.
            tasks_rollup(
                Task.objects.filter(id__in=task_ids).only(
                    "workflow_id", "assigned_agent_id", "status", *USAGE_COLUMNS
                ),
                sign=-1,
            )
            runs_rollup(
                AgentRun.objects.filter(task_id__in=task_ids).only(
                    "agent_id", *USAGE_COLUMNS
                ),
                sign=-1,
            )
            for name, n in _delete(Task.objects.filter(id__in=task_ids)).items():
                report.add(name, n)
        report.batches += 1
    while budget_left():
        with audit_deletion_granted(reason=grant):
            conversation_ids = list(
                selection.conversations.order_by("id").values_list("id", flat=True)[
                    :batch_size
                ]
            )
            if not conversation_ids:
                break
            report.add(
                "audit.event",
                Event.objects.filter(
                    project=project, conversation_id__in=conversation_ids
                ).delete()[0],
            )
            _delete_conversations(conversation_ids, report)
        report.batches += 1
    for name, rows, order in (
        ("audit.event", selection.loose_events, "position"),
        ("tasks.agentheartbeat", selection.heartbeats, "id"),
        ("conversations.memory", selection.memories, "id"),
    ):
        # Walk forward from the last batch instead of rescanning deleted rows.
        last = 0
        while budget_left():
            with audit_deletion_granted(reason=grant):
                found = list(
                    rows.filter(**{f"{order}__gt": last})
                    .order_by(order)
                    .values_list("pk", order)[:batch_size]
                )
                if not found:
                    break
                last = found[-1][1]
                ids = [pk for pk, _ in found]
                report.add(name, rows.model.objects.filter(pk__in=ids).delete()[0])
            report.batches += 1
    report.counts = {name: report.counts.get(name, 0) for name in PRUNE_MODELS}
    if budget_left() or not any(prune_count(project=project, cutoff=cutoff).values()):
        report.stopped = "nothing older than the cut-off is left"
    else:
        report.stopped = f"reached --max-batches {max_batches}; run again to go on"
    if any(report.counts.values()):
        with journaled():
            audit_log_record(
                project_id=project.pk,
                action="retention.pruned",
                target=project.slug,
                details={
                    "cutoff": cutoff.isoformat(),
                    "reason": reason,
                    "deleted": {k: v for k, v in report.counts.items() if v},
                },
            )
    return report
