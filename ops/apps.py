from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Operations: backup, restore, export, import, retention, simulation."""

    name = "ops"
    verbose_name = "Operations"
