"""Prometheus metrics of this process, exposed at /metrics.

Each daphne process keeps its own registry; Prometheus scrapes each process
(or sums them) as usual for multi-process servers.

django-prometheus was considered and left out: it needs a pair of
middlewares, its database metrics replace the database ENGINE (which would
bypass the psycopg pool settings), it reports no pool usage, and its export
view has no access control. The middleware below is all this project needs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.db import connections
from django.http import HttpRequest
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

INGEST_ITEMS = Counter(
    "swarmsite_ingest_items_total",
    "Items through POST /api/v1/ingest/, by result.",
    ["status"],
)
WEBSOCKET_CONNECTIONS = Gauge(
    "swarmsite_websocket_connections", "Open WebSocket stream connections."
)
NOTIFICATION_FAILURES = Counter(
    "swarmsite_notification_failures_total",
    "Channel-layer notifications that could not be sent.",
)
HTTP_REQUESTS = Counter(
    "swarmsite_http_requests_total",
    "HTTP requests answered, by route name, method and status code.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "swarmsite_http_request_duration_seconds",
    "Time to answer an HTTP request, by route name and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# Unresolved paths share one label, so scanners cannot grow the series count.
UNMATCHED_ROUTE = "<unmatched>"
_KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"}
)


def route_label(request: HttpRequest) -> str:
    """The URL pattern's name (`tasks:task-detail`), never the raw path."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNMATCHED_ROUTE
    return match.view_name or match.route or UNMATCHED_ROUTE


def _observe(request: HttpRequest, status: int, started: float) -> None:
    route = route_label(request)
    method = request.method if request.method in _KNOWN_METHODS else "OTHER"
    HTTP_REQUESTS.labels(route=route, method=method, status=str(status)).inc()
    HTTP_LATENCY.labels(route=route, method=method).observe(
        time.perf_counter() - started
    )


class MetricsMiddleware:
    """Counts and times every HTTP request; first in MIDDLEWARE to see all."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        started = time.perf_counter()
        response = self.get_response(request)
        _observe(request, response.status_code, started)
        return response

    async def __acall__(self, request: HttpRequest):
        started = time.perf_counter()
        response = await self.get_response(request)
        _observe(request, response.status_code, started)
        return response


class DatabasePoolCollector(Collector):
    """psycopg pool usage of each PostgreSQL alias, read at scrape time."""

    _STATS = {
        "pool_size": "Connections in the pool, busy or idle.",
        "pool_available": "Idle connections ready to be handed out.",
        "pool_max": "Largest size the pool may grow to.",
        "requests_waiting": "Requests waiting for a connection right now.",
    }

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            stat: GaugeMetricFamily(f"swarmsite_db_{stat}", help_text, labels=["alias"])
            for stat, help_text in self._STATS.items()
        }
        for alias in connections:
            wrapper = connections[alias]
            if wrapper.vendor != "postgresql" or not wrapper.settings_dict.get(
                "OPTIONS", {}
            ).get("pool"):
                continue
            # `pool` opens the pool on first use; only report open ones.
            pool = type(wrapper)._connection_pools.get(alias)
            if pool is None:
                continue
            stats = pool.get_stats()
            for stat, family in families.items():
                family.add_metric([alias], stats.get(stat, 0))
        yield from families.values()

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


REGISTRY.register(DatabasePoolCollector())


class ScrapeTimeTotal(Collector):
    """A counter whose value a reader returns at scrape time.

    For totals the database already keeps exactly: every process reports the
    same cluster-wide value (aggregate with max, not sum), it survives
    restarts and never counts a rolled-back write.
    """

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self.reader: Callable[[], float] | None = None

    def read_with(self, reader: Callable[[], float]) -> None:
        self.reader = reader

    def collect(self) -> Iterator[CounterMetricFamily]:
        if self.reader is None:
            return
        try:
            value = self.reader()
        except Exception:
            # A database outage must not fail the whole scrape.
            logger.warning("metric %s could not be read", self.name, exc_info=True)
            return
        yield CounterMetricFamily(self.name, self.documentation, value=value)

    def describe(self) -> Iterator[CounterMetricFamily]:
        return iter(())


# Read from the project journal heads (audit.services registers the reader).
EVENTS_WRITTEN = ScrapeTimeTotal(
    "swarmsite_events_written", "Events appended to the event log, all projects."
)
REGISTRY.register(EVENTS_WRITTEN)
