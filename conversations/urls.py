"""Routes of the conversation and message API, under /api/v1/."""

app_name = "conversations"

urlpatterns = []
