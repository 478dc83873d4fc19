"""Routes of the ingest API, under /api/v1/."""

from django.urls import re_path

from ingest import views

app_name = "ingest"

urlpatterns = [
    re_path(r"^ingest/?$", views.IngestView.as_view(), name="ingest"),
]
