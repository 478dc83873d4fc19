"""ASGI entry point served by daphne: HTTP now, WebSocket streams next."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "swarmsite.settings")

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from swarmsite.startup import require_secret_key  # noqa: E402

require_secret_key()

application = ProtocolTypeRouter({"http": django_asgi_app})
