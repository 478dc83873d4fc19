from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    """Conversations and their ordered messages."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "conversations"
