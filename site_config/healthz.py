"""/healthz answered ahead of Django's middleware (why: realtime/views.py)."""

from realtime.views import check_health
from site_config.http_guard import ASGIApp, Receive, Scope, Send

PATH = "/healthz"


class HealthzFirst:
    """ASGI: GET and HEAD /healthz answered here, anything else passed to `app`."""

    HEADERS = [
        (b"content-type", b"text/plain; charset=utf-8"),
        # (never_cache's Cache-Control)
        (b"cache-control", b"max-age=0, no-cache, no-store, must-revalidate, private"),
        (b"x-content-type-options", b"nosniff"),
    ]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        asked = scope["type"] == "http" and scope["path"] == PATH
        if not asked or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        status, text = await check_health()
        body = text.encode()
        headers = [*self.HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )
