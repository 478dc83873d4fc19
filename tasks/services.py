"""Every write to agents, workflows, tasks, dependencies and runs."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from audit.journal import journaled
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
    Conflict,
    IdempotencyConflict,
    IllegalTransition,
    NotFound,
    ValidationError,
    VersionConflict,
)
from swarmsite.models import Project
from swarmsite.validation import (
    check_same,
    clean_fields,
    json_list,
    json_object,
    parse_uuid,
    pk_or_none,
    resolve,
    resolve_many,
    to_count,
    to_decimal,
)
from tasks.models import (
    RUN_TERMINAL_STATUSES,
    TASK_TRANSITIONS,
    TERMINAL_STATUSES,
    Agent,
    AgentHeartbeat,
    AgentRun,
    AgentStatus,
    RunStatus,
    Task,
    TaskDependency,
    TaskStatus,
    Workflow,
)

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
AGENT_UPDATABLE_FIELDS = (
    "name",
    "role",
    "model",
    "parent",
    "status",
    "capabilities",
    "config",
    "metadata",
)
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


# Agents -------------------------------------------------------------------


def _agent_snapshot(agent: Agent) -> dict[str, Any]:
    return {
        "name": agent.name,
        "role": agent.role,
        "model": agent.model,
        "parent": pk_or_none(agent.parent),
        "capabilities": agent.capabilities,
        "config": agent.config,
        "metadata": agent.metadata,
    }


def agent_actor(agent: Agent, *, correlation_id: str = "") -> Actor:
    """The audit actor for changes an agent makes."""
    return Actor(
        type="agent", id=str(agent.pk), label=agent.name, correlation_id=correlation_id
    )


@journaled()
def agent_register(
    *,
    project: Project,
    name: str,
    role: str = "",
    model: str = "",
    parent: Agent | uuid.UUID | str | None = None,
    capabilities: list | None = None,
    config: dict | None = None,
    metadata: dict | None = None,
    agent_id: uuid.UUID | str | None = None,
    actor: Actor = SYSTEM,
) -> tuple[Agent, bool]:
    """Register an agent by name; an existing name returns that agent."""
    existing = Agent.objects.filter(project=project, name=name).first()
    if existing is not None:
        return existing, False
    agent = Agent(
        id=parse_uuid(agent_id) or uuid.uuid4(),
        project=project,
        name=name,
        role=role,
        model=model,
        parent=resolve(Agent, project=project, field="parent", value=parent),
        capabilities=json_list(capabilities, field="capabilities"),
        config=json_object(config, field="config"),
        metadata=json_object(metadata, field="metadata"),
    )
    clean_fields(agent)
    if Agent.objects.filter(pk=agent.pk).exists():
        raise IdempotencyConflict(
            f"An agent with id {agent.pk} exists under another name."
        )
    try:
        with transaction.atomic():
            agent.save(force_insert=True)
    except IntegrityError:
        # A concurrent registration of the same name won the race.
        return Agent.objects.get(project=project, name=name), False
    audit_event_record(
        project_id=project.pk,
        kind=EventKind.AGENT_REGISTERED,
        actor=actor,
        payload={"agent": str(agent.pk), **_agent_snapshot(agent)},
    )
    audit_log_record(
        project_id=project.pk,
        action=AuditAction.AGENT_REGISTERED,
        actor=actor,
        obj=agent,
    )
    return agent, True


def _check_agent_parent(agent: Agent, parent: Agent | None) -> None:
    seen = {agent.pk}
    node = parent
    while node is not None:
        if node.pk in seen:
            raise ValidationError({"parent": "An agent cannot be its own ancestor."})
        seen.add(node.pk)
        node = node.parent


@journaled()
def agent_update(*, agent: Agent, actor: Actor = SYSTEM, **fields: Any) -> Agent:
    """Change an agent's descriptive fields or status."""
    unknown = set(fields) - set(AGENT_UPDATABLE_FIELDS)
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be changed."))
    before = _agent_snapshot(agent) | {"status": agent.status}
    if "parent" in fields:
        parent = resolve(
            Agent, project=agent.project, field="parent", value=fields.pop("parent")
        )
        _check_agent_parent(agent, parent)
        agent.parent = parent
    for name in ("capabilities",):
        if name in fields:
            fields[name] = json_list(fields[name], field=name)
    for name in ("config", "metadata"):
        if name in fields:
            fields[name] = json_object(fields[name], field=name)
    for name, value in fields.items():
        setattr(agent, name, value)
    clean_fields(agent)
    after = _agent_snapshot(agent) | {"status": agent.status}
    changes = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
    if not changes:
        return agent
    if "name" in changes and (
        Agent.objects.filter(project=agent.project, name=agent.name)
        .exclude(pk=agent.pk)
        .exists()
    ):
        raise ValidationError({"name": f"An agent named {agent.name} exists."})
    agent.save(update_fields=[*changes, "updated_at"])
    audit_event_record(
        project_id=agent.project_id,
        kind=EventKind.AGENT_UPDATED,
        actor=actor,
        payload={"agent": str(agent.pk), "changes": changes},
    )
    audit_log_record(
        project_id=agent.project_id,
        action=AuditAction.AGENT_UPDATED,
        actor=actor,
        obj=agent,
        changes=changes,
    )
    return agent


@journaled()
def agent_heartbeat(
    *,
    agent: Agent,
    status: str | None = None,
    details: dict | None = None,
    actor: Actor | None = None,
) -> AgentHeartbeat:
    """Record that an agent is alive, with its status and details."""
    status = status or agent.status
    if status not in AgentStatus.values:
        raise ValidationError(
            {"status": f"Choose from {', '.join(AgentStatus.values)}."}
        )
    details = json_object(details, field="details")
    now = timezone.now()
    beat = AgentHeartbeat.objects.create(
        project_id=agent.project_id,
        agent=agent,
        status=status,
        details=details,
        created_at=now,
    )
    Agent.objects.filter(pk=agent.pk).update(
        status=status, last_heartbeat_at=now, updated_at=now
    )
    agent.status, agent.last_heartbeat_at, agent.updated_at = status, now, now
    audit_event_record(
        project_id=agent.project_id,
        kind=EventKind.AGENT_HEARTBEAT,
        actor=actor or agent_actor(agent),
        payload={"agent": str(agent.pk), "status": status, "details": details},
        occurred_at=now,
    )
    return beat


# Workflows ----------------------------------------------------------------


@journaled()
def workflow_create(
    *,
    project: Project,
    name: str,
    description: str = "",
    metadata: dict | None = None,
    workflow_id: uuid.UUID | str | None = None,
    actor: Actor = SYSTEM,
) -> tuple[Workflow, bool]:
    """Create a workflow by name; an existing name returns that workflow."""
    existing = Workflow.objects.filter(project=project, name=name).first()
    if existing is not None:
        return existing, False
    workflow = Workflow(
        id=parse_uuid(workflow_id) or uuid.uuid4(),
        project=project,
        name=name,
        description=description,
        metadata=json_object(metadata, field="metadata"),
    )
    clean_fields(workflow)
    if Workflow.objects.filter(pk=workflow.pk).exists():
        raise IdempotencyConflict(
            f"A workflow with id {workflow.pk} exists under another name."
        )
    try:
        with transaction.atomic():
            workflow.save(force_insert=True)
    except IntegrityError:
        # A concurrent create of the same name won the race.
        return Workflow.objects.get(project=project, name=name), False
    audit_event_record(
        project_id=project.pk,
        kind=EventKind.WORKFLOW_CREATED,
        actor=actor,
        payload={"workflow": str(workflow.pk), "name": name},
    )
    return workflow, True


# Tasks --------------------------------------------------------------------


def _task_snapshot(task: Task, *, agents: list[Agent], depends_on: list[Task]) -> dict:
    return {
        "title": task.title,
        "description": task.description,
        "session_id": task.session_id,
        "workflow": pk_or_none(task.workflow),
        "parent": pk_or_none(task.parent),
        "priority": task.priority,
        "assigned_agent": pk_or_none(task.assigned_agent),
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


TASK_CREATE_KEYS = frozenset(
    {
        "title",
        "task_id",
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


def _ref_key(model: type, value: Any) -> Any:
    """The pk a reference names, or the raw value when it is not a UUID."""
    if isinstance(value, model):
        return value.pk
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return value


def _ref(
    model: type, found: dict, *, field: str, value: Any, earlier: dict | None = None
) -> Any:
    # The same answers as swarmsite.validation.resolve, from prefetched rows.
    if value is None or value == "":
        return None
    pk = _ref_key(model, value)
    obj = (earlier or {}).get(pk) or found.get(pk)
    if obj is None:
        name = model._meta.verbose_name
        shown = value.pk if isinstance(value, model) else value
        raise ValidationError({field: f"No {name} {shown} in this project."})
    return obj


def _refs(
    model: type, found: dict, *, field: str, values: Any, earlier: dict | None = None
) -> list:
    # The same answers as swarmsite.validation.resolve_many.
    if values is None:
        return []
    if not isinstance(values, list | tuple | set):
        raise ValidationError({field: "Must be a list of ids."})
    pks = list(dict.fromkeys(_ref_key(model, v) for v in values))
    if any(not isinstance(pk, uuid.UUID) for pk in pks):
        raise ValidationError({field: "Every item must be a UUID."})
    earlier = earlier or {}
    objs = {pk: earlier.get(pk) or found.get(pk) for pk in pks}
    missing = [str(pk) for pk, obj in objs.items() if obj is None]
    if missing:
        name = model._meta.verbose_name_plural
        raise ValidationError(
            {field: f"No {name} {', '.join(missing)} in this project."}
        )
    return list(objs.values())


def _fetch(model: type, project: Project, keys: set) -> dict:
    pks = [k for k in keys if isinstance(k, uuid.UUID)]
    if not pks:
        return {}
    return {o.pk: o for o in model.objects.filter(project=project, pk__in=pks)}


@journaled()
def task_create_many(
    *, project: Project, tasks: list[dict[str, Any]], actor: Actor = SYSTEM
) -> list[tuple[Task, bool]]:
    """Create pending tasks in order with bulk INSERTs; repeated ids return them.

    Each item takes task_create's arguments; a task may name an earlier one
    of the list as its parent or dependency. Raises on the first bad item,
    having written nothing.
    """
    for spec in tasks:
        unknown = set(spec) - TASK_CREATE_KEYS
        if unknown:
            raise ValidationError(dict.fromkeys(sorted(unknown), "Unknown field."))
    agent_keys: set = set()
    task_keys: set = set()
    workflow_keys: set = set()
    for spec in tasks:
        workflow_keys.add(_ref_key(Workflow, spec.get("workflow")))
        agent_keys.add(_ref_key(Agent, spec.get("assigned_agent")))
        task_keys.add(_ref_key(Task, spec.get("parent")))
        for name, keys, model in (
            ("agents", agent_keys, Agent),
            ("depends_on", task_keys, Task),
        ):
            if isinstance(spec.get(name), list | tuple | set):
                keys.update(_ref_key(model, v) for v in spec[name])
    workflows = _fetch(Workflow, project, workflow_keys)
    agents = _fetch(Agent, project, agent_keys)
    referenced = _fetch(Task, project, task_keys)

    pks = [parse_uuid(spec.get("task_id")) or uuid.uuid4() for spec in tasks]
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
        priority = spec.get("priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ValidationError({"priority": "Must be a whole number."})
        task = Task(
            id=pk,
            project=project,
            title=spec.get("title", ""),
            description=spec.get("description", ""),
            session_id=spec.get("session_id", ""),
            workflow=_ref(
                Workflow, workflows, field="workflow", value=spec.get("workflow")
            ),
            parent=_ref(
                Task,
                referenced,
                field="parent",
                value=spec.get("parent"),
                earlier=earlier,
            ),
            priority=priority,
            assigned_agent=_ref(
                Agent, agents, field="assigned_agent", value=spec.get("assigned_agent")
            ),
            input=spec.get("input"),
            metadata=json_object(spec.get("metadata"), field="metadata"),
            files_touched=json_list(spec.get("files_touched"), field="files_touched"),
        )
        involved = _refs(Agent, agents, field="agents", values=spec.get("agents"))
        if task.assigned_agent is not None and task.assigned_agent not in involved:
            involved.append(task.assigned_agent)
        dep_ids = spec.get("depends_on") or []
        if any(str(d) == str(pk) for d in dep_ids):
            raise ValidationError({"depends_on": "A task cannot depend on itself."})
        deps = _refs(
            Task, referenced, field="depends_on", values=dep_ids, earlier=earlier
        )
        clean_fields(task)
        snapshot = _task_snapshot(task, agents=involved, depends_on=deps)
        existing = earlier.get(pk) or stored.get(pk)
        if existing is not None:
            if existing.project_id != project.pk:
                raise IdempotencyConflict(f"The id {pk} is taken.")
            if pk not in snapshots:
                snapshots[pk] = _stored_task_snapshot(existing)
            check_same(snapshots[pk], snapshot, what="task", grown=("agents",))
            earlier[pk] = existing
            results.append((existing, False))
            continue
        earlier[pk] = task
        snapshots[pk] = snapshot
        new.append((task, involved, deps))
        results.append((task, True))
    if not new:
        return results

    Task.objects.bulk_create([task for task, _, _ in new])
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
    description: str = "",
    session_id: str = "",
    workflow: Workflow | uuid.UUID | str | None = None,
    parent: Task | uuid.UUID | str | None = None,
    priority: int = 0,
    assigned_agent: Agent | uuid.UUID | str | None = None,
    agents: list | None = None,
    depends_on: list | None = None,
    input: Any = None,
    metadata: dict | None = None,
    files_touched: list | None = None,
    actor: Actor = SYSTEM,
) -> tuple[Task, bool]:
    """Create a pending task; a repeated id with the same body returns it."""
    spec = {
        "title": title,
        "task_id": task_id,
        "description": description,
        "session_id": session_id,
        "workflow": workflow,
        "parent": parent,
        "priority": priority,
        "assigned_agent": assigned_agent,
        "agents": agents,
        "depends_on": depends_on,
        "input": input,
        "metadata": metadata,
        "files_touched": files_touched,
    }
    return task_create_many(project=project, tasks=[spec], actor=actor)[0]


@journaled()
def task_update(*, task: Task, actor: Actor = SYSTEM, **fields: Any) -> Task:
    """Change a task's descriptive fields; bumps its version."""
    unknown = set(fields) - set(TASK_UPDATABLE_FIELDS)
    if unknown:
        raise ValidationError(
            dict.fromkeys(unknown, "This field cannot be changed here.")
        )
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
    if "priority" in fields and (
        isinstance(fields["priority"], bool) or not isinstance(fields["priority"], int)
    ):
        raise ValidationError({"priority": "Must be a whole number."})
    for name, value in fields.items():
        setattr(task, name, value)
    if task.assigned_agent is not None and task.assigned_agent not in involved:
        involved = [*involved, task.assigned_agent]
    clean_fields(task)
    after = _task_snapshot(task, agents=involved, depends_on=[])
    changes = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
    if not changes:
        return task
    now = timezone.now()
    columns = [k for k in changes if k != "agents"]
    updated = Task.objects.filter(pk=task.pk, version=task.version).update(
        **{k: getattr(task, k) for k in columns},
        version=F("version") + 1,
        updated_at=now,
    )
    if not updated:
        actual = (
            Task.objects.filter(pk=task.pk).values_list("version", flat=True).first()
        )
        raise VersionConflict(expected=task.version, actual=actual)
    task.version += 1
    task.updated_at = now
    if "agents" in changes:
        task.agents.set(involved)
    audit_event_record(
        project_id=task.project_id,
        kind=EventKind.TASK_UPDATED,
        actor=actor,
        task_id=task.pk,
        payload={"task": str(task.pk), "version": task.version, "changes": changes},
    )
    audit_log_record(
        project_id=task.project_id,
        action=AuditAction.TASK_UPDATED,
        actor=actor,
        obj=task,
        changes=changes,
    )
    return task


@journaled()
def task_transition(
    *,
    task: Task,
    status: str,
    expected_version: int | None = None,
    result: Any = None,
    result_summary: str | None = None,
    error: str | None = None,
    actor: Actor = SYSTEM,
) -> Task:
    """Move a task along its lifecycle with one conditional UPDATE.

    Of several concurrent conflicting transitions exactly one wins; the others
    raise IllegalTransition or VersionConflict and change nothing.
    """
    if status not in TaskStatus.values:
        raise ValidationError(
            {"status": f"Choose from {', '.join(TaskStatus.values)}."}
        )
    if expected_version is not None and (
        isinstance(expected_version, bool) or not isinstance(expected_version, int)
    ):
        raise ValidationError({"expected_version": "Must be a whole number."})
    current = (
        Task.objects.filter(pk=task.pk)
        .values("status", "version", "started_at")
        .first()
    )
    if current is None:
        raise NotFound(f"Task {task.pk} does not exist.")
    if expected_version is not None and expected_version != current["version"]:
        raise VersionConflict(expected=expected_version, actual=current["version"])
    if status not in TASK_TRANSITIONS[current["status"]]:
        raise IllegalTransition(current=current["status"], requested=status)
    now = timezone.now()
    values: dict[str, Any] = {"status": status, "updated_at": now}
    if status == TaskStatus.RUNNING:
        # The stored value, not the caller's copy: a retry keeps the first start.
        values["started_at"] = current["started_at"] or now
    if status in TERMINAL_STATUSES:
        values["completed_at"] = now
    if status == TaskStatus.COMPLETED:
        values["progress"] = 100
    if status == TaskStatus.QUEUED and current["status"] in TERMINAL_STATUSES:
        values.update(completed_at=None, error="")
    if result is not None:
        values["result"] = result
    if result_summary is not None:
        values["result_summary"] = result_summary
    if error is not None:
        values["error"] = error
    updated = Task.objects.filter(
        pk=task.pk, version=current["version"], status=current["status"]
    ).update(**values, version=F("version") + 1)
    if not updated:
        # Another writer committed first: report what the caller now faces.
        latest = Task.objects.filter(pk=task.pk).values("status", "version").first()
        if latest is not None and status not in TASK_TRANSITIONS[latest["status"]]:
            raise IllegalTransition(current=latest["status"], requested=status)
        raise VersionConflict(
            expected=current["version"], actual=latest and latest["version"]
        )
    for name, value in values.items():
        setattr(task, name, value)
    task.version = current["version"] + 1
    payload = {
        "task": str(task.pk),
        "from": current["status"],
        "to": status,
        "version": task.version,
    }
    if result_summary:
        payload["result_summary"] = result_summary
    if error:
        payload["error"] = error
    audit_event_record(
        project_id=task.project_id,
        kind=EventKind.TASK_STATUS_CHANGED,
        actor=actor,
        task_id=task.pk,
        payload=payload,
        occurred_at=now,
    )
    audit_log_record(
        project_id=task.project_id,
        action=AuditAction.TASK_STATUS_CHANGED,
        actor=actor,
        obj=task,
        changes={"status": [current["status"], status]},
    )
    return task


@journaled()
def task_progress_set(*, task: Task, progress: int, actor: Actor = SYSTEM) -> Task:
    """Set a running task's progress (0-100); does not bump its version."""
    if (
        isinstance(progress, bool)
        or not isinstance(progress, int)
        or not 0 <= progress <= 100
    ):
        raise ValidationError({"progress": "Must be a whole number from 0 to 100."})
    now = timezone.now()
    updated = (
        Task.objects.filter(pk=task.pk)
        .exclude(status__in=TERMINAL_STATUSES)
        .update(progress=progress, updated_at=now)
    )
    if not updated:
        status = (
            Task.objects.filter(pk=task.pk).values_list("status", flat=True).first()
        )
        raise Conflict(f"The task is {status}; its progress can no longer change.")
    previous = task.progress
    task.progress, task.updated_at = progress, now
    audit_event_record(
        project_id=task.project_id,
        kind=EventKind.TASK_PROGRESS,
        actor=actor,
        task_id=task.pk,
        payload={"task": str(task.pk), "progress": progress, "previous": previous},
        occurred_at=now,
    )
    return task


def _lock_project_graph(project: Project) -> None:
    # Serialises dependency changes per project: two concurrent edges could
    # otherwise close a cycle that neither transaction sees.
    list(
        Project.objects.select_for_update(no_key=True)
        .filter(pk=project.pk)
        .values("pk")
    )


def _reaches(start: uuid.UUID, target: uuid.UUID) -> bool:
    """Whether `target` is reachable from `start` along depends_on edges."""
    seen = {start}
    frontier = {start}
    while frontier:
        if target in frontier:
            return True
        nxt = set(
            TaskDependency.objects.filter(task_id__in=frontier).values_list(
                "depends_on_id", flat=True
            )
        )
        frontier = nxt - seen
        seen |= nxt
    return False


@journaled()
def task_dependency_add(
    *, task: Task, depends_on: Task | uuid.UUID | str, actor: Actor = SYSTEM
) -> TaskDependency:
    """Make `task` wait for `depends_on`; refuses an edge that closes a cycle."""
    _lock_project_graph(task.project)
    other = resolve(Task, project=task.project, field="depends_on", value=depends_on)
    if other.pk == task.pk:
        raise ValidationError({"depends_on": "A task cannot depend on itself."})
    existing = TaskDependency.objects.filter(task=task, depends_on=other).first()
    if existing is not None:
        return existing
    if _reaches(other.pk, task.pk):
        raise ValidationError(
            {"depends_on": f"Task {other.pk} already depends on {task.pk}: a cycle."}
        )
    edge = TaskDependency.objects.create(task=task, depends_on=other)
    audit_event_record(
        project_id=task.project_id,
        kind=EventKind.TASK_DEPENDENCY_ADDED,
        actor=actor,
        task_id=task.pk,
        payload={"task": str(task.pk), "depends_on": str(other.pk)},
    )
    return edge


@journaled()
def task_dependency_remove(
    *, task: Task, depends_on: Task | uuid.UUID | str, actor: Actor = SYSTEM
) -> bool:
    """Remove an edge; True when one was removed."""
    other = resolve(Task, project=task.project, field="depends_on", value=depends_on)
    deleted, _ = TaskDependency.objects.filter(task=task, depends_on=other).delete()
    if deleted:
        audit_event_record(
            project_id=task.project_id,
            kind=EventKind.TASK_DEPENDENCY_REMOVED,
            actor=actor,
            task_id=task.pk,
            payload={"task": str(task.pk), "depends_on": str(other.pk)},
        )
    return bool(deleted)


def task_rollup_add(
    *,
    task_id: uuid.UUID,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    cached_tokens: int = 0,
    cost: Decimal = Decimal(0),
) -> None:
    """Add usage to a task's totals in one UPDATE (callers hold a transaction)."""
    if not (prompt_tokens or completion_tokens or cached_tokens or cost):
        return
    Task.objects.filter(pk=task_id).update(
        prompt_tokens=F("prompt_tokens") + prompt_tokens,
        completion_tokens=F("completion_tokens") + completion_tokens,
        cached_tokens=F("cached_tokens") + cached_tokens,
        cost=F("cost") + cost,
    )


# Runs ---------------------------------------------------------------------


def _run_snapshot(run: AgentRun) -> dict[str, Any]:
    return {
        "task": pk_or_none(run.task),
        "agent": pk_or_none(run.agent),
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


@journaled()
def run_create_many(
    *, project: Project, runs: list[dict[str, Any]], actor: Actor = SYSTEM
) -> list[tuple[AgentRun, bool]]:
    """Start runs with one bulk INSERT; usage rolls up into their tasks.

    Each item takes run_create's arguments. A repeated id with the same body
    returns the stored run. Raises on the first bad item, having written
    nothing.
    """
    for spec in runs:
        unknown = set(spec) - RUN_CREATE_KEYS
        if unknown:
            raise ValidationError(dict.fromkeys(sorted(unknown), "Unknown field."))
    tasks = _fetch(Task, project, {_ref_key(Task, s.get("task")) for s in runs})
    agents = _fetch(Agent, project, {_ref_key(Agent, s.get("agent")) for s in runs})
    pks = [parse_uuid(spec.get("run_id")) or uuid.uuid4() for spec in runs]
    known = {r.pk: r for r in AgentRun.objects.filter(pk__in=pks)}
    now = timezone.now()
    results: list[tuple[AgentRun, bool]] = []
    new: list[AgentRun] = []
    for pk, spec in zip(pks, runs, strict=True):
        status = spec.get("status", RunStatus.STARTED)
        if status not in RunStatus.values:
            raise ValidationError(
                {"status": f"Choose from {', '.join(RunStatus.values)}."}
            )
        task = _ref(Task, tasks, field="task", value=spec.get("task"))
        if task is None:
            raise ValidationError({"task": "This field is required."})
        run = AgentRun(
            id=pk,
            project=project,
            task=task,
            agent=_ref(Agent, agents, field="agent", value=spec.get("agent")),
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
            started_at=spec.get("started_at") or now,
            ended_at=now if status in RUN_TERMINAL_STATUSES else None,
        )
        clean_fields(run)
        stored = known.get(pk)
        if stored is not None:
            if stored.project_id != project.pk:
                raise IdempotencyConflict(f"The id {pk} is taken.")
            check_same(_run_snapshot(stored), _run_snapshot(run), what="run")
            results.append((stored, False))
            continue
        known[pk] = run
        new.append(run)
        results.append((run, True))
    if not new:
        return results

    AgentRun.objects.bulk_create(new)
    usage: dict[uuid.UUID, list] = {}
    for run in new:
        total = usage.setdefault(run.task_id, [0, 0, 0, Decimal(0)])
        total[0] += run.prompt_tokens
        total[1] += run.completion_tokens
        total[2] += run.cached_tokens
        total[3] += run.cost
    for task_id, (prompt, completion, cached, cost) in usage.items():
        task_rollup_add(
            task_id=task_id,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=cached,
            cost=cost,
        )
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
def run_update(*, run: AgentRun, actor: Actor = SYSTEM, **fields: Any) -> AgentRun:
    """Report a run's progress or outcome; usage is absolute, rolled up by delta."""
    unknown = set(fields) - set(RUN_UPDATABLE_FIELDS)
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be changed."))
    run = AgentRun.objects.select_for_update().select_related("task").get(pk=run.pk)
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
    if not changes:
        return run
    update_fields = [k for k in changes if k not in ("task", "agent")]
    if run.status in RUN_TERMINAL_STATUSES and run.ended_at is None:
        run.ended_at = timezone.now()
        update_fields.append("ended_at")
    run.save(update_fields=[*update_fields, "updated_at"])
    task_rollup_add(
        task_id=run.task_id,
        prompt_tokens=run.prompt_tokens - old_usage[0],
        completion_tokens=run.completion_tokens - old_usage[1],
        cached_tokens=run.cached_tokens - old_usage[2],
        cost=run.cost - old_usage[3],
    )
    audit_event_record(
        project_id=run.project_id,
        kind=EventKind.RUN_UPDATED,
        actor=actor,
        task_id=run.task_id,
        payload=_run_payload(run) | {"changes": sorted(changes)},
    )
    return run
