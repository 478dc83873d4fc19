"""Admin of agents, workflows, tasks and runs; writes go through tasks.services.

A package by entity; importing it registers every admin.
"""

from tasks.admin.agents import AgentAdmin, AgentHeartbeatAdmin, HeartbeatInline
from tasks.admin.runs import AgentRunAdmin
from tasks.admin.tasks import (
    TASK_BIG_FIELDS,
    DependencyInline,
    RunInline,
    SubtaskInline,
    TaskAdmin,
    TaskDependencyAdmin,
    TaskForm,
)
from tasks.admin.workflows import WorkflowAdmin

__all__ = [
    "TASK_BIG_FIELDS",
    "AgentAdmin",
    "AgentHeartbeatAdmin",
    "AgentRunAdmin",
    "DependencyInline",
    "HeartbeatInline",
    "RunInline",
    "SubtaskInline",
    "TaskAdmin",
    "TaskDependencyAdmin",
    "TaskForm",
    "WorkflowAdmin",
]
