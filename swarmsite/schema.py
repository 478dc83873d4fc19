"""OpenAPI extensions for drf-spectacular: how the API authenticates."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerKeyScheme(OpenApiAuthenticationExtension):
    """Documents `Authorization: Bearer <api key>` as an HTTP bearer scheme."""

    target_class = "swarmsite.api.BearerKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A project API key from `manage.py create_api_key`.",
        }
