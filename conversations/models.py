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
    """An agent taking part in a conversation."""

    id = models.BigAutoField(primary_key=True)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="participant_links"
    )
    agent = models.ForeignKey(
        Agent, on_delete=models.CASCADE, related_name="participant_links"
    )
    joined_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["joined_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "agent"], name="participant_unique"
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
    metadata = models.JSONField(default=dict, blank=True)
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
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.role}"
