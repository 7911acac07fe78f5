"""Our server exactly as deployed, plus a render counter: `daphne bench.ours_asgi:application`.

No benchmark hook lives in the application code. This entry imports the real ASGI
application, wraps `rooms.services.render_fragment` (every render goes through it, from
services and consumers alike) with a counter per partial, and answers
GET /__bench__/stats with the counts as JSON. Everything else goes to the real app.
"""

import json
from collections import Counter
from typing import Any

from bench.limits import raise_nofile

raise_nofile()

from site_config.asgi import application as site_application  # noqa: E402  (sets Django up)

# isort: split
from rooms import services  # noqa: E402

renders: Counter[str] = Counter()
_render_fragment = services.render_fragment


def counting_render_fragment(partial: str, **context: Any) -> str:
    renders[partial] += 1
    return _render_fragment(partial, **context)


services.render_fragment = counting_render_fragment


async def stats_or(app: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == "/__bench__/stats":
        body = json.dumps({"renders": dict(renders)}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    await app(scope, receive, send)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await stats_or(site_application, scope, receive, send)
