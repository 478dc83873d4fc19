from django.apps import AppConfig


class AuditConfig(AppConfig):
    """Append-only event log and hash-chained audit log."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "audit"
