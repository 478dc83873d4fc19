"""Request body parsers of the API."""

from __future__ import annotations

from rest_framework import exceptions, parsers


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with a 400 instead of a 500 on absurd nesting.

    The body size limit is Django's DATA_UPLOAD_MAX_MEMORY_SIZE: DRF reads
    `request.body`, whose RequestDataTooBig the handler answers with 413.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise exceptions.ParseError("JSON nested too deeply.") from exc
