from django.apps import AppConfig


class SwarmsiteConfig(AppConfig):
    """Core app: projects (tenants), API keys and shared helpers."""

    name = "swarmsite"
    verbose_name = "Swarmsite"
