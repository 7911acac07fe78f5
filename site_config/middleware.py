from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_cache_control, patch_vary_headers

# Scripts and sockets only from our own origin: no inline script, no eval, so even a
# chat line that slipped past escaping could not run. Inline styles stay allowed for
# the per-viewer rule in the room page (<style> keyed on the viewer's username).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "connect-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


class PrivatePagesMiddleware:
    """What a signed-in person is shown is for them alone, and is not kept.

    A response to an authenticated request that sets no Cache-Control of its own gets
    `private, no-store`: `private` so that no shared cache (a proxy, a CDN) keeps a page of
    someone's rooms and private messages and serves it to another person; `no-store` so
    that the browser does not write it to disk either, where "Back" after signing out on a
    shared computer would show it again. A chat page is live anyway (its socket catches up
    on every load), so nothing is lost by fetching it again. `Vary: Cookie` says the page
    depends on who asks, for any cache that ignores the rest.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and not response.has_header("Cache-Control"):
            patch_cache_control(response, private=True, no_store=True)
            patch_vary_headers(response, ("Cookie",))
        return response
