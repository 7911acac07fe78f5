"""The classic tutorial shape, as a reference: `daphne bench.tutorial:application`.

This is the consumer of the Channels tutorial ("Chat" part 2) with the one line real apps
add, a Message row per message: a synchronous WebsocketConsumer (every handler runs in
the one thread that sync_to_async serialises them on), group_send of the raw text, and
json.dumps per recipient. Same settings, database, session auth and channel layer as ours.
"""

import json
import os
from typing import Any

from bench.limits import raise_nofile

raise_nofile()

from django.core.asgi import get_asgi_application  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_config.settings")
django_asgi_app = get_asgi_application()

from asgiref.sync import async_to_sync  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.generic.websocket import WebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from rooms.models import Message, Room  # noqa: E402


class TutorialConsumer(WebsocketConsumer):
    def connect(self) -> None:
        self.user = self.scope["user"]
        self.room = Room.objects.get(slug=self.scope["url_route"]["kwargs"]["slug"])
        self.room_group_name = f"chat_{self.room.pk}"
        async_to_sync(self.channel_layer.group_add)(self.room_group_name, self.channel_name)
        self.accept()

    def disconnect(self, close_code: int) -> None:
        async_to_sync(self.channel_layer.group_discard)(self.room_group_name, self.channel_name)

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        message = json.loads(text_data)["message"]
        Message.objects.create(room=self.room, author=self.user, body=message)
        async_to_sync(self.channel_layer.group_send)(
            self.room_group_name,
            {"type": "chat.message", "message": message, "author": self.user.username},
        )

    def chat_message(self, event: dict[str, Any]) -> None:
        self.send(text_data=json.dumps({"message": event["message"], "author": event["author"]}))


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(
                URLRouter([path("ws/rooms/<str:slug>/", TutorialConsumer.as_asgi())])
            )
        ),
    }
)
