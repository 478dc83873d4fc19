from django.apps import AppConfig


class IngestConfig(AppConfig):
    """Batch ingest: many items of every kind in one request."""

    name = "ingest"
    verbose_name = "Ingest"
