import uuid

from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils import timezone

from swarmsite.actors import ActorType
from swarmsite.models import Project

# Every EventKind starts with one of these, so clients cannot forge them.
RESERVED_EVENT_PREFIXES = (
    "task.",
    "message.",
    "run.",
    "agent.",
    "conversation.",
    "workflow.",
    "memory.",
)


class EventKind(models.TextChoices):
    """Kinds the services emit; custom events use any other dotted name."""

    AGENT_REGISTERED = "agent.registered"
    AGENT_UPDATED = "agent.updated"
    AGENT_HEARTBEAT = "agent.heartbeat"
    WORKFLOW_CREATED = "workflow.created"
    WORKFLOW_UPDATED = "workflow.updated"
    WORKFLOW_CANCELLED = "workflow.cancelled"
    TASK_CREATED = "task.created"
    TASK_UPDATED = "task.updated"
    TASK_STATUS_CHANGED = "task.status_changed"
    TASK_PROGRESS = "task.progress"
    TASK_DEPENDENCY_ADDED = "task.dependency_added"
    TASK_DEPENDENCY_REMOVED = "task.dependency_removed"
    TASK_LEASE_EXPIRED = "task.lease_expired"
    TASK_LEASE_EXTENDED = "task.lease_extended"
    RUN_STARTED = "run.started"
    RUN_UPDATED = "run.updated"
    CONVERSATION_CREATED = "conversation.created"
    CONVERSATION_UPDATED = "conversation.updated"
    MESSAGE_CREATED = "message.created"
    MESSAGE_REVISED = "message.revised"
    MESSAGE_UPDATED = "message.updated"
    CONVERSATION_PARTICIPANT_JOINED = "conversation.participant_joined"
    CONVERSATION_PARTICIPANT_UPDATED = "conversation.participant_updated"
    CONVERSATION_PARTICIPANT_LEFT = "conversation.participant_left"
    CONVERSATION_READ = "conversation.read"
    MEMORY_CREATED = "memory.created"
    MEMORY_UPDATED = "memory.updated"
    MEMORY_DELETED = "memory.deleted"


class JournalHead(models.Model):
    """Per-project counters: last event position and the audit chain's tip.

    Locked as the last step of every writing transaction, so positions follow
    commit order with no gap (see DESIGN.md section 5).
    """

    project = models.OneToOneField(
        Project, on_delete=models.CASCADE, primary_key=True, related_name="journal"
    )
    last_position = models.BigIntegerField(default=0)
    audit_seq = models.BigIntegerField(default=0)
    audit_hash = models.CharField(max_length=64, default="")
    audit_anchor_seq = models.BigIntegerField(
        default=0, help_text="Last audit seq pruned; the chain restarts after it."
    )
    audit_anchor_hash = models.CharField(max_length=64, default="")

    class Meta:
        verbose_name = "journal head"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(last_position__gte=0, audit_seq__gte=0),
                name="journalhead_counters_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project_id}: position {self.last_position}"


class Event(models.Model):
    """One append-only entry of a project's event log; streams replay it."""

    id = models.BigAutoField(primary_key=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    project = models.ForeignKey(
        Project, on_delete=models.PROTECT, related_name="+", editable=False
    )
    position = models.BigIntegerField(editable=False)
    kind = models.CharField(max_length=100, editable=False)
    task_id = models.UUIDField(null=True, blank=True, editable=False)
    conversation_id = models.UUIDField(null=True, blank=True, editable=False)
    actor_type = models.CharField(
        max_length=16,
        choices=ActorType.choices,
        default=ActorType.SYSTEM,
        editable=False,
    )
    actor_id = models.CharField(max_length=64, blank=True, editable=False)
    actor_label = models.CharField(max_length=200, blank=True, editable=False)
    correlation_id = models.CharField(max_length=64, blank=True, editable=False)
    payload = models.JSONField(default=dict, blank=True, editable=False)
    occurred_at = models.DateTimeField(default=timezone.now, editable=False)
    recorded_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "position"], name="event_position_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(position__gt=0), name="event_position_positive"
            ),
        ]
        indexes = [
            models.Index(
                fields=["project", "task_id", "position"], name="event_task_pos_idx"
            ),
            models.Index(
                fields=["project", "conversation_id", "position"],
                name="event_conv_pos_idx",
            ),
            models.Index(
                fields=["project", "kind", "position"], name="event_kind_pos_idx"
            ),
            models.Index(fields=["occurred_at"], name="event_occurred_idx"),
            # The admin's kind filter spans projects, newest first.
            models.Index(fields=["kind", "-id"], name="event_kind_id_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.position} {self.kind}"


# Actions the services and the request middleware record; clients cannot.
RESERVED_AUDIT_PREFIXES = (*RESERVED_EVENT_PREFIXES, "api.", "apikey.", "project.")


class AuditAction(models.TextChoices):
    """Well-known actions; clients may record others (dotted names)."""

    API_REQUEST = "api.request"
    TOOL_INVOKE = "tool.invoke"
    FILE_READ = "file.read"
    FILE_WRITE = "file.write"
    ERROR = "error"
    TASK_CREATED = "task.created"
    TASK_UPDATED = "task.updated"
    TASK_STATUS_CHANGED = "task.status_changed"
    AGENT_REGISTERED = "agent.registered"
    AGENT_UPDATED = "agent.updated"
    MESSAGE_REVISED = "message.revised"
    MESSAGE_UPDATED = "message.updated"
    MEMORY_CREATED = "memory.created"
    MEMORY_UPDATED = "memory.updated"
    MEMORY_DELETED = "memory.deleted"
    APIKEY_CREATED = "apikey.created"
    APIKEY_REVOKED = "apikey.revoked"
    PROJECT_CREATED = "project.created"


class AuditLog(models.Model):
    """Append-only, hash-chained record of who did what, when, from where."""

    id = models.BigAutoField(primary_key=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    project = models.ForeignKey(
        Project, on_delete=models.PROTECT, related_name="+", editable=False
    )
    seq = models.BigIntegerField(editable=False)
    prev_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, editable=False)
    actor_type = models.CharField(
        max_length=16,
        choices=ActorType.choices,
        default=ActorType.SYSTEM,
        editable=False,
    )
    actor_id = models.CharField(max_length=64, blank=True, editable=False)
    actor_label = models.CharField(max_length=200, blank=True, editable=False)
    action = models.CharField(max_length=100, editable=False)
    target = models.CharField(max_length=500, blank=True, editable=False)
    content_type = models.ForeignKey(
        ContentType,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
        db_constraint=False,
    )
    object_id = models.CharField(max_length=64, blank=True, editable=False)
    object_repr = models.CharField(max_length=200, blank=True, editable=False)
    request_id = models.CharField(max_length=64, blank=True, editable=False)
    method = models.CharField(max_length=10, blank=True, editable=False)
    path = models.CharField(max_length=500, blank=True, editable=False)
    status_code = models.PositiveSmallIntegerField(
        null=True, blank=True, editable=False
    )
    success = models.BooleanField(default=True, editable=False)
    duration_ms = models.FloatField(null=True, blank=True, editable=False)
    ip = models.GenericIPAddressField(null=True, blank=True, editable=False)
    user_agent = models.CharField(max_length=500, blank=True, editable=False)
    error = models.TextField(blank=True, editable=False)
    details = models.JSONField(default=dict, blank=True, editable=False)
    changes = models.JSONField(default=dict, blank=True, editable=False)
    occurred_at = models.DateTimeField(default=timezone.now, editable=False)
    recorded_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-id"]
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log"
        constraints = [
            models.UniqueConstraint(
                fields=["project", "seq"], name="auditlog_seq_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(seq__gt=0), name="auditlog_seq_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(duration_ms__isnull=True)
                | models.Q(duration_ms__gte=0),
                name="auditlog_duration_non_negative",
            ),
        ]
        indexes = [
            models.Index(
                fields=["project", "action", "-occurred_at"], name="auditlog_action_idx"
            ),
            models.Index(
                fields=["project", "actor_id", "-occurred_at"],
                name="auditlog_actor_idx",
            ),
            models.Index(
                fields=["project", "-occurred_at"], name="auditlog_occurred_idx"
            ),
            # `?success=false`: failures are rare, so a partial index stays small.
            models.Index(
                fields=["project", "-occurred_at"],
                condition=models.Q(success=False),
                name="auditlog_failed_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.target}".strip()


class DeletionGrant(models.Model):
    """While a row exists in a transaction, append-only triggers allow deletes.

    Pruning and `flush` insert one inside their own transaction and never
    commit it, so no other connection ever sees it.
    """

    reason = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "deletion grant"

    def __str__(self) -> str:
        return self.reason
