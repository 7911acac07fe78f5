from django.contrib import admin
from django.urls import include, path

from realtime.views import healthz
from rooms import hooks_views
from rooms.search_views import search_page
from rooms.views import mentions
from site_config.styleguide import styleguide
from site_config.views import home

urlpatterns = [
    path("", home, name="home"),
    path("accounts/", include("accounts.urls")),
    path("rooms/", include("rooms.urls")),
    path("messages/", include("rooms.pm_urls")),
    path("mentions/", mentions, name="mentions"),
    path("search/", search_page, name="search"),
    path("rooms/<str:slug>/hooks/", hooks_views.room_hooks, name="room_hooks"),
    path(
        "rooms/<str:slug>/hooks/<int:hook_id>/revoke/", hooks_views.revoke_hook, name="revoke_hook"
    ),
    path("hooks/<str:token>/", hooks_views.hook, name="hook"),
    path("styleguide/", styleguide, name="styleguide"),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
