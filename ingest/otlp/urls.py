from django.urls import path

from ingest.otlp.views import OtlpTracesView

app_name = "otlp"

urlpatterns = [
    # Exporters POST exactly /otlp/v1/traces: no trailing slash.
    path("v1/traces", OtlpTracesView.as_view(), name="traces"),
]
