"""Who is on a WebSocket: channels' AuthMiddlewareStack, in one step and without its
session writes.

Channels' SessionMiddleware wraps `send` so that it can save a changed session and set
its cookie on an HTTP response. A socket does neither, yet the wrapper asked the lazy
session whether it had changed on every frame sent: under load, about a sixth of the
event loop's time (measured: bench/RESULTS.md). Here the session is loaded from the
same cookie by the same engine, and `send` is left alone.

One middleware instead of channels' three (cookies, session, user): each of those copies
the scope and stays suspended, its copy with it, for as long as the socket is open. One
copy and one frame is about 1.5 KiB less per idle socket (`python -m bench.memory`).
scope["user"] is the user itself (or AnonymousUser), not channels' lazy wrapper: it is
resolved here before the consumer starts, as channels' AuthMiddleware also does.
"""

from importlib import import_module
from typing import Any, cast

from channels.auth import get_user
from django.conf import settings
from django.http.cookie import parse_cookie


class SocketAuthMiddleware:
    """scope["cookies"], scope["session"] (loaded on first use, never saved) and
    scope["user"], as channels' CookieMiddleware, SessionMiddleware and AuthMiddleware
    put them there."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.session_store = import_module(settings.SESSION_ENGINE).SessionStore

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        cookies: dict[str, str] = {}
        for name, value in scope.get("headers", ()):
            if name == b"cookie":  # (the first, as channels' CookieMiddleware reads it)
                cookies = parse_cookie(value.decode("latin1"))
                break
        session = self.session_store(cookies.get(settings.SESSION_COOKIE_NAME))
        scope = {**scope, "cookies": cookies, "session": session}
        scope["user"] = await get_user(cast(Any, scope))  # (channels' stubs: its TypedDict)
        return await self.inner(scope, receive, send)


def SocketAuthMiddlewareStack(inner: Any) -> SocketAuthMiddleware:
    """Cookies, then the session, then scope["user"], as AuthMiddlewareStack does."""
    return SocketAuthMiddleware(inner)
