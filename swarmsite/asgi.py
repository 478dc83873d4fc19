"""ASGI entry point served by daphne: HTTP and the WebSocket streams."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "swarmsite.settings")

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from streams.routing import websocket_urlpatterns  # noqa: E402
from streams.wire import DaphneWire  # noqa: E402
from swarmsite.startup import require_secret_key, settle_heap  # noqa: E402

require_secret_key()


class BrowserOriginValidator(OriginValidator):
    """Browsers must come from an allowed host; non-browser clients pass.

    Only a browser can be made to open a cross-site socket with its user's
    cookies, and browsers always send `Origin`; agents and scripts usually
    send none, and authenticate with a key instead.
    """

    def valid_origin(self, parsed_origin) -> bool:
        return parsed_origin is None or super().valid_origin(parsed_origin)


def allowed_hosts_origin_validator(application):
    """`AllowedHostsOriginValidator`, with clients that send no Origin let in."""
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = ["localhost", "127.0.0.1", "[::1]"]
    return BrowserOriginValidator(application, allowed)


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": DaphneWire(
            allowed_hosts_origin_validator(
                AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
            )
        ),
    }
)
settle_heap()
