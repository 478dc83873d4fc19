"""Routes of the conversation, message and memory API, under /api/v1/."""

from rest_framework.routers import SimpleRouter

from conversations import views

app_name = "conversations"

# "/?" accepts paths with and without the trailing slash, as in tasks.urls.
router = SimpleRouter()
router.trailing_slash = "/?"
router.register("conversations", views.ConversationViewSet, basename="conversation")
router.register("messages", views.MessageViewSet, basename="message")
router.register("memories", views.MemoryViewSet, basename="memory")

urlpatterns = router.urls
