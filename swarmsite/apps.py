from django.apps import AppConfig


class SwarmsiteConfig(AppConfig):
    """Core app: projects (tenants), API keys and shared helpers."""

    name = "swarmsite"
    verbose_name = "Swarmsite"

    def ready(self) -> None:
        # Registers the OpenAPI description of the bearer key scheme.
        from swarmsite import schema  # noqa: F401
