from django.contrib import admin
from django.urls import include, path

from realtime.views import healthz
from site_config.views import home

urlpatterns = [
    path("", home, name="home"),
    path("accounts/", include("accounts.urls")),
    path("rooms/", include("rooms.urls")),
    path("messages/", include("rooms.pm_urls")),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
