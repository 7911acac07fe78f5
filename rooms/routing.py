from django.urls import path

from rooms.consumers import RoomConsumer

websocket_urlpatterns = [
    path("ws/rooms/<str:slug>/", RoomConsumer.as_asgi()),
]
