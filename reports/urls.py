"""Routes of the reports API, under /api/v1/."""

from django.urls import re_path

from reports import views

app_name = "reports"

# "/?" accepts the path with and without the trailing slash, like the routers.
urlpatterns = [
    re_path(r"^stats/?$", views.StatsView.as_view(), name="stats"),
]
