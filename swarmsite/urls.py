from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from streams import views as stream_views
from swarmsite import api, views

admin.site.site_header = "Swarmsite"
admin.site.site_title = "Swarmsite admin"
admin.site.index_title = "Agents, tasks, conversations and their audit trail"

urlpatterns = [
    # The staff page that watches the stream lives beside the admin.
    path("admin/live-events/", stream_views.live_events, name="live-events"),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path("api/v1/", include("tasks.urls", namespace="tasks")),
    path("api/v1/", include("audit.urls", namespace="audit")),
    path("api/v1/", include("conversations.urls", namespace="conversations")),
    path("api/v1/", include("ingest.urls", namespace="ingest")),
    path("api/v1/", include("reports.urls", namespace="reports")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema"),
        name="api-docs",
    ),
    # Unknown API paths answer the API's JSON 404, not an HTML page.
    re_path(r"^api/", api.not_found, name="api-not-found"),
]
