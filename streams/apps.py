from django.apps import AppConfig


class StreamsConfig(AppConfig):
    """WebSocket delivery of the event log: consumer, pages, doorbell, wire."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "streams"
