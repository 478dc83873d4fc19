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
from tasks.services.dependencies import task_dependency_add, task_dependency_remove
from tasks.services.runs import (
    RUN_CREATE_KEYS,
    RUN_UPDATABLE_FIELDS,
    run_create,
    run_create_many,
    run_update,
)
from tasks.services.tasks import (
    TASK_CREATE_KEYS,
    TASK_UPDATABLE_FIELDS,
    task_create,
    task_create_many,
    task_progress_set,
    task_retry,
    task_rollup_add,
    task_transition,
    task_update,
)
from tasks.services.workflows import workflow_create

__all__ = [
    "AGENT_UPDATABLE_FIELDS",
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
    "run_update",
    "task_create",
    "task_create_many",
    "task_dependency_add",
    "task_dependency_remove",
    "task_progress_set",
    "task_retry",
    "task_rollup_add",
    "task_transition",
    "task_update",
    "workflow_create",
]
