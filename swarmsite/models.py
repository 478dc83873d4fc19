import uuid

from django.db import models
from django.utils import timezone

DEFAULT_PROJECT_SLUG = "default"


class TimeStampedModel(models.Model):
    """Abstract base with an indexed creation time and a modification time."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class ApiKeyScope(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Write"
    ADMIN = "admin", "Admin"


class Project(TimeStampedModel):
    """A tenant: every agent, task, conversation and event belongs to one."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    event_retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Finished work older than this is pruned; empty keeps it.",
    )
    audit_retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Audit records older than this are pruned; empty keeps them.",
    )

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(slug__regex=r"^[-a-zA-Z0-9_]+$"),
                name="project_slug_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.slug


class ApiKey(models.Model):
    """A project-scoped API key; only a hash of its secret is stored."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["project", "name"]
        verbose_name = "API key"
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name"], name="apikey_name_unique_in_project"
            ),
            models.CheckConstraint(
                condition=models.Q(key_hash__regex=r"^[0-9a-f]{64}$"),
                name="apikey_hash_is_sha256",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        now = timezone.now()
        return self.revoked_at is None and (
            self.expires_at is None or self.expires_at > now
        )
