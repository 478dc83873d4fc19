"""Routes of the agent, task and run API, under /api/v1/."""

from rest_framework.routers import SimpleRouter

from tasks import views

app_name = "tasks"

# "/?" accepts paths with and without the trailing slash: a POST that
# APPEND_SLASH would have to redirect is answered directly instead.
router = SimpleRouter()
router.trailing_slash = "/?"
router.register("agents", views.AgentViewSet, basename="agent")
router.register("tasks", views.TaskViewSet, basename="task")
router.register("runs", views.RunViewSet, basename="run")
router.register("workflows", views.WorkflowViewSet, basename="workflow")

urlpatterns = router.urls
