"""OpenAPI extensions for drf-spectacular: auth scheme and error answers."""

from __future__ import annotations

from drf_spectacular.contrib.django_filters import DjangoFilterExtension
from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerFieldExtension,
)
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from swarmsite.filters import StrictFilterSet


class BearerKeyScheme(OpenApiAuthenticationExtension):
    """Documents `Authorization: Bearer <api key>` as an HTTP bearer scheme."""

    target_class = "swarmsite.authentication.BearerKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A project API key from `manage.py create_api_key`.",
        }


class JSONValueFieldScheme(OpenApiSerializerFieldExtension):
    """A JSON object or list field is documented as one, never as "any"."""

    target_class = "swarmsite.serializers.JSONValueField"

    def map_serializer_field(self, auto_schema, direction):
        if self.target.kind is dict:
            return {"type": "object", "additionalProperties": {}}
        if self.target.kind is list:
            return {"type": "array", "items": {}}
        return {}


class DecimalAmountScheme(OpenApiSerializerFieldExtension):
    """A non-negative amount: a JSON number or a decimal string."""

    target_class = "swarmsite.serializers.DecimalAmountField"

    def map_serializer_field(self, auto_schema, direction):
        digits = self.target.max_digits - self.target.decimal_places
        pattern = rf"^\d{{1,{digits}}}(\.\d{{1,{self.target.decimal_places}}})?$"
        if direction == "response":
            return {"type": "string", "format": "decimal", "pattern": pattern}
        return {
            "oneOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "format": "decimal", "pattern": pattern},
            ]
        }


class StrictFilterScheme(DjangoFilterExtension):
    """A text filter of a `StrictFilterSet` is documented as non-empty.

    Formats and enums already rule out `?name=`; a plain string needs
    `minLength`.
    """

    priority = 1

    def resolve_filter_field(
        self, auto_schema, model, filterset_class, field_name, filter_field
    ):
        parameters = super().resolve_filter_field(
            auto_schema, model, filterset_class, field_name, filter_field
        )
        if not issubclass(filterset_class, StrictFilterSet):
            return parameters
        for parameter in parameters:
            schema = parameter["schema"]
            if schema.get("type") == "array":
                schema = schema["items"]
            if schema.get("type") == "string" and not {"enum", "format"} & set(schema):
                schema["minLength"] = 1
        return parameters


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="snake_case, e.g. `validation_error`.")
    message = serializers.CharField(help_text="A human sentence.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors only: messages by field name.",
    )


class ErrorSerializer(serializers.Serializer):
    """Every API error: `{"error": {"code", "message", "fields"?}}`."""

    error = ErrorDetailSerializer()


_ERRORS = {
    "400": "Invalid input; `fields` names each bad field.",
    "401": "Missing, invalid, revoked or expired API key.",
    "403": "The API key lacks the scope this request needs.",
    "429": "Too many requests for this API key; retry after `Retry-After`.",
}
_DETAIL_ERRORS = {"404": "No such object in the caller's project."}
_WRITE_ERRORS = {
    "409": "Conflicts with the stored state (idempotency, transition, version).",
    "413": "The request body is too large.",
    "415": "The body is not JSON.",
}


class SwarmsiteAutoSchema(AutoSchema):
    """Adds the error answers every API operation can give, in one shape.

    Clients (and schemathesis) then know the body of a 4xx as well as the
    body of a success.
    """

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response" or not self.path.startswith("/api/v1/"):
            return responses
        errors = dict(_ERRORS)
        if "{" in self.path:
            errors.update(_DETAIL_ERRORS)
        if self.method not in ("GET", "HEAD", "OPTIONS"):
            errors.update(_WRITE_ERRORS)
        for code, description in errors.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description=description), code
                )
        return responses
