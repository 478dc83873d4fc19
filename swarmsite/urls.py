from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from reports import swarm
from streams import views as stream_views
from swarmsite import views
from swarmsite.exceptions import not_found

admin.site.site_header = "Swarmsite"
admin.site.site_title = "Swarmsite admin"
admin.site.index_title = "Agents, tasks, conversations and their audit trail"

urlpatterns = [
    # The staff page that watches the stream lives beside the admin.
    path("admin/live-events/", stream_views.live_events, name="live-events"),
    # The swarm view: staff pages and their JSON, before the admin's catch-all.
    path("admin/swarm/", swarm.swarm_board_page, name="swarm-board"),
    path(
        "admin/swarm/snapshot/",
        swarm.swarm_board_snapshot,
        name="swarm-board-snapshot",
    ),
    path("admin/swarm/events/", swarm.swarm_feed, name="swarm-feed"),
    path(
        "admin/swarm/tasks/<uuid:task_id>/",
        swarm.swarm_task_page,
        name="swarm-task",
    ),
    path(
        "admin/swarm/tasks/<uuid:task_id>/snapshot/",
        swarm.swarm_task_snapshot_data,
        name="swarm-task-snapshot",
    ),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path("api/v1/", include("tasks.urls", namespace="tasks")),
    path("api/v1/", include("audit.urls", namespace="audit")),
    path("api/v1/", include("conversations.urls", namespace="conversations")),
    path("api/v1/", include("ingest.urls", namespace="ingest")),
    path("otlp/", include("ingest.otlp.urls", namespace="otlp")),
    path("api/v1/", include("reports.urls", namespace="reports")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema"),
        name="api-docs",
    ),
    # Unknown API paths answer the API's JSON 404, not an HTML page.
    re_path(r"^api/", not_found, name="api-not-found"),
]
