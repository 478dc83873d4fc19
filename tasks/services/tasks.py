"""Writes to tasks: create, update, lifecycle, progress, retry, roll-ups."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.db.models import F
from django.utils import timezone

from audit.journal import journaled, race_safe
from audit.models import AuditAction, EventKind
from audit.services import (
    SYSTEM,
    Actor,
    audit_event_record,
    audit_events_record,
    audit_log_record,
    audit_logs_record,
)
from swarmsite.errors import (
    IdempotencyConflict,
    ValidationError,
    VersionConflict,
)
from swarmsite.models import Project
from swarmsite.validation import (
    Resolver,
    body_digest,
    check_replay,
    clean_fields,
    id_or_none,
    json_check,
    json_list,
    json_object,
    parse_uuid,
    resolve,
    resolve_many,
)
from tasks.models import (
    Agent,
    Task,
    TaskDependency,
    Workflow,
)
from tasks.services.lifecycle import task_locked, task_replayed, whole_number
from tasks.services.rollups import task_usage_add, tasks_rollup

# Fields a client may change with task_update; the rest move through their
# own services (status, progress) or are roll-ups.
TASK_UPDATABLE_FIELDS = (
    "title",
    "description",
    "session_id",
    "workflow",
    "priority",
    "assigned_agent",
    "agents",
    "input",
    "metadata",
    "files_touched",
)
TASK_CREATE_KEYS = frozenset(
    {
        "title",
        "task_id",
        "key",
        "description",
        "session_id",
        "workflow",
        "parent",
        "priority",
        "assigned_agent",
        "agents",
        "depends_on",
        "input",
        "metadata",
        "files_touched",
    }
)


def _task_snapshot(task: Task, *, agents: list[Agent], depends_on: list[Task]) -> dict:
    # `key` only when set, so bodies of tasks created before keys existed
    # keep their digests.
    return ({"key": task.key} if task.key else {}) | {
        "title": task.title,
        "description": task.description,
        "session_id": task.session_id,
        "workflow": id_or_none(task.workflow_id),
        "parent": id_or_none(task.parent_id),
        "priority": task.priority,
        "assigned_agent": id_or_none(task.assigned_agent_id),
        "agents": sorted(str(a.pk) for a in agents),
        "depends_on": sorted(str(t.pk) for t in depends_on),
        "input": task.input,
        "metadata": task.metadata,
        "files_touched": task.files_touched,
    }


def _stored_task_snapshot(task: Task) -> dict:
    return _task_snapshot(
        task,
        agents=list(task.agents.all()),
        depends_on=list(task.depends_on.all()),
    )


def _task_key(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError({"key": "Must be a string."})
    if len(value) > 200:
        raise ValidationError({"key": "At most 200 characters."})
    return value


@race_safe
def task_create_many(
    *, project: Project, tasks: list[dict[str, Any]], actor: Actor = SYSTEM
) -> list[tuple[Task, bool]]:
    """Create pending tasks in order with bulk INSERTs; repeated ids return them.

    Each item takes task_create's arguments; a task may name an earlier one
    of the list as its parent or dependency. A repeated id is judged against
    the body that created the task. Raises on the first bad item, having
    written nothing.
    """
    for spec in tasks:
        unknown = set(spec) - TASK_CREATE_KEYS
        if unknown:
            raise ValidationError(dict.fromkeys(sorted(unknown), "Unknown field."))
    workflows = Resolver(Workflow, project=project)
    agents = Resolver(Agent, project=project)
    referenced = Resolver(Task, project=project)
    for spec in tasks:
        workflows.want(spec.get("workflow"))
        agents.want(spec.get("assigned_agent"))
        agents.want_many(spec.get("agents"))
        referenced.want(spec.get("parent"))
        referenced.want_many(spec.get("depends_on"))

    supplied = [parse_uuid(spec.get("task_id"), field="id") for spec in tasks]
    keys = [_task_key(spec.get("key")) for spec in tasks]
    # A key names the task as an id does: a repeated key is a repeated create.
    keyed = (
        dict(
            Task.objects.filter(project=project, key__in=set(keys) - {""}).values_list(
                "key", "pk"
            )
        )
        if any(keys)
        else {}
    )
    pks: list[uuid.UUID] = []
    for pk, key in zip(supplied, keys, strict=True):
        if key and key not in keyed:
            keyed[key] = pk or uuid.uuid4()
        known = keyed.get(key) if key else None
        if pk is not None and known is not None and known != pk:
            raise IdempotencyConflict(f"The key {key!r} names task {known}.")
        pks.append(pk or known or uuid.uuid4())
    stored = {
        t.pk: t
        for t in Task.objects.filter(pk__in=pks).prefetch_related(
            "agents", "depends_on"
        )
    }
    earlier: dict[uuid.UUID, Task] = {}
    snapshots: dict[uuid.UUID, dict] = {}
    results: list[tuple[Task, bool]] = []
    new: list[tuple[Task, list[Agent], list[Task]]] = []
    for pk, spec in zip(pks, tasks, strict=True):
        task = Task(
            id=pk,
            project=project,
            key=_task_key(spec.get("key")),
            title=spec.get("title", ""),
            description=spec.get("description", ""),
            session_id=spec.get("session_id", ""),
            workflow=workflows.one(field="workflow", value=spec.get("workflow")),
            parent=referenced.one(
                field="parent", value=spec.get("parent"), earlier=earlier
            ),
            priority=whole_number(spec.get("priority", 0), field="priority"),
            assigned_agent=agents.one(
                field="assigned_agent", value=spec.get("assigned_agent")
            ),
            input=spec.get("input"),
            metadata=json_object(spec.get("metadata"), field="metadata"),
            files_touched=json_list(spec.get("files_touched"), field="files_touched"),
        )
        json_check(task.input, field="input")
        involved = agents.many(field="agents", values=spec.get("agents"))
        if task.assigned_agent is not None and task.assigned_agent not in involved:
            involved.append(task.assigned_agent)
        dep_ids = spec.get("depends_on") or []
        if any(str(d) == str(pk) for d in dep_ids):
            raise ValidationError({"depends_on": "A task cannot depend on itself."})
        deps = referenced.many(field="depends_on", values=dep_ids, earlier=earlier)
        clean_fields(task)
        snapshot = _task_snapshot(task, agents=involved, depends_on=deps)
        existing = earlier.get(pk) or stored.get(pk)
        if existing is not None:
            if existing.project_id != project.pk:
                raise IdempotencyConflict(f"The id {pk} is taken.")
            if pk not in snapshots:
                snapshots[pk] = _stored_task_snapshot(existing)
            check_replay(
                stored_digest=existing.create_digest,
                stored=snapshots[pk],
                supplied=snapshot,
                what="task",
                grown=("agents",),
            )
            earlier[pk] = existing
            results.append((existing, False))
            continue
        task.create_digest = body_digest(snapshot)
        earlier[pk] = task
        snapshots[pk] = snapshot
        new.append((task, involved, deps))
        results.append((task, True))
    if not new:
        return results

    # Rows in key order: two batches that share ids lock them in one order.
    Task.objects.bulk_create(sorted((t for t, _, _ in new), key=lambda t: t.pk))
    Task.agents.through.objects.bulk_create(
        [
            Task.agents.through(task_id=task.pk, agent_id=agent.pk)
            for task, involved, _ in new
            for agent in involved
        ]
    )
    TaskDependency.objects.bulk_create(
        [
            TaskDependency(task=task, depends_on=dep)
            for task, _, deps in new
            for dep in deps
        ]
    )
    tasks_rollup(task for task, _, _ in new)
    events, entries = [], []
    for task, _, _ in new:
        snapshot = snapshots[task.pk]
        events.append(
            {
                "kind": EventKind.TASK_CREATED,
                "task_id": task.pk,
                "payload": {
                    "task": str(task.pk),
                    "status": task.status,
                    **{
                        k: v
                        for k, v in snapshot.items()
                        if k not in ("input", "description")
                    },
                },
            }
        )
        entries.append({"action": AuditAction.TASK_CREATED, "obj": task})
    audit_events_record(project_id=project.pk, events=events, actor=actor)
    audit_logs_record(project_id=project.pk, entries=entries, actor=actor)
    return results


def task_create(
    *,
    project: Project,
    title: str,
    task_id: uuid.UUID | str | None = None,
    actor: Actor = SYSTEM,
    **fields: Any,
) -> tuple[Task, bool]:
    """Create a pending task; a repeated id with the same body returns it.

    `fields` are task_create_many's item keys (description, parent, ...).
    """
    spec = {"title": title, "task_id": task_id, **fields}
    return task_create_many(project=project, tasks=[spec], actor=actor)[0]


class _RollupView:
    """A task as its roll-ups saw it before an update moved it."""

    def __init__(self, task: Task, before: dict) -> None:
        self.status = task.status
        self.workflow_id = uuid.UUID(before["workflow"]) if before["workflow"] else None
        self.assigned_agent_id = (
            uuid.UUID(before["assigned_agent"]) if before["assigned_agent"] else None
        )
        for name in ("prompt_tokens", "completion_tokens", "cached_tokens", "cost"):
            setattr(self, name, getattr(task, name))


@journaled()
def task_update(
    *,
    task: Task,
    expected_version: int | None = None,
    operation_id: uuid.UUID | str | None = None,
    actor: Actor = SYSTEM,
    **fields: Any,
) -> Task:
    """Change a task's descriptive fields; bumps its version when they change.

    `expected_version` refuses the change if the task moved on (409); a
    repeated `operation_id` changes nothing and sets `task.replayed`.
    """
    unknown = set(fields) - set(TASK_UPDATABLE_FIELDS)
    if unknown:
        raise ValidationError(
            dict.fromkeys(unknown, "This field cannot be changed here.")
        )
    if expected_version is not None:
        whole_number(expected_version, field="expected_version")
    operation_id = parse_uuid(operation_id, field="id")
    task = task_locked(task)
    if task_replayed(task, operation_id, EventKind.TASK_UPDATED):
        return task
    if expected_version is not None and expected_version != task.version:
        raise VersionConflict(expected=expected_version, actual=task.version)
    project = task.project
    agents_before = list(task.agents.all())
    before = _task_snapshot(task, agents=agents_before, depends_on=[])
    involved = agents_before
    if "workflow" in fields:
        fields["workflow"] = resolve(
            Workflow, project=project, field="workflow", value=fields["workflow"]
        )
    if "assigned_agent" in fields:
        fields["assigned_agent"] = resolve(
            Agent,
            project=project,
            field="assigned_agent",
            value=fields["assigned_agent"],
        )
    if "agents" in fields:
        involved = resolve_many(
            Agent, project=project, field="agents", values=fields.pop("agents")
        )
    if "metadata" in fields:
        fields["metadata"] = json_object(fields["metadata"], field="metadata")
    if "files_touched" in fields:
        fields["files_touched"] = json_list(
            fields["files_touched"], field="files_touched"
        )
    if "input" in fields:
        json_check(fields["input"], field="input")
    if "priority" in fields:
        whole_number(fields["priority"], field="priority")
    for name, value in fields.items():
        setattr(task, name, value)
    if task.assigned_agent is not None and task.assigned_agent not in involved:
        involved = [*involved, task.assigned_agent]
    clean_fields(task)
    after = _task_snapshot(task, agents=involved, depends_on=[])
    changes = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
    if not changes and operation_id is None:
        return task
    if changes:
        now = timezone.now()
        columns = [k for k in changes if k != "agents"]
        Task.objects.filter(pk=task.pk).update(
            **{k: getattr(task, k) for k in columns},
            version=F("version") + 1,
            updated_at=now,
        )
        if "workflow" in changes or "assigned_agent" in changes:
            # The task leaves its old workflow and agent roll-ups, joins the new.
            tasks_rollup([_RollupView(task, before)], sign=-1)
            tasks_rollup([task])
        task.version += 1
        task.updated_at = now
        if "agents" in changes:
            task.agents.set(involved)
    # With an operation id the event is written even for no change, so a
    # replay after later updates still finds it and changes nothing.
    audit_event_record(
        project_id=task.project_id,
        kind=EventKind.TASK_UPDATED,
        actor=actor,
        task_id=task.pk,
        payload={"task": str(task.pk), "version": task.version, "changes": changes},
        event_id=operation_id,
    )
    if changes:
        audit_log_record(
            project_id=task.project_id,
            action=AuditAction.TASK_UPDATED,
            actor=actor,
            obj=task,
            changes=changes,
        )
    return task


def task_rollup_add(
    *,
    task_id: uuid.UUID,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    cached_tokens: int = 0,
    cost: Decimal = Decimal(0),
) -> None:
    """Add usage to a task's and its workflow's totals (callers hold a transaction)."""
    task_usage_add(
        task_id=task_id,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cached_tokens=cached_tokens,
        cost=cost,
    )
