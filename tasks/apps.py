from django.apps import AppConfig


class TasksConfig(AppConfig):
    """Agents, workflows, tasks, dependencies and agent runs."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "tasks"
