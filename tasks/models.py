import uuid

from django.db import models
from django.utils import timezone

from swarmsite.models import Project, TimeStampedModel


class AgentStatus(models.TextChoices):
    IDLE = "idle", "Idle"
    BUSY = "busy", "Busy"
    WAITING = "waiting", "Waiting"
    OFFLINE = "offline", "Offline"
    ERROR = "error", "Error"


class TaskStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_STATUSES = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED}
)

# The lifecycle of DESIGN.md section 4; retry is failed/cancelled -> queued.
TASK_TRANSITIONS: dict[str, frozenset[str]] = {
    TaskStatus.PENDING: frozenset(
        {TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.CANCELLED}
    ),
    TaskStatus.QUEUED: frozenset({TaskStatus.RUNNING, TaskStatus.CANCELLED}),
    TaskStatus.RUNNING: frozenset(
        {
            TaskStatus.WAITING,
            TaskStatus.COMPLETED,
            TaskStatus.FAILED,
            TaskStatus.CANCELLED,
        }
    ),
    TaskStatus.WAITING: frozenset({TaskStatus.RUNNING, TaskStatus.CANCELLED}),
    TaskStatus.COMPLETED: frozenset(),
    TaskStatus.FAILED: frozenset({TaskStatus.QUEUED}),
    TaskStatus.CANCELLED: frozenset({TaskStatus.QUEUED}),
}


class RunStatus(models.TextChoices):
    STARTED = "started", "Started"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


RUN_TERMINAL_STATUSES = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED}
)


def _choices_check(field: str, choices: type[models.TextChoices], name: str):
    return models.CheckConstraint(
        condition=models.Q(**{f"{field}__in": choices.values}), name=name
    )


class Agent(TimeStampedModel):
    """An AI agent of a project: a planner, worker, reviewer or tool user."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="agents"
    )
    name = models.CharField(max_length=200)
    role = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=200, blank=True)
    parent = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="children",
    )
    status = models.CharField(
        max_length=16, choices=AgentStatus.choices, default=AgentStatus.IDLE
    )
    capabilities = models.JSONField(default=list, blank=True)
    config = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Roll-ups kept current by the services with F() updates (see
    # tasks.services.rollups): they describe the rows that are stored, so
    # pruning subtracts what it deletes.
    tasks_completed = models.PositiveIntegerField(
        default=0, db_default=0, editable=False
    )
    tasks_failed = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    runs_count = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    messages_count = models.PositiveIntegerField(
        default=0, db_default=0, editable=False
    )
    prompt_tokens = models.BigIntegerField(default=0, db_default=0, editable=False)
    completion_tokens = models.BigIntegerField(default=0, db_default=0, editable=False)
    cached_tokens = models.BigIntegerField(default=0, db_default=0, editable=False)
    cost = models.DecimalField(
        max_digits=16, decimal_places=6, default=0, db_default=0, editable=False
    )
    # avg_latency_ms = latency_total_ms / latency_count (messages with a latency).
    latency_total_ms = models.FloatField(default=0, db_default=0.0, editable=False)
    latency_count = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    last_active_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name"], name="agent_name_unique_in_project"
            ),
            models.CheckConstraint(
                condition=models.Q(
                    prompt_tokens__gte=0,
                    completion_tokens__gte=0,
                    cached_tokens__gte=0,
                    cost__gte=0,
                ),
                name="agent_rollups_non_negative",
            ),
            _choices_check("status", AgentStatus, "agent_status_valid"),
            models.CheckConstraint(
                condition=~models.Q(parent=models.F("id")), name="agent_not_own_parent"
            ),
        ]
        indexes = [
            models.Index(fields=["project", "role"], name="agent_role_idx"),
            models.Index(fields=["project", "status"], name="agent_status_idx"),
            models.Index(fields=["project", "parent"], name="agent_parent_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def avg_latency_ms(self) -> float | None:
        if not self.latency_count:
            return None
        return self.latency_total_ms / self.latency_count


class AgentHeartbeat(models.Model):
    """One health report of an agent: its status and free-form details."""

    id = models.BigAutoField(primary_key=True)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey(
        Agent, on_delete=models.CASCADE, related_name="heartbeats"
    )
    status = models.CharField(max_length=16, choices=AgentStatus.choices)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        constraints = [_choices_check("status", AgentStatus, "heartbeat_status_valid")]
        indexes = [
            models.Index(fields=["agent", "-created_at"], name="heartbeat_agent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.agent_id} {self.status} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class Workflow(TimeStampedModel):
    """A named group of tasks that belong to one piece of work."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="workflows"
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # Roll-ups of the workflow's stored tasks, kept current with F() updates.
    tasks_pending = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    tasks_queued = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    tasks_running = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    tasks_waiting = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    tasks_completed = models.PositiveIntegerField(
        default=0, db_default=0, editable=False
    )
    tasks_failed = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    tasks_cancelled = models.PositiveIntegerField(
        default=0, db_default=0, editable=False
    )
    prompt_tokens = models.BigIntegerField(default=0, db_default=0, editable=False)
    completion_tokens = models.BigIntegerField(default=0, db_default=0, editable=False)
    cached_tokens = models.BigIntegerField(default=0, db_default=0, editable=False)
    cost = models.DecimalField(
        max_digits=16, decimal_places=6, default=0, db_default=0, editable=False
    )
    # SHA-256 of the body that created the row: replays are judged by it.
    create_digest = models.CharField(
        max_length=64, blank=True, db_default="", editable=False
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name"], name="workflow_name_unique_in_project"
            ),
            models.CheckConstraint(
                condition=models.Q(
                    prompt_tokens__gte=0,
                    completion_tokens__gte=0,
                    cached_tokens__gte=0,
                    cost__gte=0,
                ),
                name="workflow_rollups_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def status_counts(self) -> dict[str, int]:
        return {s: getattr(self, f"tasks_{s}") for s in TaskStatus.values}

    @property
    def tasks_total(self) -> int:
        return sum(self.status_counts().values())

    @property
    def status(self) -> str:
        return workflow_status(self.status_counts())


class WorkflowStatus(models.TextChoices):
    OPEN = "open", "Open"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


def workflow_status(counts: dict[str, int]) -> str:
    """A workflow's status from its tasks' counts by status.

    `open` while it has no task or any task is unfinished; once every task
    is finished: `failed` if any failed, else `cancelled` if any was
    cancelled, else `completed` (every task completed).
    """
    if not any(counts.values()) or any(
        counts.get(s, 0) for s in TaskStatus.values if s not in TERMINAL_STATUSES
    ):
        return WorkflowStatus.OPEN
    if counts.get(TaskStatus.FAILED):
        return WorkflowStatus.FAILED
    if counts.get(TaskStatus.CANCELLED):
        return WorkflowStatus.CANCELLED
    return WorkflowStatus.COMPLETED


class Task(TimeStampedModel):
    """A unit of work with a status lifecycle, subtasks and dependencies."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tasks")
    # A client's own name for the task, unique in the project when not "".
    key = models.CharField(max_length=200, blank=True, default="", db_default="")
    title = models.CharField(max_length=500)
    description = models.TextField(blank=True)
    session_id = models.CharField(max_length=200, blank=True)
    workflow = models.ForeignKey(
        Workflow, on_delete=models.SET_NULL, null=True, blank=True, related_name="tasks"
    )
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="subtasks"
    )
    status = models.CharField(
        max_length=16,
        choices=TaskStatus.choices,
        default=TaskStatus.PENDING,
        editable=False,
    )
    priority = models.IntegerField(default=0)
    progress = models.PositiveSmallIntegerField(default=0, editable=False)
    assigned_agent = models.ForeignKey(
        Agent,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assigned_tasks",
    )
    agents = models.ManyToManyField(Agent, blank=True, related_name="involved_tasks")
    depends_on = models.ManyToManyField(
        "self",
        through="TaskDependency",
        symmetrical=False,
        blank=True,
        related_name="dependents",
    )
    input = models.JSONField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True, editable=False)
    result_summary = models.TextField(blank=True, editable=False)
    error = models.TextField(blank=True, editable=False)
    files_touched = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    prompt_tokens = models.BigIntegerField(default=0, editable=False)
    completion_tokens = models.BigIntegerField(default=0, editable=False)
    cached_tokens = models.BigIntegerField(default=0, editable=False)
    cost = models.DecimalField(
        max_digits=16, decimal_places=6, default=0, editable=False
    )
    version = models.PositiveIntegerField(default=1, editable=False)
    # Claims of the work queue: how many times it was taken, and until when
    # the running claimer holds it (null unless claimed and running).
    attempts = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    completed_at = models.DateTimeField(null=True, blank=True, editable=False)
    # SHA-256 of the body that created the row: replays are judged by it.
    create_digest = models.CharField(
        max_length=64, blank=True, db_default="", editable=False
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "key"],
                condition=~models.Q(key=""),
                name="task_key_unique_in_project",
            ),
            _choices_check("status", TaskStatus, "task_status_valid"),
            models.CheckConstraint(
                condition=models.Q(progress__gte=0, progress__lte=100),
                name="task_progress_0_100",
            ),
            models.CheckConstraint(
                condition=models.Q(version__gte=1), name="task_version_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(
                    prompt_tokens__gte=0,
                    completion_tokens__gte=0,
                    cached_tokens__gte=0,
                    cost__gte=0,
                ),
                name="task_rollups_non_negative",
            ),
            models.CheckConstraint(
                condition=~models.Q(parent=models.F("id")), name="task_not_own_parent"
            ),
        ]
        indexes = [
            models.Index(fields=["project", "-created_at"], name="task_created_idx"),
            models.Index(
                fields=["project", "status", "-created_at"], name="task_status_idx"
            ),
            models.Index(
                fields=["project", "assigned_agent", "-created_at"],
                name="task_assigned_idx",
            ),
            models.Index(
                fields=["project", "workflow", "-created_at"], name="task_workflow_idx"
            ),
            models.Index(
                fields=["project", "session_id", "-created_at"], name="task_session_idx"
            ),
            models.Index(
                fields=["project", "parent", "-created_at"], name="task_parent_idx"
            ),
            # The work queue: only queued rows, in claim order, so claiming
            # does not slow down as finished tasks pile up.
            models.Index(
                fields=["project", "-priority", "created_at", "id"],
                condition=models.Q(status="queued"),
                name="task_claim_idx",
            ),
            models.Index(
                fields=["project", "lease_expires_at"],
                condition=models.Q(status="running"),
                name="task_lease_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class TaskDependency(models.Model):
    """An edge of the dependency graph: `task` waits for `depends_on`."""

    id = models.BigAutoField(primary_key=True)
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="+")
    depends_on = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "task dependencies"
        constraints = [
            models.UniqueConstraint(
                fields=["task", "depends_on"], name="taskdependency_unique"
            ),
            models.CheckConstraint(
                condition=~models.Q(task=models.F("depends_on")),
                name="taskdependency_not_self",
            ),
        ]
        indexes = [
            models.Index(fields=["depends_on"], name="taskdependency_reverse_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.task_id} -> {self.depends_on_id}"


class AgentRun(TimeStampedModel):
    """One attempt of an agent at a task, with its tokens, cost and outcome."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="runs")
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="runs")
    agent = models.ForeignKey(
        Agent, on_delete=models.SET_NULL, null=True, blank=True, related_name="runs"
    )
    status = models.CharField(
        max_length=16, choices=RunStatus.choices, default=RunStatus.STARTED
    )
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    output_summary = models.TextField(blank=True)
    model = models.CharField(max_length=200, blank=True)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=16, decimal_places=6, default=0)
    error = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # SHA-256 of the body that created the row: replays are judged by it.
    create_digest = models.CharField(
        max_length=64, blank=True, db_default="", editable=False
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            _choices_check("status", RunStatus, "run_status_valid"),
            models.CheckConstraint(
                condition=models.Q(
                    prompt_tokens__gte=0,
                    completion_tokens__gte=0,
                    cached_tokens__gte=0,
                    cost__gte=0,
                ),
                name="run_usage_non_negative",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "-created_at"], name="run_created_idx"),
            models.Index(fields=["task", "-created_at"], name="run_task_idx"),
            models.Index(fields=["agent", "-created_at"], name="run_agent_idx"),
            models.Index(
                fields=["project", "status", "-created_at"], name="run_status_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.id} of {self.task_id}"
