"""Who is on a WebSocket, decided as an HTTP request would decide it, in batches.

`session_users` is the one place that says whom a session is signed in as now: the checks
of django.contrib.auth.get_user on a fresh read of each session, for many sessions in two
queries. A socket is let in by it when it connects (`SocketAuthMiddleware`) and kept by it
on every send and every access check after (rooms.services.socket_access), so the two
never disagree.

`SocketAuthMiddleware` puts scope["cookies"], scope["session"] (a lazy session store,
never saved) and scope["user"] in the scope, as channels' AuthMiddlewareStack does, with
three differences:

- it is one middleware, not three: each of channels' copies the scope and stays
  suspended, its copy with it, for as long as the socket is open (one copy and one frame
  is ~1.5 KiB less per idle socket, `python -m bench.memory`); scope["user"] is the user
  itself (or AnonymousUser), not a lazy wrapper;
- `send` is left alone: channels' SessionMiddleware wraps it to save a changed session
  on an HTTP response, and under load asking the session whether it changed on every
  frame was about a sixth of the event loop's time (bench/RESULTS.md);
- the users of the sockets connecting together are found together (realtime/batches.py):
  socket by socket, the session and user queries were a third of a 1,000-connect storm's
  CPU (py-spy). And the session is only read: a session whose auth hash no longer
  matches is refused, not flushed (the next HTTP request flushes it, as Django does).
"""

from collections import defaultdict
from collections.abc import Collection, Sequence
from importlib import import_module
from typing import Any, cast

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
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.core.exceptions import ValidationError
from django.http.cookie import parse_cookie
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from realtime import batches


class SocketAuthMiddleware:
    """scope["cookies"], scope["session"] (never loaded here, never saved) and
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
        # (The store checks the key: a cookie that is no key is no session.)
        session = self.session_store(cookies.get(settings.SESSION_COOKIE_NAME))
        scope = {**scope, "cookies": cookies, "session": session}
        scope["user"] = await batches.ask(users_of, session.session_key)
        return await self.inner(scope, receive, send)


def SocketAuthMiddlewareStack(inner: Any) -> SocketAuthMiddleware:
    """Cookies, then the session, then scope["user"], as AuthMiddlewareStack does."""
    return SocketAuthMiddleware(inner)


def users_of(session_keys: Sequence[str | None]) -> list[Any]:
    """The user each session key is signed in as (session_users), or AnonymousUser."""
    users = session_users(set(session_keys))
    return [users.get(key or "") or AnonymousUser() for key in session_keys]


def session_users(session_keys: Collection[str | None]) -> dict[str, Any]:
    """The user each of these sessions is signed in as now, by session key; sessions that
    ended or no longer vouch for an active user are left out.

    The checks of django.contrib.auth.get_user, on a fresh read of each session: it exists
    and has not expired, its backend is still configured and still returns the user
    (ModelBackend: only an active one), and its auth hash still matches the user's
    (current or fallback secret), so a password change ends every other session. Unlike
    get_user it only reads: it never flushes or cycles a session.
    """
    claims: dict[str, tuple[Any, str, str | None]] = {}  # key: user id, backend, hash
    for key, session in _load_sessions([key for key in session_keys if key]).items():
        if (claim := session_claims(session)) is not None:
            claims[key] = claim
    users = _load_users({(user_id, backend) for user_id, backend, _ in claims.values()})
    signed_in = {}
    for key, (user_id, backend_path, session_hash) in claims.items():
        user = users.get((user_id, backend_path))
        if user is not None and user.is_active and vouches_for(user, session_hash):
            signed_in[key] = user
    return signed_in


def session_claims(session: dict[str, Any]) -> tuple[Any, str, str | None] | None:
    """Whom a session's data says it is signed in as, through which (configured) backend,
    with which auth hash; None if it says nothing usable."""
    try:
        user_id = get_user_model()._meta.pk.to_python(session[SESSION_KEY])
        backend_path = session[BACKEND_SESSION_KEY]
    except (KeyError, ValidationError):
        return None
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    return user_id, backend_path, session.get(HASH_SESSION_KEY)


def _load_sessions(keys: list[str]) -> dict[str, dict[str, Any]]:
    """The data of each live session (missing and expired ones left out)."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    if issubclass(store, DatabaseSessionStore):  # (the default engine) in one query
        rows = store.get_model_class().objects.filter(
            session_key__in=keys, expire_date__gt=timezone.now()
        )
        return {row.session_key: store().decode(row.session_data) for row in rows}
    return {key: dict(store(key).items()) for key in keys}


def _load_users(claims: set[tuple[Any, str]]) -> dict[tuple[Any, str], Any]:
    """What each (user id, backend path) backend.get_user() returns, when not None."""
    by_backend: defaultdict[str, set[Any]] = defaultdict(set)
    for user_id, backend_path in claims:
        by_backend[backend_path].add(user_id)
    users = {}
    for backend_path, user_ids in by_backend.items():
        backend = load_backend(backend_path)
        if type(backend).get_user is ModelBackend.get_user:  # the same, in one query
            model_backend = cast(ModelBackend, backend)
            found = get_user_model()._default_manager.in_bulk(user_ids)
            for user_id, user in found.items():
                if model_backend.user_can_authenticate(user):
                    users[user_id, backend_path] = user
        else:
            for user_id in user_ids:
                if (loaded := backend.get_user(user_id)) is not None:
                    users[user_id, backend_path] = loaded
    return users


def vouches_for(user: Any, session_hash: str | None) -> bool:
    if not hasattr(user, "get_session_auth_hash"):
        return True
    if not session_hash:
        return False
    hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    return any(constant_time_compare(session_hash, known) for known in hashes)
