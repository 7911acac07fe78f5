"""WebSocket handshakes must come from this site's exact origin, as Django's CSRF check
demands of a POST.

Channels' `AllowedHostsOriginValidator` compared only the Origin's host with ALLOWED_HOSTS,
so a page on another port or scheme of the same host (`http://127.0.0.1:9999` for a site on
`http://127.0.0.1:8000`) passed. Such a page is same-site, so the browser sends the
session cookie with its handshake: it read a private room's history and sent a private
message as the person who opened it.

A handshake is let through when its one Origin header is

- exactly the handshake's own origin, `scheme://host[:port]`: the scheme is `https` for
  `wss` and `http` for `ws`, or what the proxy's header says when SECURE_PROXY_SSL_HEADER
  is set (BEHIND_PROXY); the host is Django's `request.get_host()` (the Host header, or
  X-Forwarded-Host with USE_X_FORWARDED_HOST, with its port), or
- one of CSRF_TRUSTED_ORIGINS, exactly or under a `https://*.example.com` wildcard,

and, in both cases, the handshake's host is in ALLOWED_HOSTS (Django answers 400 to an
HTTP request whose host is not). These are the rules of `CsrfViewMiddleware`'s Origin
check; the host, scheme and proxy headers come from Django's own `HttpRequest`, built from
the handshake's scope. Anything else (another port or scheme, `null`, no Origin, two of
them, an unknown host) is refused before the socket is accepted, and logged.
"""

import logging
from collections.abc import Awaitable, Iterable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest
from django.utils.http import is_same_domain

from site_config.http_guard import ASGIApp, Receive, Scope, Send, refuse_handshake

log = logging.getLogger(__name__)


class HandshakeRequest(HttpRequest):
    """The handshake as Django sees an HTTP request: headers in META, the server's address,
    and the scheme (so that `get_host()`, `scheme` and their settings apply unchanged)."""

    def __init__(self, scope: Scope) -> None:
        super().__init__()
        self._handshake_scheme = "https" if scope.get("scheme") == "wss" else "http"
        server = scope.get("server")
        self.META["SERVER_NAME"], self.META["SERVER_PORT"] = (
            (str(server[0]), str(server[1])) if server else ("unknown", "0")
        )
        for name, value in scope.get("headers", ()):
            header = name.decode("latin1")
            if "_" in header:  # would pass for its dashed twin in META (as in Daphne, runserver)
                continue
            key = "HTTP_" + header.upper().replace("-", "_")
            text = value.decode("latin1")
            self.META[key] = f"{self.META[key]},{text}" if key in self.META else text

    def _get_scheme(self) -> str:
        return self._handshake_scheme


def trusted(origin: str, trusted_origins: Iterable[str]) -> bool:
    """`origin` is one of CSRF_TRUSTED_ORIGINS: exactly, or under a `*.` wildcard one
    (Django's `CsrfViewMiddleware.allowed_origins_exact` / `allowed_origin_subdomains`)."""
    try:
        parsed = urlsplit(origin)
    except ValueError:
        return False
    for pattern in trusted_origins:
        if "*" not in pattern:
            if origin == pattern:
                return True
            continue
        allowed = urlsplit(pattern)
        if parsed.scheme == allowed.scheme and is_same_domain(
            parsed.netloc, allowed.netloc.lstrip("*")
        ):
            return True
    return False


def refusal(scope: Scope) -> str | None:
    """Why this handshake's Origin is not allowed, or None when it is."""
    origins = [value for name, value in scope.get("headers", ()) if name.lower() == b"origin"]
    if len(origins) != 1:
        return "no Origin header" if not origins else "more than one Origin header"
    origin = origins[0].decode("latin1")
    request = HandshakeRequest(scope)
    try:
        host = request.get_host()
    except DisallowedHost:
        return f"Origin {origin!r}: the host it was sent to is not in ALLOWED_HOSTS"
    own = f"{request.scheme}://{host}"
    if origin == own or trusted(origin, settings.CSRF_TRUSTED_ORIGINS):
        return None
    return f"Origin {origin!r} is neither this site ({own}) nor in CSRF_TRUSTED_ORIGINS"


class ExactOriginValidator:
    """Refuse, before accepting, any WebSocket whose Origin is not exactly allowed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[Any]:
        # Not a coroutine itself: it returns the app's (or the refusal's), so that no
        # frame of its own stays suspended, with the scope, for as long as a socket is open.
        if scope["type"] != "websocket":
            raise ValueError("ExactOriginValidator is for WebSocket connections only")
        reason = refusal(scope)
        if reason is not None:
            client = scope.get("client") or ("?",)
            log.info("socket refused from %s to %s: %s", client[0], scope.get("path"), reason)
            return refuse_handshake(receive, send)
        return self.app(scope, receive, send)
