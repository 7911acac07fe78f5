"""Who is on a WebSocket: channels' AuthMiddlewareStack, in one step, without its session
writes, and in batches.

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

The user is found as channels' `get_user` finds it, for all the sockets connecting at
once (realtime/batches.py): their sessions in one query (when the session engine has a
`load_many`, as site_config.sessions does) and their users in one more. Socket by
socket, those two queries were a third of a connect storm's CPU (py-spy, 1,000 connects).
"""

from collections.abc import Sequence
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
)
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.base import SessionBase
from django.http.cookie import parse_cookie
from django.utils.crypto import constant_time_compare

from realtime import batches


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
        scope["user"] = await batches.ask(users_of, session)
        return await self.inner(scope, receive, send)


def SocketAuthMiddlewareStack(inner: Any) -> SocketAuthMiddleware:
    """Cookies, then the session, then scope["user"], as AuthMiddlewareStack does."""
    return SocketAuthMiddleware(inner)


def users_of(sessions: Sequence[SessionBase]) -> list[Any]:
    """channels.auth.get_user for each session (its user, or AnonymousUser: the session
    flushed if its password hash no longer matches), in two queries for them all: the
    sessions' rows, then the users that Django's ModelBackend looks up one by one (any
    other backend is asked per session, as before)."""
    load_many = getattr(type(sessions[0]), "load_many", None) if sessions else None
    if load_many is not None:
        load_many(sessions)
    backends = {path: load_backend(path) for path in settings.AUTHENTICATION_BACKENDS}
    signed_in: list[tuple[Any, Any] | None] = []  # per session: (its backend, its user id)
    for session in sessions:
        try:
            user_id = get_user_model()._meta.pk.to_python(session[SESSION_KEY])
            backend = backends.get(session[BACKEND_SESSION_KEY])
        except KeyError:
            backend = None
        signed_in.append(None if backend is None else (backend, user_id))
    # (Exactly ModelBackend: a subclass may look its users up its own way.)
    batched = {found[1] for found in signed_in if found and type(found[0]) is ModelBackend}
    model_users = {u.pk: u for u in get_user_model()._default_manager.filter(pk__in=batched)}
    users: list[Any] = []
    for session, found in zip(sessions, signed_in, strict=True):
        user = None
        if found is not None:
            backend, user_id = found
            if type(backend) is ModelBackend:  # its get_user, from the batch
                user = model_users.get(user_id)
                user = user if user is not None and backend.user_can_authenticate(user) else None
            else:
                user = backend.get_user(user_id)
            if user is not None and hasattr(user, "get_session_auth_hash"):
                session_hash = session.get(HASH_SESSION_KEY)
                if not (
                    session_hash
                    and constant_time_compare(session_hash, user.get_session_auth_hash())
                ):
                    session.flush()
                    user = None
        users.append(user or AnonymousUser())
    return users
