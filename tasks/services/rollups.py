"""Stored roll-ups of tasks, workflows and agents, kept current with F() updates.

Callers hold a transaction. Rows are updated in primary-key order, so two
writers that touch the same workflows or agents never wait on each other in
a cycle.

One owner for usage: a run's tokens and cost always count; a message's count
for its task, the task's workflow and its sender unless its `metadata` has a
`run` key (the run it belongs to reports that usage; the conversation's own
totals still include it). `usage_counts(metadata)` is the rule.

Agent roll-ups describe the rows that are stored: `tasks_completed` and
`tasks_failed` count the completed and failed tasks assigned to the agent,
`runs` its runs, `messages_sent` the messages it sent, tokens and cost the
usage of those runs and messages, `avg_latency_ms` the mean latency of its
messages that report one. Workflow roll-ups count its tasks by status and add
their usage. Pruning subtracts what it deletes.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.db import connection, models
from django.db.models import DecimalField, F
from django.db.models.functions import Round
from django.utils import timezone

from tasks.models import TaskStatus

USAGE = ("prompt_tokens", "completion_tokens", "cached_tokens", "cost")
AGENT_COLUMNS = (
    "tasks_completed",
    "tasks_failed",
    "runs_count",
    "messages_count",
    *USAGE,
    "latency_total_ms",
    "latency_count",
)
# The agent column counting tasks that ended in this status.
AGENT_OUTCOME = {
    TaskStatus.COMPLETED: "tasks_completed",
    TaskStatus.FAILED: "tasks_failed",
}

Deltas = dict[Any, dict[str, Any]]
MONEY = DecimalField(max_digits=16, decimal_places=6)


def usage_counts(metadata: Any) -> bool:
    """Whether a message's usage counts in task, workflow and agent roll-ups."""
    return not (isinstance(metadata, Mapping) and "run" in metadata)


def status_column(status: str) -> str:
    return f"tasks_{status}"


def _plus(name: str, delta: Any) -> Any:
    # SQLite keeps decimals as floating point: rounding to the column's
    # places keeps a sum that returns to zero from dipping below it.
    if name == "cost":
        return Round(F(name) + delta, 6, output_field=MONEY)
    return F(name) + delta


def _apply(
    model: type,
    deltas: Deltas,
    *,
    active_at: datetime | None = None,
    returning: str | None = None,
) -> dict[Any, Any] | None:
    """Add `deltas` to `model`'s rows; with `returning`, that column by pk.

    The mapping is None where the statements could not return it.
    """
    rows = []
    for pk in sorted((pk for pk in deltas if pk is not None), key=str):
        changes = {name: delta for name, delta in deltas[pk].items() if delta}
        if changes or active_at is not None:
            rows.append((pk, changes))
    if len(rows) > 1 and connection.vendor == "postgresql":
        return _apply_values(model, rows, active_at=active_at, returning=returning)
    # One UPDATE per distinct change: SQLite locks the whole database.
    groups: dict[tuple, tuple[dict[str, Any], list[Any]]] = {}
    for pk, changes in rows:
        key = tuple(sorted(changes.items()))
        groups.setdefault(key, (changes, []))[1].append(pk)
    for changes, pks in groups.values():
        values = {name: _plus(name, delta) for name, delta in changes.items()}
        if active_at is not None:
            values["last_active_at"] = active_at
        if len(pks) == 1:
            model.objects.filter(pk=pks[0]).update(**values)
        else:
            model.objects.filter(pk__in=pks).update(**values)
    return None


def _cast(field: Any) -> str:
    if isinstance(field, models.DecimalField):
        return "numeric"
    if isinstance(field, models.FloatField):
        return "double precision"
    return "bigint"


def _apply_values(
    model: type,
    rows: list[tuple[Any, dict[str, Any]]],
    *,
    active_at: datetime | None,
    returning: str | None,
) -> dict[Any, Any] | None:
    # One statement for every row: the rows are locked in key order first,
    # as one UPDATE per row would; a column a row leaves alone (NULL in d)
    # keeps its value untouched.
    qn = connection.ops.quote_name
    opts = model._meta
    table, pk = qn(opts.db_table), qn(opts.pk.column)
    names = sorted({name for _, changes in rows for name in changes})
    fields = [opts.get_field(name) for name in names]
    columns = [qn(f.column) for f in fields]
    casts = [opts.pk.db_type(connection), *(_cast(f) for f in fields)]
    row = "(" + ", ".join(f"%s::{cast}" for cast in casts) + ")"
    sets = []
    for name, column in zip(names, columns, strict=True):
        added = f"t.{column} + d.{column}"
        if name == "cost":
            added = f"ROUND({added}, 6)"
        sets.append(f"{column} = COALESCE({added}, t.{column})")
    params: list[Any] = []
    for pk_value, changes in rows:
        params += [pk_value, *(changes.get(name) for name in names)]
    if active_at is not None:
        sets.append(f"{qn(opts.get_field('last_active_at').column)} = %s")
        params.append(active_at)
    sql = (
        f"WITH d ({', '.join(['id', *columns])}) AS"
        f" (VALUES {', '.join([row] * len(rows))}),"
        f" l AS MATERIALIZED (SELECT t.{pk} FROM {table} t"
        f" WHERE t.{pk} IN (SELECT id FROM d) ORDER BY t.{pk} FOR UPDATE OF t)"
        f" UPDATE {table} t SET {', '.join(sets)} FROM d"
        f" WHERE t.{pk} = d.id AND t.{pk} IN (SELECT {pk} FROM l)"
    )
    if returning is not None:
        sql += f" RETURNING t.{pk}, t.{qn(opts.get_field(returning).column)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return dict(cursor.fetchall()) if returning is not None else None


def workflow_rollups_apply(deltas: Deltas) -> None:
    """Add `{workflow_id: {column: delta}}` to workflows, in key order."""
    from tasks.models import Workflow

    _apply(Workflow, deltas)


def agent_rollups_apply(deltas: Deltas, *, active_at: datetime | None = None) -> None:
    """Add `{agent_id: {column: delta}}` to agents, in key order.

    `active_at` also sets `last_active_at` of each of them.
    """
    from tasks.models import Agent

    _apply(Agent, deltas, active_at=active_at)


def agent_active(agent_id: uuid.UUID | None, at: datetime | None = None) -> None:
    """Mark an agent active now (claims, lease heartbeats)."""
    if agent_id is not None:
        agent_rollups_apply({agent_id: {}}, active_at=at or timezone.now())


def task_status_moved(
    *,
    workflow_id: uuid.UUID | None,
    agent_id: uuid.UUID | None,
    before: str,
    after: str,
) -> None:
    """Roll up one task's status change into its workflow and assigned agent."""
    tasks_status_moved([(workflow_id, agent_id, before, after)])


def tasks_status_moved(
    moves: Iterable[tuple[uuid.UUID | None, uuid.UUID | None, str, str]],
) -> None:
    """Roll up status changes, (workflow id, agent id, before, after) each."""
    workflows: Deltas = defaultdict(lambda: defaultdict(int))
    agents: Deltas = defaultdict(lambda: defaultdict(int))
    for workflow_id, agent_id, before, after in moves:
        if before == after:
            continue
        if workflow_id is not None:
            workflows[workflow_id][status_column(before)] -= 1
            workflows[workflow_id][status_column(after)] += 1
        if agent_id is not None:
            if before in AGENT_OUTCOME:
                agents[agent_id][AGENT_OUTCOME[before]] -= 1
            if after in AGENT_OUTCOME:
                agents[agent_id][AGENT_OUTCOME[after]] += 1
    workflow_rollups_apply(workflows)
    agent_rollups_apply(agents)


def tasks_rollup(tasks: Iterable[Any], *, sign: int = 1) -> None:
    """Count tasks in (or, sign -1, out of) their workflows and agents.

    Each item has `workflow_id`, `assigned_agent_id`, `status` and the usage
    columns (a Task, or a dict-like row through `getattr`).
    """
    workflows: Deltas = defaultdict(lambda: defaultdict(int))
    agents: Deltas = defaultdict(lambda: defaultdict(int))
    for task in tasks:
        if task.workflow_id is not None:
            wf = workflows[task.workflow_id]
            wf[status_column(task.status)] += sign
            for name in USAGE:
                wf[name] += sign * getattr(task, name)
        if task.assigned_agent_id is not None and task.status in AGENT_OUTCOME:
            agents[task.assigned_agent_id][AGENT_OUTCOME[task.status]] += sign
    workflow_rollups_apply(workflows)
    agent_rollups_apply(agents)


def task_usage_add(
    *, task_id: uuid.UUID, workflow_id: uuid.UUID | None | type = ..., **usage: Any
) -> None:
    """Add usage to a task and its workflow (the task's, unless given)."""
    from tasks.models import Task, Workflow

    if workflow_id is ...:
        tasks_usage_add({task_id: usage})
        return
    values = {name: _plus(name, usage[name]) for name in USAGE if usage.get(name)}
    if not values:
        return
    Task.objects.filter(pk=task_id).update(**values)
    if workflow_id is not None:
        Workflow.objects.filter(pk=workflow_id).update(**values)


def tasks_usage_add(deltas: Deltas) -> None:
    """Add `{task_id: {usage column: delta}}` to tasks and their workflows."""
    from tasks.models import Task

    deltas = {
        pk: {name: delta[name] for name in USAGE if delta.get(name)}
        for pk, delta in deltas.items()
        if pk is not None
    }
    deltas = {pk: delta for pk, delta in deltas.items() if delta}
    if not deltas:
        return
    workflow_of = _apply(Task, deltas, returning="workflow_id")
    if workflow_of is None:
        workflow_of = dict(
            Task.objects.filter(pk__in=deltas, workflow_id__isnull=False).values_list(
                "pk", "workflow_id"
            )
        )
    workflows: Deltas = defaultdict(lambda: defaultdict(int))
    for pk, workflow_id in workflow_of.items():
        if workflow_id is not None:
            for name, delta in deltas[pk].items():
                workflows[workflow_id][name] += delta
    workflow_rollups_apply(workflows)


def runs_rollup(runs: Iterable[Any], *, sign: int = 1) -> None:
    """Count new (or, sign -1, deleted) runs and their usage in their agents."""
    agents: Deltas = defaultdict(lambda: defaultdict(int))
    for run in runs:
        if run.agent_id is None:
            continue
        deltas = agents[run.agent_id]
        deltas["runs_count"] += sign
        for name in USAGE:
            deltas[name] += sign * getattr(run, name)
    agent_rollups_apply(agents, active_at=timezone.now() if sign > 0 else None)


def messages_rollup(
    *,
    messages: Iterable[Any],
    tasks: Mapping[Any, uuid.UUID | None] | None = None,
    sign: int = 1,
) -> None:
    """Roll up appended (or, sign -1, deleted) messages.

    Usage that counts (see `usage_counts`) goes to the task of each
    message's conversation (`tasks`: conversation id -> task id, for
    appends) and its workflow, and to each sender, with its message count
    and latency. Each item has `conversation_id`, `sender_id`, `metadata`,
    `latency_ms` and the usage columns.
    """
    task_usage: Deltas = defaultdict(lambda: defaultdict(int))
    agents: Deltas = defaultdict(lambda: defaultdict(int))
    for message in messages:
        counts = usage_counts(message.metadata)
        if counts and tasks:
            task_id = tasks.get(message.conversation_id)
            if task_id is not None:
                usage = task_usage[task_id]
                for name in USAGE:
                    usage[name] += getattr(message, name)
        if message.sender_id is None:
            continue
        deltas = agents[message.sender_id]
        deltas["messages_count"] += sign
        if counts:
            for name in USAGE:
                deltas[name] += sign * getattr(message, name)
        if message.latency_ms is not None:
            deltas["latency_total_ms"] += sign * message.latency_ms
            deltas["latency_count"] += sign
    if sign > 0:
        tasks_usage_add(task_usage)
    agent_rollups_apply(agents, active_at=timezone.now() if sign > 0 else None)
