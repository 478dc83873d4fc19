"""Routes of the event log and audit log API, under /api/v1/."""

from django.urls import re_path

from audit import views

app_name = "audit"

urlpatterns = [
    re_path(r"^events/?$", views.EventListCreateView.as_view(), name="event-list"),
    re_path(
        r"^audit-logs/?$", views.AuditLogListCreateView.as_view(), name="auditlog-list"
    ),
    re_path(
        r"^audit-logs/(?P<pk>[^/.]+)/?$",
        views.AuditLogDetailView.as_view(),
        name="auditlog-detail",
    ),
]
