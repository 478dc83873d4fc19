"""Prometheus metrics of this process, exposed at /metrics.

Each daphne process keeps its own registry; Prometheus scrapes each process
(or sums them) as usual for multi-process servers.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

INGEST_ITEMS = Counter(
    "swarmsite_ingest_items_total",
    "Items through POST /api/v1/ingest/, by result.",
    ["status"],
)
EVENTS_WRITTEN = Counter(
    "swarmsite_events_written_total", "Events appended to the event log."
)
WEBSOCKET_CONNECTIONS = Gauge(
    "swarmsite_websocket_connections", "Open WebSocket stream connections."
)
NOTIFICATION_FAILURES = Counter(
    "swarmsite_notification_failures_total",
    "Channel-layer notifications that could not be sent.",
)
