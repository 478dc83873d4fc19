"""WebSocket routes of the event log, mounted by swarmsite.asgi."""

from django.urls import re_path

from streams import consumers

websocket_urlpatterns = [
    re_path(r"^ws/v1/events/?$", consumers.EventStreamConsumer.as_asgi()),
]
