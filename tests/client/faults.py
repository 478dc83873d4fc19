"""A real HTTP server in front of daphne that answers some requests itself.

`FaultyProxy(upstream_port, plan)`: the first requests get the canned
answers of `plan` (status, Retry-After), the way an overloaded server or
a proxy would; every later request is forwarded to daphne unchanged.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CODES = {429: "throttled", 502: "bad_gateway", 503: "unavailable", 504: "timeout"}


class FaultyProxy:
    def __init__(self, upstream_port: int, plan: list[tuple[int, str | None]]):
        self.upstream_port = upstream_port
        self.plan = list(plan)
        self.seen: list[tuple[float, str, str]] = []  # (time, method, path)
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy.lock:
                    proxy.seen.append((time.monotonic(), self.command, self.path))
                    canned = proxy.plan.pop(0) if proxy.plan else None
                if canned is not None:
                    status, retry_after = canned
                    payload = json.dumps(
                        {
                            "error": {
                                "code": CODES.get(status, "error"),
                                "message": f"Canned {status}.",
                            }
                        }
                    ).encode()
                    self.send_response(status)
                    if retry_after is not None:
                        self.send_header("Retry-After", retry_after)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection(
                    "127.0.0.1", proxy.upstream_port, timeout=30
                )
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "connection", "content-length")
                }
                upstream.request(self.command, self.path, body, headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in (
                        "transfer-encoding",
                        "connection",
                        "content-length",
                    ):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
