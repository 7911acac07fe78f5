"""/healthz: what a load balancer or orchestrator asks before sending a process traffic."""

import asyncio

from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache

from realtime import sockets

CHECK_SECONDS = 3.0


@never_cache
async def healthz(request: HttpRequest) -> HttpResponse:
    """200 only when both the database and the channel layer answer; 503 says which not."""
    try:
        # In a thread of its own and within CHECK_SECONDS: during an outage a connection
        # can take the pool's whole timeout to fail, and neither the answer nor the
        # sockets' shared database thread may wait that long.
        await asyncio.wait_for(asyncio.to_thread(_ping_database), CHECK_SECONDS)
    except Exception as error:
        return HttpResponse(
            f"database unavailable: {type(error).__name__}", status=503, content_type="text/plain"
        )
    if not sockets.layer_health.healthy:
        # A failed delivery, receive or fan-out task since the last good check: live
        # delivery is paused until the watchdog's next check resyncs every socket.
        return HttpResponse(
            f"channel layer unavailable: {sockets.layer_health.reason}",
            status=503,
            content_type="text/plain",
        )
    try:
        await sockets.probe().ping(timeout=CHECK_SECONDS)
    except sockets.Backlogged:
        # The layer took the probe: it is there, and this process is busy delivering.
        return HttpResponse("ok (behind on deliveries)", content_type="text/plain")
    except Exception as error:
        return HttpResponse(
            f"channel layer unavailable: {type(error).__name__}",
            status=503,
            content_type="text/plain",
        )
    return HttpResponse("ok", content_type="text/plain")


def _ping_database() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()  # back to the pool: this thread serves no request
