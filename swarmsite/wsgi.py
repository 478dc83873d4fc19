"""WSGI entry point, for servers other than daphne (no WebSocket streams)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "swarmsite.settings")

application = get_wsgi_application()

from swarmsite.startup import require_secret_key, settle_heap  # noqa: E402

require_secret_key()
settle_heap()
