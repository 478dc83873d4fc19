"""What `Client` and `AsyncClient` share: settings, requests, retries, JSON.

A resource method describes its request as a `Call`; the sync client runs
it and returns the body, the async client returns a coroutine doing the
same. So both surfaces come from one set of resource classes
(`swarmsite_client.resources`).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import random
import uuid
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from swarmsite_client import errors

DEFAULT_URL = "http://127.0.0.1:8000"
USER_AGENT = "swarmsite-client/0.1"


def resolve_url(url: str | None) -> str:
    return (url or os.environ.get("SWARMSITE_URL") or DEFAULT_URL).rstrip("/")


def resolve_key(api_key: str | None) -> str | None:
    return api_key or os.environ.get("SWARMSITE_API_KEY") or None


def new_id() -> str:
    return str(uuid.uuid4())


def _default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    """JSON of `value`; UUIDs, datetimes and Decimals become strings."""
    return json.dumps(value, default=_default, separators=(",", ":"))


def plain(value: Any) -> Any:
    """`value` with UUIDs as strings, for bodies and query strings."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple | set):
        return [plain(v) for v in value]
    return value


def body(**fields: Any) -> dict[str, Any]:
    """A request body of the fields that were given (None means not given)."""
    return {name: plain(value) for name, value in fields.items() if value is not None}


def create_body(id: Any = None, **fields: Any) -> dict[str, Any]:
    """The body of a create, as an endpoint or an ingest item: the fields
    given, and `id` (a fresh uuid4 unless given), so a resend is harmless."""
    return {"id": str(id or new_id()), **body(**fields)}


def new_operation_id(given: Any = None) -> str:
    """The operation `id` of an update: `given`, or a fresh uuid4."""
    return str(given) if given else new_id()


def query(**params: Any) -> dict[str, Any]:
    """Query parameters that were given; booleans as the API spells them."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        out[name] = plain(value)
    return out


@dataclass
class Call:
    """One API request as a resource method describes it."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    # False when a request that reached the server must not be sent again
    # (a claim would take a second task); connection failures before
    # sending and 429/503 answers are retried either way.
    idempotent: bool = True
    # The operation id sent as `id` in the body, dropped (and remembered
    # per `endpoint`) if the server refuses that field: servers before
    # contract 1.1 take no operation ids on updates.
    operation_endpoint: str | None = None
    # DELETE retried after a lost answer finds nothing: that is success.
    missing_ok_on_retry: bool = False
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in count and time."""

    max_attempts: int = 8
    base: float = 0.2
    cap: float = 10.0
    # Total time spent waiting between attempts of one call.
    total: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempt counts from 1)."""
        backoff = random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))
        if retry_after is not None:
            # The server's figure, plus a little jitter so that clients
            # told the same figure do not all come back at once.
            return min(max(retry_after, 0.0), self.total) + random.uniform(0, 0.1)
        return backoff


RETRY_STATUSES = {429, 502, 503, 504}
# Answered before the request did anything: safe to send again even when
# the request is not idempotent.
NOT_PROCESSED_STATUSES = {429, 503}


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())


def decode(content: bytes) -> Any:
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return content.decode(errors="replace")


def refuses_operation_id(exc: errors.SwarmsiteError) -> bool:
    return isinstance(exc, errors.ValidationError) and set(exc.fields) == {"id"}


def next_params(next_url: str | None) -> dict[str, Any] | None:
    """The query of a `next` link, to be sent to the same path.

    The link's host is the server's view of itself, which may not be the
    address this client uses (a proxy in front), so only the query is kept.
    """
    if not next_url:
        return None
    out: dict[str, Any] = {}
    for name, value in parse_qsl(urlsplit(next_url).query, keep_blank_values=True):
        out.setdefault(name, []).append(value)
    return {name: v[0] if len(v) == 1 else v for name, v in out.items()}
