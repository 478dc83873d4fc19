"""Writes to agent runs; their usage rolls up into their tasks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.utils import timezone

from audit.journal import journaled, race_safe
from audit.models import EventKind
from audit.services import (
    SYSTEM,
    Actor,
    audit_event_record,
    audit_events_record,
    audit_operation_applied,
)
from swarmsite.bulk import bulk_insert
from swarmsite.errors import (
    Conflict,
    IdempotencyConflict,
    IllegalTransition,
    ValidationError,
)
from swarmsite.models import Project
from swarmsite.validation import (
    Resolver,
    body_digest,
    check_replay,
    clean_fields,
    id_or_none,
    json_object,
    parse_uuid,
    to_count,
    to_decimal,
    to_utc,
)
from tasks.models import RUN_TERMINAL_STATUSES, Agent, AgentRun, RunStatus, Task
from tasks.services.rollups import (
    USAGE,
    agent_rollups_apply,
    runs_rollup,
    tasks_usage_add,
)
from tasks.services.tasks import task_rollup_add

RUN_UPDATABLE_FIELDS = (
    "status",
    "output_summary",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost",
    "error",
    "metadata",
)


def _run_snapshot(run: AgentRun) -> dict[str, Any]:
    return {
        "task": id_or_none(run.task_id),
        "agent": id_or_none(run.agent_id),
        "status": run.status,
        "output_summary": run.output_summary,
        "model": run.model,
        "prompt_tokens": run.prompt_tokens,
        "completion_tokens": run.completion_tokens,
        "cached_tokens": run.cached_tokens,
        "cost": str(run.cost),
        "error": run.error,
        "metadata": run.metadata,
    }


def _run_payload(run: AgentRun) -> dict[str, Any]:
    return {"run": str(run.pk)} | {
        k: v for k, v in _run_snapshot(run).items() if k != "metadata"
    }


RUN_CREATE_KEYS = frozenset(
    {
        "task",
        "agent",
        "run_id",
        "status",
        "output_summary",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cost",
        "error",
        "metadata",
        "started_at",
    }
)


RUN_STATUSES = frozenset(RunStatus.values)
# Fields run_create_many has set to values their clean() would return as is.
CHECKED_FIELDS = frozenset(
    {"id", "status", "started_at", "ended_at", "created_at", "updated_at"}
)


class _Memo:
    """A Resolver's `one` for a field, asked once per distinct value."""

    def __init__(self, resolver: Resolver, *, field: str) -> None:
        self.resolver = resolver
        self.field = field
        self.seen: dict[Any, Any] = {}

    def one(self, value: Any) -> Any:
        try:
            return self.seen[value]
        except KeyError:
            found = self.seen[value] = self.resolver.one(field=self.field, value=value)
            return found
        except TypeError:  # unhashable: the resolver answers as it would
            return self.resolver.one(field=self.field, value=value)


@race_safe
def run_create_many(
    *, project: Project, runs: list[dict[str, Any]], actor: Actor = SYSTEM
) -> list[tuple[AgentRun, bool]]:
    """Start runs with one bulk INSERT; usage rolls up into their tasks.

    Each item takes run_create's arguments. A repeated id with the body that
    created the run returns the stored run. Raises on the first bad item, having written
    nothing.
    """
    for spec in runs:
        unknown = set(spec) - RUN_CREATE_KEYS
        if unknown:
            raise ValidationError(dict.fromkeys(sorted(unknown), "Unknown field."))
    tasks = _Memo(Resolver(Task, project=project), field="task")
    agents = _Memo(Resolver(Agent, project=project), field="agent")
    for spec in runs:
        tasks.resolver.want(spec.get("task"))
        agents.resolver.want(spec.get("agent"))
    pks = [parse_uuid(spec.get("run_id"), field="id") or uuid.uuid4() for spec in runs]
    known = {r.pk: r for r in AgentRun.objects.filter(pk__in=pks)}
    now = timezone.now()
    results: list[tuple[AgentRun, bool]] = []
    new: list[AgentRun] = []
    for pk, spec in zip(pks, runs, strict=True):
        status = spec.get("status", RunStatus.STARTED)
        if not isinstance(status, str) or status not in RUN_STATUSES:
            raise ValidationError(
                {"status": f"Choose from {', '.join(RunStatus.values)}."}
            )
        task = tasks.one(spec.get("task"))
        if task is None:
            raise ValidationError({"task": "This field is required."})
        run = AgentRun(
            id=pk,
            project=project,
            task=task,
            agent=agents.one(spec.get("agent")),
            status=status,
            output_summary=spec.get("output_summary", ""),
            model=spec.get("model", ""),
            prompt_tokens=to_count(spec.get("prompt_tokens", 0), field="prompt_tokens"),
            completion_tokens=to_count(
                spec.get("completion_tokens", 0), field="completion_tokens"
            ),
            cached_tokens=to_count(spec.get("cached_tokens", 0), field="cached_tokens"),
            cost=to_decimal(spec.get("cost", 0), field="cost"),
            error=spec.get("error", ""),
            metadata=json_object(spec.get("metadata"), field="metadata"),
            started_at=to_utc(spec["started_at"], field="started_at")
            if spec.get("started_at")
            else now,
            ended_at=now if status in RUN_TERMINAL_STATUSES else None,
        )
        clean_fields(run, exclude=CHECKED_FIELDS)
        stored = known.get(pk)
        if stored is not None:
            if stored.project_id != project.pk:
                raise IdempotencyConflict(f"The id {pk} is taken.")
            check_replay(
                stored_digest=stored.create_digest,
                stored=_run_snapshot(stored),
                supplied=_run_snapshot(run),
                what="run",
            )
            results.append((stored, False))
            continue
        run.create_digest = body_digest(_run_snapshot(run))
        known[pk] = run
        new.append(run)
        results.append((run, True))
    if not new:
        return results

    bulk_insert(AgentRun, sorted(new, key=lambda run: run.pk))
    usage: dict[uuid.UUID, dict[str, Any]] = {}
    for run in new:
        total = usage.setdefault(run.task_id, dict.fromkeys(USAGE, 0))
        for name in USAGE:
            total[name] += getattr(run, name)
    tasks_usage_add(usage)
    runs_rollup(new)
    links = {(run.task_id, run.agent_id) for run in new if run.agent_id}
    if links:
        # An agent already involved in the task keeps its one link.
        Task.agents.through.objects.bulk_create(
            [Task.agents.through(task_id=t, agent_id=a) for t, a in links],
            ignore_conflicts=True,
        )
    audit_events_record(
        project_id=project.pk,
        actor=actor,
        events=[
            {
                "kind": EventKind.RUN_STARTED,
                "task_id": run.task_id,
                "payload": _run_payload(run),
            }
            for run in new
        ],
    )
    return results


def run_create(
    *,
    project: Project,
    task: Task | uuid.UUID | str,
    agent: Agent | uuid.UUID | str | None = None,
    run_id: uuid.UUID | str | None = None,
    status: str = RunStatus.STARTED,
    output_summary: str = "",
    model: str = "",
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    cached_tokens: int = 0,
    cost: Any = 0,
    error: str = "",
    metadata: dict | None = None,
    started_at: datetime | None = None,
    actor: Actor = SYSTEM,
) -> tuple[AgentRun, bool]:
    """Start a run of an agent on a task; its usage rolls up into the task."""
    spec = {
        "task": task,
        "agent": agent,
        "run_id": run_id,
        "status": status,
        "output_summary": output_summary,
        "model": model,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cached_tokens": cached_tokens,
        "cost": cost,
        "error": error,
        "metadata": metadata,
        "started_at": started_at,
    }
    return run_create_many(project=project, runs=[spec], actor=actor)[0]


@journaled()
def run_update(
    *,
    run: AgentRun,
    operation_id: uuid.UUID | str | None = None,
    actor: Actor = SYSTEM,
    **fields: Any,
) -> AgentRun:
    """Report a run's progress or outcome; usage is absolute, rolled up by delta.

    A repeated `operation_id` changes nothing and sets `run.replayed`.
    """
    unknown = set(fields) - set(RUN_UPDATABLE_FIELDS)
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be changed."))
    operation_id = parse_uuid(operation_id, field="id")
    run = AgentRun.objects.select_for_update().select_related("task").get(pk=run.pk)
    run.replayed = audit_operation_applied(
        project_id=run.project_id,
        operation_id=operation_id,
        kinds=(EventKind.RUN_UPDATED,),
        subject=("run", str(run.pk)),
    )
    if run.replayed:
        return run
    if "status" in fields:
        if fields["status"] not in RunStatus.values:
            raise ValidationError(
                {"status": f"Choose from {', '.join(RunStatus.values)}."}
            )
        if run.status in RUN_TERMINAL_STATUSES and fields["status"] != run.status:
            raise IllegalTransition(current=run.status, requested=fields["status"])
    for name in ("prompt_tokens", "completion_tokens", "cached_tokens"):
        if name in fields:
            fields[name] = to_count(fields[name], field=name)
    if "cost" in fields:
        fields["cost"] = to_decimal(fields["cost"], field="cost")
    if "metadata" in fields:
        fields["metadata"] = json_object(fields["metadata"], field="metadata")
    before = _run_snapshot(run)
    old_usage = (run.prompt_tokens, run.completion_tokens, run.cached_tokens, run.cost)
    for name, value in fields.items():
        setattr(run, name, value)
    clean_fields(run)
    changes = {
        k: [before[k], v] for k, v in _run_snapshot(run).items() if before[k] != v
    }
    if not changes and operation_id is None:
        return run
    update_fields = [k for k in changes if k not in ("task", "agent")]
    if run.status in RUN_TERMINAL_STATUSES and run.ended_at is None:
        run.ended_at = timezone.now()
        update_fields.append("ended_at")
    if changes:
        run.save(update_fields=[*update_fields, "updated_at"])
    delta = {
        "prompt_tokens": run.prompt_tokens - old_usage[0],
        "completion_tokens": run.completion_tokens - old_usage[1],
        "cached_tokens": run.cached_tokens - old_usage[2],
        "cost": run.cost - old_usage[3],
    }
    task_rollup_add(task_id=run.task_id, **delta)
    if run.agent_id is not None:
        agent_rollups_apply({run.agent_id: delta}, active_at=timezone.now())
    audit_event_record(
        project_id=run.project_id,
        kind=EventKind.RUN_UPDATED,
        actor=actor,
        task_id=run.task_id,
        payload=_run_payload(run) | {"changes": sorted(changes)},
        event_id=operation_id,
    )
    return run


def _filled(
    stored: dict[str, Any], given: dict[str, Any], path: str
) -> tuple[dict[str, Any], list[str]]:
    """`stored` with the keys of `given` it lacks, and the paths added."""
    merged, added = dict(stored), []
    for key, value in given.items():
        where = f"{path}.{key}"
        if key not in stored:
            merged[key] = value
            added.append(where)
        elif isinstance(stored[key], dict) and isinstance(value, dict):
            merged[key], deeper = _filled(stored[key], value, where)
            added += deeper
        elif stored[key] != value:
            raise Conflict(
                f"{where}: the run has {repr(stored[key])[:200]}; a value once "
                "set is not replaced."
            )
    return merged, added


RUN_FILL_KEYS = frozenset({"run", "metadata"})


@journaled()
def run_metadata_fill_many(
    *, project: Project, fills: list[dict[str, Any]], actor: Actor = SYSTEM
) -> list[tuple[AgentRun, bool]]:
    """Add to runs' metadata the keys they lack; (run, anything added) each.

    Each item is `{"run": id, "metadata": {...}}` of `project`. Objects merge
    key by key, at any depth (`{"otel": {"delegated_by": ...}}` adds one key
    under `otel`); a key stored with the same value changes nothing, with
    another value the fill is refused, naming the key. The runs are locked
    in key order with one query and written with one statement; items
    naming one run apply in order. A `run.updated` event per item that added
    keys names them; no roll-up depends on metadata. Raises on the first bad
    item, having written nothing.
    """
    wanted: list[tuple[uuid.UUID, dict[str, Any]]] = []
    for spec in fills:
        if not isinstance(spec, dict):
            raise ValidationError({"non_field_errors": "Each fill must be an object."})
        unknown = set(spec) - RUN_FILL_KEYS
        if unknown:
            raise ValidationError(dict.fromkeys(sorted(unknown), "Unknown field."))
        pk = parse_uuid(spec.get("run"), field="run")
        if pk is None:
            raise ValidationError({"run": "This field is required."})
        wanted.append((pk, json_object(spec.get("metadata"), field="metadata")))
    runs = {
        run.pk: run
        for run in AgentRun.objects.select_for_update()
        .filter(project=project, pk__in={pk for pk, _ in wanted})
        .order_by("pk")
    }
    results: list[tuple[AgentRun, bool]] = []
    changed: dict[uuid.UUID, AgentRun] = {}
    events: list[dict[str, Any]] = []
    for pk, metadata in wanted:
        run = runs.get(pk)
        if run is None:
            raise ValidationError({"run": f"No agent run {pk} in this project."})
        run.metadata, added = _filled(run.metadata or {}, metadata, "metadata")
        if added:
            changed[pk] = run
            events.append(
                {
                    "kind": EventKind.RUN_UPDATED,
                    "task_id": run.task_id,
                    "payload": _run_payload(run)
                    | {"changes": ["metadata"], "added": added},
                }
            )
        results.append((run, bool(added)))
    if changed:
        now = timezone.now()
        for run in changed.values():
            run.updated_at = now
        AgentRun.objects.bulk_update(
            sorted(changed.values(), key=lambda run: run.pk),
            ["metadata", "updated_at"],
        )
        audit_events_record(project_id=project.pk, events=events, actor=actor)
    return results


def run_metadata_fill(
    *, run: AgentRun, metadata: dict[str, Any], actor: Actor = SYSTEM
) -> AgentRun:
    """Add to one run's metadata the keys it lacks; see run_metadata_fill_many.

    When nothing is added, `run.replayed` is set.
    """
    ((stored, added),) = run_metadata_fill_many(
        project=run.project,
        fills=[{"run": run.pk, "metadata": metadata}],
        actor=actor,
    )
    stored.replayed = not added
    return stored
