import uuid

from django.db import models
from django.utils import timezone

from swarmsite.models import Project, TimeStampedModel
from tasks.models import Agent, Task


class ConversationStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    CLOSED = "closed", "Closed"
    ARCHIVED = "archived", "Archived"


class MessageRole(models.TextChoices):
    SYSTEM = "system", "System"
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"
    TOOL = "tool", "Tool"


class Conversation(TimeStampedModel):
    """An ordered exchange of messages between agents, users and tools."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="conversations"
    )
    task = models.ForeignKey(
        Task,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="conversations",
    )
    title = models.CharField(max_length=500, blank=True)
    status = models.CharField(
        max_length=16,
        choices=ConversationStatus.choices,
        default=ConversationStatus.ACTIVE,
    )
    participants = models.ManyToManyField(
        Agent, through="Participant", blank=True, related_name="conversations"
    )
    metadata = models.JSONField(default=dict, blank=True)
    # SHA-256 of the body that created the row: replays are judged by it.
    create_digest = models.CharField(max_length=64, blank=True, editable=False)
    message_count = models.PositiveIntegerField(default=0, editable=False)
    prompt_tokens = models.BigIntegerField(default=0, editable=False)
    completion_tokens = models.BigIntegerField(default=0, editable=False)
    cached_tokens = models.BigIntegerField(default=0, editable=False)
    cost = models.DecimalField(
        max_digits=16, decimal_places=6, default=0, editable=False
    )
    last_message_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=ConversationStatus.values),
                name="conversation_status_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    prompt_tokens__gte=0,
                    completion_tokens__gte=0,
                    cached_tokens__gte=0,
                    cost__gte=0,
                ),
                name="conversation_rollups_non_negative",
            ),
        ]
        indexes = [
            models.Index(
                fields=["project", "-created_at"], name="conversation_created_idx"
            ),
            models.Index(
                fields=["project", "task", "-created_at"], name="conversation_task_idx"
            ),
            models.Index(
                fields=["project", "status", "-created_at"],
                name="conversation_status_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.title or str(self.id)


class Participant(models.Model):
    """An agent taking part in a conversation, with its read marker."""

    id = models.BigAutoField(primary_key=True)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="participant_links"
    )
    agent = models.ForeignKey(
        Agent, on_delete=models.CASCADE, related_name="participant_links"
    )
    role = models.CharField(max_length=100, blank=True)
    joined_at = models.DateTimeField(default=timezone.now)
    left_at = models.DateTimeField(null=True, blank=True)
    active = models.BooleanField(default=True)
    # Kept by message_append with F() updates, never counted on read.
    message_count = models.PositiveIntegerField(default=0, editable=False)
    # Only moves forward (participant_read).
    last_read_seq = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["joined_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "agent"], name="participant_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(active=True, left_at__isnull=True)
                | models.Q(active=False, left_at__isnull=False),
                name="participant_left_when_inactive",
            ),
        ]
        indexes = [
            models.Index(
                fields=["agent", "conversation"], name="participant_agent_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent_id} in {self.conversation_id}"


class Message(models.Model):
    """One message of a conversation, numbered by a gap-free `seq`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    seq = models.PositiveIntegerField(editable=False)
    role = models.CharField(max_length=16, choices=MessageRole.choices)
    sender = models.ForeignKey(
        Agent,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="messages_sent",
    )
    content = models.TextField(blank=True)
    tool_calls = models.JSONField(null=True, blank=True)
    tool_call_id = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=200, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=16, decimal_places=6, default=0)
    latency_ms = models.FloatField(null=True, blank=True)
    reply_to = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="replies"
    )
    # The id of the first message of the reply chain (its own id for a
    # message that replies to nothing); set at append, never changed.
    thread = models.UUIDField(editable=False)
    recipients = models.ManyToManyField(
        Agent,
        through="MessageRecipient",
        blank=True,
        related_name="messages_received",
    )
    metadata = models.JSONField(default=dict, blank=True)
    revision = models.PositiveIntegerField(default=1, editable=False)
    revised_at = models.DateTimeField(null=True, blank=True, editable=False)
    # SHA-256 of the body that created the row: replays are judged by it.
    create_digest = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["conversation_id", "seq"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "seq"], name="message_seq_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(seq__gte=1), name="message_seq_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(role__in=MessageRole.values),
                name="message_role_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(cost__gte=0)
                & (models.Q(latency_ms__isnull=True) | models.Q(latency_ms__gte=0)),
                name="message_usage_non_negative",
            ),
        ]
        indexes = [
            models.Index(
                fields=["conversation", "sender", "seq"], name="message_sender_idx"
            ),
            models.Index(
                fields=["conversation", "role", "seq"], name="message_role_idx"
            ),
            models.Index(fields=["project", "-created_at"], name="message_created_idx"),
            models.Index(
                fields=["project", "sender", "created_at"],
                name="message_project_sender_idx",
            ),
            models.Index(fields=["thread", "created_at"], name="message_thread_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.role}"


class MessageRecipient(models.Model):
    """An agent a message is addressed to: one row per (message, agent)."""

    id = models.BigAutoField(primary_key=True)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, related_name="recipient_links"
    )
    agent = models.ForeignKey(
        Agent, on_delete=models.CASCADE, related_name="recipient_links"
    )

    class Meta:
        ordering = ["message_id", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["message", "agent"], name="messagerecipient_unique"
            ),
        ]
        indexes = [
            # The inbox: messages addressed to one agent.
            models.Index(
                fields=["project", "agent", "message"],
                name="messagerecipient_inbox_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.message_id} to {self.agent_id}"


DEFAULT_NAMESPACE = "default"
MEMORY_MAX_CONTENT_BYTES = 64 * 1024


class Memory(models.Model):
    """A note an agent keeps: upserted by agent + namespace + key, searchable.

    The full-text index is not a model field: a generated `tsvector` column
    with a GIN index on PostgreSQL, an FTS5 table kept by triggers on SQLite
    (migration 0005). A SQLite migration that rebuilds this table drops the
    triggers and must install them again (conversations.search.install).
    """

    # The integer key is the FTS5 rowid on SQLite; the public id is `uuid`.
    id = models.BigAutoField(primary_key=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey(
        Agent,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="memories",
    )
    namespace = models.CharField(max_length=200, default=DEFAULT_NAMESPACE)
    key = models.CharField(max_length=500, blank=True)
    content = models.TextField()
    tags = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    task = models.ForeignKey(
        Task,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="memories",
    )
    conversation = models.ForeignKey(
        Conversation,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="memories",
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1, editable=False)
    # SHA-256 of the body that created the row: replays are judged by it.
    create_digest = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "memories"
        ordering = ["-created_at", "-id"]
        constraints = [
            # NULL never equals NULL in a unique index, so entries without an
            # agent get a constraint of their own.
            models.UniqueConstraint(
                fields=["project", "agent", "namespace", "key"],
                condition=models.Q(agent__isnull=False) & ~models.Q(key=""),
                name="memory_agent_key_unique",
            ),
            models.UniqueConstraint(
                fields=["project", "namespace", "key"],
                condition=models.Q(agent__isnull=True) & ~models.Q(key=""),
                name="memory_shared_key_unique",
            ),
            models.CheckConstraint(
                condition=~models.Q(namespace=""), name="memory_namespace_not_empty"
            ),
            models.CheckConstraint(
                condition=models.Q(version__gte=1), name="memory_version_positive"
            ),
        ]
        indexes = [
            models.Index(fields=["project", "-created_at"], name="memory_created_idx"),
            models.Index(
                fields=["project", "agent", "namespace", "-created_at"],
                name="memory_agent_ns_idx",
            ),
            models.Index(
                fields=["project", "namespace", "-created_at"],
                name="memory_namespace_idx",
            ),
            models.Index(
                fields=["expires_at"],
                condition=models.Q(expires_at__isnull=False),
                name="memory_expires_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.key or str(self.uuid)
