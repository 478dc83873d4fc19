from django.contrib import admin
from django.urls import path

from swarmsite import views

admin.site.site_header = "Swarmsite"
admin.site.site_title = "Swarmsite admin"
admin.site.index_title = "Agents, tasks, conversations and their audit trail"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
]
