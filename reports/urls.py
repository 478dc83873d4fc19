"""Routes of the reports API, under /api/v1/."""

app_name = "reports"

urlpatterns = []
