"""Who is on a WebSocket: channels' AuthMiddlewareStack, without its session writes.

Channels' SessionMiddleware wraps `send` so that it can save a changed session and set
its cookie on an HTTP response. A socket does neither, yet the wrapper asked the lazy
session whether it had changed on every frame sent: under load, about a sixth of the
event loop's time (measured: bench/RESULTS.md). Here the session is loaded from the
same cookie by the same engine, and `send` is left alone.
"""

from importlib import import_module
from typing import Any

from channels.auth import AuthMiddleware
from channels.sessions import CookieMiddleware
from django.conf import settings


class ReadOnlySessionMiddleware:
    """Put the request's Django session in scope["session"] (loaded on first use)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.session_store = import_module(settings.SESSION_ENGINE).SessionStore

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        session_key = scope["cookies"].get(settings.SESSION_COOKIE_NAME)
        scope = {**scope, "session": self.session_store(session_key)}
        return await self.inner(scope, receive, send)


def SocketAuthMiddlewareStack(inner: Any) -> CookieMiddleware:
    """Cookies, then the session, then scope["user"], as AuthMiddlewareStack does."""
    return CookieMiddleware(ReadOnlySessionMiddleware(AuthMiddleware(inner)))
