from django.apps import AppConfig


class ReportsConfig(AppConfig):
    """Aggregate statistics over tasks, usage and API traffic."""

    name = "reports"
    verbose_name = "Reports"
