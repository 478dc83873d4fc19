"""HTTP API of batch ingest: many items of every kind in one request."""

from __future__ import annotations

from collections.abc import Mapping

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import APIView

from ingest.serializers import (
    IngestInputSerializer,
    IngestOutputSerializer,
    validate_items,
)
from ingest.services import ItemResult, ingest_items
from swarmsite.exceptions import RequestTooLarge, error_body
from swarmsite.permissions import ProjectScopedMixin


def _render(result: ItemResult) -> dict:
    body: dict = {"index": result.index, "id": result.id, "status": result.status}
    if result.error is not None:
        exc = result.error
        body["error"] = error_body(exc.code, exc.message, getattr(exc, "fields", None))[
            "error"
        ]
    return body


class IngestView(ProjectScopedMixin, APIView):
    """`POST /api/v1/ingest/`: items of every kind, applied in order.

    Every item is validated first (with the single endpoint's input
    serializer), then the valid ones are written in one transaction per
    batch: consecutive items of one type with one bulk statement, a failing
    one isolated in a savepoint so it never takes the others down. Answers
    200 when every item is `created` or `duplicate`, 207 when any is `error`.
    """

    @extend_schema(
        operation_id="ingest_create",
        request=IngestInputSerializer,
        responses={
            200: IngestOutputSerializer,
            207: OpenApiResponse(
                IngestOutputSerializer, description="At least one item failed."
            ),
            413: OpenApiResponse(
                description="More items than INGEST_MAX_ITEMS, or a body over "
                "DATA_UPLOAD_MAX_MEMORY_SIZE bytes."
            ),
        },
        examples=[
            OpenApiExample(
                "Events and a message",
                request_only=True,
                value={
                    "items": [
                        {"type": "event", "data": {"kind": "eval.scored"}},
                        {
                            "type": "message",
                            "data": {
                                "conversation": "6f1c0a52-9b7e-4f7e-8d55-1f4d2a1c9e10",
                                "role": "assistant",
                                "content": "Done.",
                            },
                        },
                    ]
                },
            )
        ],
    )
    def post(self, request):
        limit = settings.INGEST_MAX_ITEMS
        try:
            body = request.data
        except RequestDataTooBig as exc:
            raise RequestTooLarge(
                f"The request body is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} "
                f"bytes; send at most {limit} items per batch."
            ) from exc
        if not isinstance(body, Mapping) or not isinstance(body.get("items"), list):
            raise exceptions.ValidationError({"items": ["Must be a JSON list."]})
        extra = sorted(set(body) - {"items"})
        if extra:
            raise exceptions.ValidationError(
                dict.fromkeys(extra, ["This field is not accepted here."])
            )
        raw = body["items"]
        if len(raw) > limit:
            raise RequestTooLarge(
                f"{len(raw)} items; a batch holds at most {limit} items."
            )
        if not raw:
            raise exceptions.ValidationError({"items": ["Send at least one item."]})
        items, rejected = validate_items(raw)
        results = ingest_items(
            project=self.project, items=items, rejected=rejected, actor=self.actor
        )
        status = 207 if any(r.status == "error" for r in results) else 200
        return Response({"results": [_render(r) for r in results]}, status=status)
