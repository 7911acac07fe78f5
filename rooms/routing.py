from typing import Any

from django.urls import path

from rooms.consumers import RoomConsumer, UserConsumer

# Channels routes sockets with Django's path(), to an ASGI application (a consumer's
# as_asgi()); django-stubs' path() takes views only, and channels' stubs want their own
# pattern type in URLRouter. The same objects at run time.
websocket_urlpatterns: list[Any] = [
    path("ws/rooms/<str:slug>/", RoomConsumer.as_asgi()),  # type: ignore[arg-type]  # see above
    # Every other signed-in page: the user's own events (templates/base.html live_socket).
    path("ws/me/", UserConsumer.as_asgi()),  # type: ignore[arg-type]  # see above
]
