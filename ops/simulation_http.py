"""A small JSON client over urllib for `manage.py simulate`.

It retries what is safe to retry: refused connections, timeouts and the
statuses a busy or restarting server answers. Only the standard library, so
the simulation runs with the runtime requirements alone.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


class ServerUnreachable(Exception):
    """The server did not answer (or was not ready) in time."""


class ApiError(Exception):
    """The server refused a request (4xx/5xx that retrying cannot fix)."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.code = error.get("code", "")
        super().__init__(f"{method} {path} answered {status}: {body}")


class Api:
    """A small JSON client over urllib; retries what is safe to retry."""

    def __init__(self, base_url: str, key: str, *, retries: int = 5) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.retries = retries
        self.calls = 0
        self.retried = 0

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {
            "Authorization": f"Bearer {self.key}",
            "Accept": "application/json",
            "User-Agent": "swarmsite-simulate/1",
        }
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(self.retries + 1):
            self.calls += 1
            request = urllib.request.Request(
                self.base_url + path, data=data, headers=headers, method=method
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    raw = response.read()
                    return json.loads(raw) if raw else None
            except urllib.error.HTTPError as exc:
                raw = exc.read()
                try:
                    payload = json.loads(raw) if raw else None
                except ValueError:
                    payload = raw.decode(errors="replace")
                if exc.code not in RETRYABLE_STATUS or attempt == self.retries:
                    raise ApiError(method, path, exc.code, payload) from exc
                wait = float(exc.headers.get("Retry-After") or 0)
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                if attempt == self.retries:
                    raise ServerUnreachable(
                        f"{method} {path}: the server at {self.base_url} does "
                        f"not answer ({exc})."
                    ) from exc
                wait = 0
            self.retried += 1
            time.sleep(max(wait, min(0.2 * 2**attempt, 5)))
        raise AssertionError("unreachable")

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body)


def wait_ready(base_url: str, seconds: float) -> None:
    """Wait until the server's /readyz answers, for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(base_url + "/readyz", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() >= deadline:
                raise ServerUnreachable(
                    f"The server at {base_url} was not ready within {seconds:g} s."
                ) from None
            time.sleep(0.2)
