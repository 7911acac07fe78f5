from django.contrib import admin
from django.urls import include, path

from realtime.views import healthz
from rooms.search_views import search_page
from site_config.views import home

urlpatterns = [
    path("", home, name="home"),
    path("accounts/", include("accounts.urls")),
    path("rooms/", include("rooms.urls")),
    path("messages/", include("rooms.pm_urls")),
    path("search/", search_page, name="search"),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
