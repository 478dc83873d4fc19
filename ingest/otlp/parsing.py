"""OTLP/HTTP trace bodies in: decompression with a cap, protobuf and JSON.

Everything here is pure: bytes in, `Span` objects (or a `BodyError`) out.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
CONTENT_TYPES = (PROTOBUF, JSON)

# Span.flags bits (trace.proto): whether the parent is known to be remote.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200

# Span.status.code
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2

_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
# Gzip bodies are inflated from slices of this size.
_CHUNK = 64 * 1024
# Exporters send one gzip member; a body of many (each inflated on its own)
# is refused rather than worked through.
MAX_GZIP_MEMBERS = 64


class BodyError(Exception):
    """A body the endpoint cannot read: malformed (400) or too large (413)."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.too_large = too_large


class UnsupportedEncoding(BodyError):
    """A Content-Encoding other than gzip or identity (415)."""


@dataclass(slots=True)
class Span:
    """One span, flattened: hex ids, plain attribute values, its resource."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    events: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""
    parent_is_remote: bool = False
    invalid: str = ""

    @property
    def is_root(self) -> bool:
        """No parent in this trace's exports: no parent id, or a remote one."""
        return not self.parent_span_id or self.parent_is_remote

    @property
    def duration_ms(self) -> float | None:
        if not self.start_ns or not self.end_ns or self.end_ns < self.start_ns:
            return None
        return round((self.end_ns - self.start_ns) / 1e6, 3)


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """`body` decoded per Content-Encoding, never inflated past `limit` bytes."""
    encoding = (encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise UnsupportedEncoding(
            f"Content-Encoding {encoding!r} is not supported; send gzip or none."
        )
    out = bytearray()
    view = memoryview(body)
    start = 0
    for _member in range(MAX_GZIP_MEMBERS):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        end = start
        try:
            # The body is fed in slices: what zlib copies out after a member
            # (its unused data) is at most one slice, not the rest of the body.
            while not inflater.eof and end < len(view):
                data = view[end : end + _CHUNK]
                end += len(data)
                while data:
                    # At most one byte past the limit per step, so a bomb
                    # never inflates further than that.
                    chunk = inflater.decompress(data, limit + 1 - len(out))
                    out += chunk
                    if len(out) > limit:
                        raise BodyError(
                            f"The decompressed body is over {limit} bytes.",
                            too_large=True,
                        )
                    data = inflater.unconsumed_tail
                    if inflater.eof or not chunk and not data:
                        break
        except zlib.error as exc:
            raise BodyError(f"The gzip body is malformed: {exc}.") from exc
        if not inflater.eof:
            raise BodyError("The gzip body is truncated.")
        start = end - len(inflater.unused_data)
        if start >= len(view):
            return bytes(out)
    raise BodyError(f"The gzip body has more than {MAX_GZIP_MEMBERS} members.")


def _hex_to_b64(value: Any, size: int, where: str) -> Any:
    if not isinstance(value, str) or value == "":
        return value
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise BodyError(f"{where} must be hex in OTLP/JSON: {value[:40]!r}.") from exc
    if len(raw) != size:
        raise BodyError(f"{where} must be {size * 2} hex digits: {value[:40]!r}.")
    return base64.b64encode(raw).decode("ascii")


def _fix_ids(obj: dict, names: tuple[tuple[str, str, int], ...], where: str) -> None:
    for camel, snake, size in names:
        for key in (camel, snake):
            if key in obj:
                obj[key] = _hex_to_b64(obj[key], size, f"{where}.{camel}")


_SPAN_IDS = (
    ("traceId", "trace_id", 16),
    ("spanId", "span_id", 8),
    ("parentSpanId", "parent_span_id", 8),
)
_LINK_IDS = (("traceId", "trace_id", 16), ("spanId", "span_id", 8))


def _list(obj: dict, camel: str, snake: str) -> list:
    value = obj.get(camel, obj.get(snake))
    return value if isinstance(value, list) else []


def _json_request(body: bytes) -> ExportTraceServiceRequest:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BodyError(f"The body is not valid JSON: {exc}.") from exc
    if not isinstance(data, dict):
        raise BodyError("The body must be a JSON object (ExportTraceServiceRequest).")
    # OTLP/JSON carries trace and span ids as hex; protobuf's JSON mapping
    # expects base64 for bytes fields.
    for r, resource_spans in enumerate(_list(data, "resourceSpans", "resource_spans")):
        if not isinstance(resource_spans, dict):
            continue
        for s, scope_spans in enumerate(
            _list(resource_spans, "scopeSpans", "scope_spans")
        ):
            if not isinstance(scope_spans, dict):
                continue
            for i, span in enumerate(_list(scope_spans, "spans", "spans")):
                if not isinstance(span, dict):
                    continue
                where = f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}]"
                _fix_ids(span, _SPAN_IDS, where)
                for j, link in enumerate(_list(span, "links", "links")):
                    if isinstance(link, dict):
                        _fix_ids(link, _LINK_IDS, f"{where}.links[{j}]")
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(data, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise BodyError(f"The body is not an ExportTraceServiceRequest: {exc}") from exc
    return request


def parse_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    """The ExportTraceServiceRequest in a (decompressed) body."""
    if content_type == JSON:
        return _json_request(body)
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise BodyError(
            f"The body is not a protobuf ExportTraceServiceRequest: {exc}"
        ) from exc
    return request


def any_value(value: Any) -> Any:
    """An AnyValue as plain Python: str, bool, int, float, list, dict or None."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return getattr(value, which)


def attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in pairs}


def _hex(raw: bytes) -> str:
    return binascii.hexlify(raw).decode("ascii")


def spans_of(request: ExportTraceServiceRequest) -> list[Span]:
    """Every span of the request; a span with unusable ids gets `invalid` set."""
    out: list[Span] = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            for raw in scope_spans.spans:
                span = Span(
                    trace_id=_hex(raw.trace_id),
                    span_id=_hex(raw.span_id),
                    parent_span_id=_hex(raw.parent_span_id),
                    name=raw.name,
                    kind=raw.kind,
                    start_ns=raw.start_time_unix_nano,
                    end_ns=raw.end_time_unix_nano,
                    status_code=raw.status.code,
                    status_message=raw.status.message,
                    attributes=attributes(raw.attributes),
                    events=[
                        (e.name, e.time_unix_nano, attributes(e.attributes))
                        for e in raw.events
                    ],
                    resource=resource,
                    scope=scope,
                    parent_is_remote=bool(
                        raw.flags & _HAS_IS_REMOTE and raw.flags & _IS_REMOTE
                    ),
                )
                if len(raw.trace_id) != 16 or span.trace_id == _ZERO_TRACE:
                    span.invalid = "trace_id must be 16 bytes, not all zero"
                elif len(raw.span_id) != 8 or span.span_id == _ZERO_SPAN:
                    span.invalid = "span_id must be 8 bytes, not all zero"
                elif raw.parent_span_id and len(raw.parent_span_id) != 8:
                    span.invalid = "parent_span_id must be empty or 8 bytes"
                elif span.parent_span_id == _ZERO_SPAN:
                    span.parent_span_id = ""
                out.append(span)
    return out


def response_body(content_type: str, rejected: int, message: str) -> bytes:
    """An ExportTraceServiceResponse, partial_success set when spans were refused."""
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    if content_type == JSON:
        return json.dumps(
            json_format.MessageToDict(response), separators=(",", ":")
        ).encode()
    return response.SerializeToString()
