"""Pagination for every API list: cursors, never COUNT(*), bounded pages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rest_framework import exceptions
from rest_framework.pagination import CursorPagination, _positive_int
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_size_from(request, *, param: str = "page_size") -> int:
    """The requested page size, clamped to MAX_PAGE_SIZE; 400 if not one."""
    if param not in request.query_params:
        return DEFAULT_PAGE_SIZE
    try:
        return _positive_int(
            request.query_params[param], strict=True, cutoff=MAX_PAGE_SIZE
        )
    except ValueError as exc:
        raise exceptions.ValidationError(
            {param: [f"A whole number from 1 (at most {MAX_PAGE_SIZE} are sent)."]}
        ) from exc


class CreatedCursorPagination(CursorPagination):
    """Newest first on the indexed creation time; the id breaks ties."""

    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = "page_size"
    # Larger requested sizes are clamped to this, never refused.
    max_page_size = MAX_PAGE_SIZE
    ordering = ("-created_at", "-id")

    def get_page_size(self, request) -> int:
        return page_size_from(request, param=self.page_size_query_param)

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound as exc:
            raise exceptions.ValidationError(
                {self.cursor_query_param: ["Invalid cursor."]}
            ) from exc


class SeqCursorPagination(CreatedCursorPagination):
    """Oldest first on a per-parent sequence number (a conversation's `seq`).

    Only for querysets of one parent, where `seq` is unique and indexed.
    """

    ordering = ("seq",)


class PositionPagination:
    """Forward-only pages of a position-ordered log (`?after=P`).

    Answers `{"results", "next_after", "next", "previous"}`: `next_after` is
    the last position returned (or `after` when nothing was), so a poller
    can always pass it back; `next` is a URL when more may follow.
    """

    after_query_param = "after"
    position_attr = "position"

    def respond(
        self,
        request,
        *,
        fetch: Callable[[int, int], Sequence[Any]],
        serializer_class: type,
    ) -> Response:
        """Fetch `(after, limit)` rows, serialize them, answer one page."""
        after = self.get_after(request)
        page_size = self.get_page_size(request)
        rows = fetch(after, page_size)
        return self.get_paginated_response(
            request,
            data=serializer_class(rows, many=True).data,
            positions=[getattr(row, self.position_attr) for row in rows],
            after=after,
            page_size=page_size,
        )

    def get_after(self, request) -> int:
        raw = request.query_params.get(self.after_query_param)
        if raw is None:
            return 0
        try:
            value = int(raw)
        except ValueError:
            value = -1
        if value < 0:
            raise exceptions.ValidationError(
                {self.after_query_param: ["Must be a whole number of zero or more."]}
            )
        return value

    def get_page_size(self, request) -> int:
        return page_size_from(request)

    def get_paginated_response(
        self,
        request,
        *,
        data: Sequence[Any],
        positions: Sequence[int],
        after: int,
        page_size: int,
    ) -> Response:
        next_after = positions[-1] if positions else after
        next_url = None
        if len(positions) >= page_size:
            next_url = replace_query_param(
                request.build_absolute_uri(), self.after_query_param, next_after
            )
        return Response(
            {
                "results": list(data),
                "next_after": next_after,
                "next": next_url,
                "previous": None,
            }
        )
