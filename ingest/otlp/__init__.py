"""OpenTelemetry in: `POST /otlp/v1/traces` maps spans onto ingest items.

`parsing` turns an OTLP/HTTP body (protobuf or JSON, gzip or not) into
plain `Span` objects; `mapping` turns spans into the items of
`POST /api/v1/ingest/`; `views` writes them with `ingest.services.ingest_items`,
so OTLP is a way in, not a second write path. The rules are in docs/otlp.md.
"""
