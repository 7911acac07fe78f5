from typing import Any

from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from rooms import services
from rooms.consumers import CLOSE_UNAUTHENTICATED


@receiver(user_logged_out)
def close_sockets_on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    # Runs before the session is flushed, so the key still names the sockets it opened.
    if request is not None and request.session.session_key:
        services.close_session_sockets(request.session.session_key, CLOSE_UNAUTHENTICATED)
