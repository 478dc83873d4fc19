"""Routes of the ingest API, under /api/v1/."""

app_name = "ingest"

urlpatterns = []
