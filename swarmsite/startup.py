"""What the ASGI and WSGI entry points run before serving anything."""

import gc

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.urls import get_resolver


def require_secret_key() -> None:
    """Refuse to serve without a real secret key."""
    try:
        settings.SECRET_KEY  # noqa: B018 - Django raises when it is empty.
    except ImproperlyConfigured as exc:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set to a long random value when "
            "DJANGO_DEBUG is off."
        ) from exc


def settle_heap() -> None:
    """Import every view now and leave the start-up heap out of collections.

    A write of a few hundred items allocates enough objects to set off full
    collections, and each one walked every module, class and URL pattern
    loaded at start-up (about 75 ms per collection on a batch of 500 OTLP
    spans). Frozen objects are never collected again; they live as long as
    the process anyway.
    """
    get_resolver().url_patterns  # noqa: B018 - imports the URLconf and views.
    gc.collect()
    gc.freeze()
