"""Our server exactly as deployed, plus a render counter: `daphne bench.ours_asgi:application`.

No benchmark hook lives in the application code. This entry imports the real ASGI
application, wraps `rooms.services.render_fragment` (every render goes through it, from
services and consumers alike) with a counter per partial, times garbage-collector pauses,
and answers GET /__bench__/stats with both as JSON (GET /__bench__/trim collects and
returns free heap to the system first, to tell live memory from what malloc keeps).
Everything else goes to the real app.
"""

import ctypes
import gc
import json
import time
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

# Garbage-collector pauses, per generation: a full collection walks every object the
# process holds, and a process holding thousands of sockets holds a lot of them.
gc_pauses: dict[int, list[float]] = {0: [0, 0.0, 0.0], 1: [0, 0.0, 0.0], 2: [0, 0.0, 0.0]}
_gc_started = 0.0


def _time_gc(phase: str, info: dict[str, Any]) -> None:
    global _gc_started
    if phase == "start":
        _gc_started = time.perf_counter()
        return
    pause = (time.perf_counter() - _gc_started) * 1000
    count_total_max = gc_pauses[info["generation"]]
    count_total_max[0] += 1
    count_total_max[1] += pause
    count_total_max[2] = max(count_total_max[2], pause)


gc.callbacks.append(_time_gc)


async def stats_or(app: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == "/__bench__/trim":
        # What of the RSS is memory still in use, and what is freed memory the C
        # allocator keeps: collect, then hand free pages back to the system.
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        scope = {**scope, "path": "/__bench__/stats"}
    if scope["type"] == "http" and scope["path"] == "/__bench__/stats":
        pauses = {
            f"gen{gen}": {"count": c, "total_ms": round(t, 1), "max_ms": round(m, 1)}
            for gen, (c, t, m) in gc_pauses.items()
        }
        body = json.dumps({"renders": dict(renders), "gc": pauses}).encode()
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


def application(scope: dict[str, Any], receive: Any, send: Any) -> Any:
    # Returns the app's own coroutine for everything but the two bench URLs: a wrapper
    # frame would stay suspended with every open socket and count as its memory.
    if scope["type"] == "http" and scope["path"].startswith("/__bench__/"):
        return stats_or(site_application, scope, receive, send)
    return site_application(scope, receive, send)


application._asgi_single_callable = True  # type: ignore[attr-defined]  # (for Daphne)
