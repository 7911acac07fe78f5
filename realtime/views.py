"""/healthz: what a load balancer or orchestrator asks before sending a process traffic.

`check_health()` is the check. Under ASGI, site_config/healthz.py answers GET and HEAD
/healthz with it ahead of Django: through Django, a check went through the eleven
middlewares, and Django runs each sync hook of an async request in a thread, a round
trip from the event loop each. With 10,000 sockets held that was 7-8 ms at the median,
against 3.6-4.5 ms ahead of Django (bench/RESULTS.md, "/healthz while 10,000 sockets are
held"). So it answers any Host too, as a load balancer that probes by address needs. The
Django view (`healthz`, for the URL conf and the test client) answers the same.
"""

import asyncio

from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache

from realtime import health, sockets

CHECK_SECONDS = 3.0


async def check_health() -> tuple[int, str]:
    """200 only when both the database and the channel layer answer; 503 says which not."""
    try:
        # In a thread of its own and within CHECK_SECONDS: during an outage a connection
        # can take the pool's whole timeout to fail, and neither the answer nor the
        # sockets' shared database thread may wait that long.
        await asyncio.wait_for(asyncio.to_thread(_ping_database), CHECK_SECONDS)
    except Exception as error:
        return 503, f"database unavailable: {type(error).__name__}"
    if (paused := health()) is not None:
        # A failed delivery, receive or fan-out task since the last good check: live
        # delivery is paused until the watchdog's next check resyncs every socket.
        return 503, f"channel layer unavailable: {paused}"
    try:
        await sockets.probe().ping(timeout=CHECK_SECONDS)
    except sockets.Backlogged:
        # The layer took the probe: it is there, and this process is busy delivering.
        return 200, "ok (behind on deliveries)"
    except Exception as error:
        return 503, f"channel layer unavailable: {type(error).__name__}"
    return 200, "ok"


def _ping_database() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()  # back to the pool: this thread serves no request


@never_cache
async def healthz(request: HttpRequest) -> HttpResponse:
    status, text = await check_health()
    return HttpResponse(text, status=status, content_type="text/plain")
