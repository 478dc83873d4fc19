"""Every write to agents, workflows, tasks, dependencies and runs.

A package by entity; every public name is re-exported here, so callers
import from `tasks.services`.
"""

from tasks.services.agents import (
    AGENT_UPDATABLE_FIELDS,
    agent_actor,
    agent_heartbeat,
    agent_register,
    agent_update,
)
from tasks.services.dependencies import (
    task_dependencies_add,
    task_dependency_add,
    task_dependency_remove,
)
from tasks.services.lifecycle import (
    task_progress_set,
    task_retry,
    task_transition,
    task_transition_many,
)
from tasks.services.queue import (
    LEASE_DEFAULT_SECONDS,
    LEASE_MAX_SECONDS,
    blocked_expression,
    task_claim,
    task_lease_extend,
    task_leases_expire,
    task_leases_sweep,
)
from tasks.services.rollups import (
    agent_rollups_apply,
    messages_rollup,
    runs_rollup,
    tasks_rollup,
    usage_counts,
    workflow_rollups_apply,
)
from tasks.services.runs import (
    RUN_CREATE_KEYS,
    RUN_UPDATABLE_FIELDS,
    run_create,
    run_create_many,
    run_metadata_fill,
    run_metadata_fill_many,
    run_update,
)
from tasks.services.tasks import (
    TASK_CREATE_KEYS,
    TASK_UPDATABLE_FIELDS,
    task_create,
    task_create_many,
    task_rollup_add,
    task_update,
)
from tasks.services.workflows import (
    workflow_cancel,
    workflow_create,
    workflow_update,
)

__all__ = [
    "AGENT_UPDATABLE_FIELDS",
    "LEASE_DEFAULT_SECONDS",
    "LEASE_MAX_SECONDS",
    "agent_rollups_apply",
    "blocked_expression",
    "messages_rollup",
    "runs_rollup",
    "task_claim",
    "task_dependencies_add",
    "task_lease_extend",
    "task_leases_expire",
    "task_leases_sweep",
    "tasks_rollup",
    "usage_counts",
    "workflow_cancel",
    "workflow_rollups_apply",
    "workflow_update",
    "RUN_CREATE_KEYS",
    "RUN_UPDATABLE_FIELDS",
    "TASK_CREATE_KEYS",
    "TASK_UPDATABLE_FIELDS",
    "agent_actor",
    "agent_heartbeat",
    "agent_register",
    "agent_update",
    "run_create",
    "run_create_many",
    "run_metadata_fill",
    "run_metadata_fill_many",
    "run_update",
    "task_create",
    "task_create_many",
    "task_dependency_add",
    "task_dependency_remove",
    "task_progress_set",
    "task_retry",
    "task_rollup_add",
    "task_transition",
    "task_transition_many",
    "task_update",
    "workflow_create",
]
