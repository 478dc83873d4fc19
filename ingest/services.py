"""Batch ingest: items of every kind applied in order in one transaction.

Consecutive items of one type form a segment written by the bulk service of
that type, inside a savepoint. When a segment fails, its savepoint is rolled
back and its two halves are applied in turn, each in its own savepoint, down
to single items, so a bad item is reported and the good ones are kept.
Agents and the other updates are low-volume: they go through their
single-item services, each in its own savepoint of the batch's transaction.

The whole batch is one journaled transaction: its events and audit rows are
flushed together under the project's journal lock, and its notification
rings once. On PostgreSQL two batches carrying the same new ids race: the
loser's INSERT fails once the winner commits, and the loser's batch is
rolled back and applied again, now finding those rows stored (duplicates).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    OperationalError,
    transaction,
)

from audit.journal import journaled
from audit.services import (
    SYSTEM,
    Actor,
    audit_custom_events_create,
    audit_logs_create,
)
from conversations.models import Conversation
from conversations.services import (
    conversation_create_many,
    memory_put_many,
    message_sender_set_many,
    messages_append,
    participant_join,
)
from swarmsite.errors import ServiceError, ValidationError
from swarmsite.metrics import INGEST_ITEMS
from swarmsite.models import Project
from tasks.models import Agent, AgentRun, Task
from tasks.services import (
    agent_heartbeat,
    agent_register,
    agent_update,
    run_create_many,
    run_metadata_fill_many,
    run_update,
    task_create_many,
    task_dependencies_add,
    task_progress_set,
    task_transition,
    task_transition_many,
    task_update,
    workflow_create,
)

# Items of one bulk statement: bounds the SQL sent and the work redone one by
# one when a segment holds a bad item.
MAX_SEGMENT = 1000
# A failed segment this small is applied again item by item, not in halves.
ONE_BY_ONE = 8
# Batches retried after losing a race on PostgreSQL; more means a bug.
MAX_ATTEMPTS = 5
# SQLSTATEs of transactions PostgreSQL aborted to break a cycle or a race.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


@dataclass
class Item:
    """One validated item: its place in the batch, type and service arguments."""

    index: int
    type: str
    data: dict[str, Any]
    supplied_id: str | None = None


@dataclass
class ItemResult:
    """What became of one item: `created`, `duplicate` or `error`."""

    index: int
    id: str | None
    status: str
    error: ServiceError | None = None


T = TypeVar("T")
Outcome = tuple[Any, bool]
Handler = Callable[[Project, list[Item], Actor], list[Outcome]]


# Writers, one per item type: a list of items in, (id, created) per item out.
# Each raises on the first bad item; the caller then isolates it.


def _tasks(project: Project, items: list[Item], actor: Actor) -> list[Outcome]:
    created = task_create_many(
        project=project, tasks=[item.data for item in items], actor=actor
    )
    return [(task.pk, new) for task, new in created]


def _events(project: Project, items: list[Item], actor: Actor) -> list[Outcome]:
    created = audit_custom_events_create(
        project_id=project.pk, events=[item.data for item in items], actor=actor
    )
    return [(event.uuid, new) for event, new in created]


def _audits(project: Project, items: list[Item], actor: Actor) -> list[Outcome]:
    created = audit_logs_create(
        project_id=project.pk, entries=[item.data for item in items], actor=actor
    )
    return [(entry.uuid, new) for entry, new in created]


def _messages(project: Project, items: list[Item], actor: Actor) -> list[Outcome]:
    appended = messages_append(
        project=project, messages=[item.data for item in items], actor=actor
    )
    return [(message.pk, new) for message, new in appended]


def _senders(project: Project, items: list[Item], actor: Actor) -> list[Outcome]:
    filled = message_sender_set_many(
        project=project, senders=[item.data for item in items], actor=actor
    )
    return [(message.pk, new) for message, new in filled]


def _memories(project: Project, items: list[Item], actor: Actor) -> list[Outcome]:
    written = memory_put_many(
        project=project, memories=[item.data for item in items], actor=actor
    )
    # An applied update counts as written; an identical or replayed put not.
    return [(memory.uuid, not memory.replayed) for memory, _ in written]


def _participant(project: Project, items: list[Item], actor: Actor) -> list[Outcome]:
    data = dict(items[0].data)
    conversation = _target(project, Conversation, data, "conversation")
    link, created = participant_join(conversation=conversation, actor=actor, **data)
    return [(link.agent_id, created)]


def _agent(project: Project, items: list[Item], actor: Actor) -> list[Outcome]:
    agent, created = agent_register(project=project, actor=actor, **items[0].data)
    return [(agent.pk, created)]


def _agent_update(project: Project, items: list[Item], actor: Actor) -> list[Outcome]:
    data = dict(items[0].data)
    agent = _target(project, Agent, data, "agent")
    agent = agent_update(agent=agent, actor=actor, **data)
    return [(agent.pk, True)]


def _conversations(project: Project, items: list[Item], actor: Actor) -> list[Outcome]:
    created = conversation_create_many(
        project=project, conversations=[item.data for item in items], actor=actor
    )
    return [(conversation.pk, new) for conversation, new in created]


def _runs(project: Project, items: list[Item], actor: Actor) -> list[Outcome]:
    created = run_create_many(
        project=project, runs=[item.data for item in items], actor=actor
    )
    return [(run.pk, new) for run, new in created]


def _target(project: Project, model: type, data: dict, field: str) -> Any:
    """The project's row that an update item names in `field` (popped)."""
    pk = data.pop(field)
    obj = model.objects.filter(project=project, pk=pk).first()
    if obj is None:
        name = model._meta.verbose_name
        raise ValidationError({field: f"No {name} {pk} in this project."})
    return obj


def _transition(project: Project, items: list[Item], actor: Actor) -> list[Outcome]:
    data = dict(items[0].data)
    task = _target(project, Task, data, "task")
    expected = data.get("expected_version")
    if (
        data.get("operation_id") is None
        and expected is not None
        and task.version == expected + 1
        and task.status == data["status"]
    ):
        # A retried batch without an operation id: this transition (from
        # version `expected` to this status) produced the stored state.
        return [(task.pk, False)]
    task = task_transition(task=task, actor=actor, **data)
    return [(task.pk, not task.replayed)]


def _transitions(project: Project, items: list[Item], actor: Actor) -> list[Outcome]:
    if any(
        item.data.get("operation_id") is None
        and item.data.get("expected_version") is not None
        for item in items
    ):
        # The retry rule of _transition judges each item on the state the
        # ones before it left.
        return [
            outcome for item in items for outcome in _transition(project, [item], actor)
        ]
    moved = task_transition_many(
        project=project, transitions=[item.data for item in items], actor=actor
    )
    return [(task.pk, not replayed) for task, replayed in moved]


def _task_update(project: Project, items: list[Item], actor: Actor) -> list[Outcome]:
    data = dict(items[0].data)
    task = task_update(task=_target(project, Task, data, "task"), actor=actor, **data)
    return [(task.pk, not getattr(task, "replayed", False))]


def _progress(project: Project, items: list[Item], actor: Actor) -> list[Outcome]:
    data = dict(items[0].data)
    task = _target(project, Task, data, "task")
    task = task_progress_set(task=task, actor=actor, **data)
    return [(task.pk, not task.replayed)]


def _run_update(project: Project, items: list[Item], actor: Actor) -> list[Outcome]:
    data = dict(items[0].data)
    run = run_update(run=_target(project, AgentRun, data, "run"), actor=actor, **data)
    return [(run.pk, not run.replayed)]


def _run_metadata(project: Project, items: list[Item], actor: Actor) -> list[Outcome]:
    filled = run_metadata_fill_many(
        project=project, fills=[item.data for item in items], actor=actor
    )
    return [(run.pk, added) for run, added in filled]


def _workflow(project: Project, items: list[Item], actor: Actor) -> list[Outcome]:
    workflow, created = workflow_create(project=project, actor=actor, **items[0].data)
    return [(workflow.pk, created)]


def _dependency(project: Project, items: list[Item], actor: Actor) -> list[Outcome]:
    data = dict(items[0].data)
    task = _target(project, Task, data, "task")
    edges = task_dependencies_add(task=task, actor=actor, **data)
    return [(task.pk, any(edge.created for edge in edges))]


def _heartbeat(project: Project, items: list[Item], actor: Actor) -> list[Outcome]:
    data = dict(items[0].data)
    agent = _target(project, Agent, data, "agent")
    beat = agent_heartbeat(agent=agent, actor=actor, **data)
    return [(agent.pk, beat is not None)]


BULK_HANDLERS: dict[str, Handler] = {
    "task": _tasks,
    "event": _events,
    "audit": _audits,
    "message": _messages,
    "message_sender_fill": _senders,
    "run_metadata_fill": _run_metadata,
    "conversation": _conversations,
    "transition": _transitions,
    "run": _runs,
    "memory": _memories,
}
SINGLE_HANDLERS: dict[str, Handler] = {
    "agent": _agent,
    "agent_update": _agent_update,
    "heartbeat": _heartbeat,
    "workflow": _workflow,
    "dependency": _dependency,
    "participant": _participant,
    "task_update": _task_update,
    "progress": _progress,
    "run_update": _run_update,
}


def _segments(items: list[Item]) -> list[list[Item]]:
    """Runs of consecutive items that one bulk call can write, in order."""
    segments: list[list[Item]] = []
    last_type = None
    for item in items:
        if (
            item.type in BULK_HANDLERS
            and segments
            and item.type == last_type
            and len(segments[-1]) < MAX_SEGMENT
        ):
            segments[-1].append(item)
        else:
            segments.append([item])
        last_type = item.type
    return segments


def _as_error(exc: Exception) -> ServiceError:
    if isinstance(exc, ServiceError):
        return exc
    # Input validation catches bad values first; a value the database still
    # refuses (out of a column's range) is reported as this item's error.
    return ValidationError(
        {"data": f"The database refused this item: {str(exc).strip()[:300]}"}
    )


def _apply(
    project: Project,
    segment: list[Item],
    actor: Actor,
    results: dict[int, ItemResult],
) -> None:
    handler = BULK_HANDLERS.get(segment[0].type) or SINGLE_HANDLERS[segment[0].type]
    try:
        with journaled():
            outcomes = handler(project, segment, actor)
    except (ServiceError, DataError) as exc:
        if len(segment) == 1:
            item = segment[0]
            results[item.index] = ItemResult(
                item.index, item.supplied_id, "error", _as_error(exc)
            )
            return
        # In halves: a bad item costs a few bulk calls, not one per item.
        # Each half is applied after the items before it, as one by one.
        # Small segments go one by one: halving a segment of bad items
        # would cost twice the calls.
        parts = (
            [[item] for item in segment]
            if len(segment) <= ONE_BY_ONE
            else [segment[: len(segment) // 2], segment[len(segment) // 2 :]]
        )
        for part in parts:
            _apply(project, part, actor, results)
        return
    for item, (pk, created) in zip(segment, outcomes, strict=True):
        results[item.index] = ItemResult(
            item.index, str(pk), "created" if created else "duplicate"
        )


def _retryable(exc: DatabaseError) -> bool:
    if isinstance(exc, IntegrityError):
        return transaction.get_connection().vendor == "postgresql"
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    return isinstance(exc, OperationalError) and sqlstate in RETRYABLE_SQLSTATES


def _count_on_commit(results: list[ItemResult]) -> None:
    counts = Counter(result.status for result in results)

    def count() -> None:
        for status, n in counts.items():
            INGEST_ITEMS.labels(status=status).inc(n)

    transaction.on_commit(count, robust=True)


def ingest_transaction(work: Callable[[], T]) -> T:
    """`work()` in one journaled transaction, run again from the start
    (its reads too) when PostgreSQL aborted it for a race or a deadlock, at
    most MAX_ATTEMPTS times. Inside a caller's transaction it runs once, in
    a savepoint: only a transaction of its own can be rolled back and run
    again."""
    retries = 0 if transaction.get_connection().in_atomic_block else MAX_ATTEMPTS - 1
    while True:
        try:
            with journaled():
                return work()
        except DatabaseError as exc:
            if retries <= 0 or not _retryable(exc):
                raise
            retries -= 1


def ingest_items(
    *,
    project: Project,
    items: list[Item],
    rejected: Sequence[ItemResult] = (),
    actor: Actor = SYSTEM,
) -> list[ItemResult]:
    """Apply validated items in order, in one transaction; one result per item.

    `rejected` are the results of items that failed validation, merged in by
    index. A retried batch writes nothing twice: items whose ids are stored
    come back as `duplicate`, or as an `idempotency_conflict` error when
    their body differs.
    """

    def apply() -> list[ItemResult]:
        results = {result.index: result for result in rejected}
        for segment in _segments(items):
            _apply(project, segment, actor, results)
        ordered = [results[index] for index in sorted(results)]
        _count_on_commit(ordered)
        return ordered

    return ingest_transaction(apply)
