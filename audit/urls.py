"""Routes of the event log API, under /api/v1/."""

from django.urls import re_path

from audit import views

app_name = "audit"

urlpatterns = [
    re_path(r"^events/?$", views.EventListCreateView.as_view(), name="event-list"),
]
