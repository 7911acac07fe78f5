from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from realtime.views import healthz

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="rooms:list", permanent=False)),
    path("accounts/", include("accounts.urls")),
    path("rooms/", include("rooms.urls")),
    path("messages/", include("rooms.pm_urls")),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
