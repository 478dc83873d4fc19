"""`POST /otlp/v1/traces`: OTLP/HTTP trace exports, protobuf or JSON."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.views import APIView

from ingest.otlp.parsing import (
    CONTENT_TYPES,
    BodyError,
    UnsupportedEncoding,
    decompress,
    parse_request,
    response_body,
    spans_of,
)
from ingest.otlp.services import otlp_spans_write
from swarmsite.exceptions import RequestTooLarge
from swarmsite.permissions import ProjectScopedMixin


class FirstRenderer(BaseContentNegotiation):
    """Errors answer in the API's JSON shape whatever the exporter accepts."""

    def select_parser(self, request, parsers):
        return None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class OtlpTracesView(ProjectScopedMixin, APIView):
    """OTLP/HTTP `ExportTraceServiceRequest` in, `ExportTraceServiceResponse` out.

    Bearer API key; `application/x-protobuf` or `application/json`;
    `Content-Encoding: gzip` accepted and never inflated past the body limit.
    Spans refused are counted in `partial_success`; errors use the API's
    JSON error body (a database outage: 503 `unavailable` with Retry-After,
    from the API's exception handler).
    """

    parser_classes: list = []
    content_negotiation_class = FirstRenderer

    @extend_schema(exclude=True)
    def post(self, request):
        media_type = (request.content_type or "").split(";")[0].strip().lower()
        if media_type not in CONTENT_TYPES:
            raise exceptions.UnsupportedMediaType(
                media_type or "none",
                detail="Send application/x-protobuf or application/json.",
            )
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = request.body  # over the limit: RequestDataTooBig, answered 413
        try:
            body = decompress(raw, request.headers.get("Content-Encoding", ""), limit)
            export = parse_request(body, media_type)
        except UnsupportedEncoding as exc:
            raise exceptions.UnsupportedMediaType(
                media_type, detail=exc.message
            ) from exc
        except BodyError as exc:
            if exc.too_large:
                raise RequestTooLarge(exc.message) from exc
            raise exceptions.ParseError(exc.message) from exc
        result = otlp_spans_write(
            project=self.project, spans=spans_of(export), actor=self.actor
        )
        return HttpResponse(
            response_body(media_type, result.rejected, result.message),
            content_type=media_type,
        )
