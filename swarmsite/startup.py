"""Checks the ASGI and WSGI entry points run before serving anything."""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def require_secret_key() -> None:
    """Refuse to serve without a real secret key."""
    try:
        settings.SECRET_KEY  # noqa: B018 - Django raises when it is empty.
    except ImproperlyConfigured as exc:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set to a long random value when "
            "DJANGO_DEBUG is off."
        ) from exc
