"""ASGI entry point: HTTP goes to Django, WebSockets to the rooms consumers,
and the "thumbnails" channel (with Redis) to its worker (`runworker`, rooms/workers.py).

Every request passes `http_guard.RequestGuard` first: bodies over CHAT_MAX_REQUEST_BYTES
are refused with 413 before they are read, and a NUL in a URL never reaches Django.
WebSocket handshakes must come from this site's exact origin (realtime/origins.py:
scheme, host and port, or CSRF_TRUSTED_ORIGINS) and carry the Django session, so
consumers see scope["user"] (realtime/auth.py).
Under Daphne, realtime/lifecycle.py makes SIGTERM a graceful stop.
"""

import gc
import os
from typing import cast

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_config.settings")
django_asgi_app = get_asgi_application()  # sets Django up before the imports below

from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402

from realtime import footprint, lifecycle, limits, sweeps, writes  # noqa: E402
from realtime.auth import SocketAuthMiddlewareStack  # noqa: E402
from realtime.origins import ExactOriginValidator  # noqa: E402
from rooms.routing import websocket_urlpatterns  # noqa: E402
from rooms.workers import ThumbnailConsumer  # noqa: E402
from site_config import http_guard  # noqa: E402
from site_config.healthz import HealthzFirst  # noqa: E402

# Our middlewares (http_guard, origins) read a few keys of any scope, a plain mapping to
# them; channels' stubs type its routers by asgiref.typing's scope per protocol. The same
# dicts at run time: the casts only bridge the two vocabularies.
application = http_guard.RequestGuard(
    cast(
        http_guard.ASGIApp,
        ProtocolTypeRouter(
            {
                # (/healthz ahead of Django's middleware: site_config/healthz.py)
                "http": HealthzFirst(cast(http_guard.ASGIApp, django_asgi_app)),
                "websocket": ExactOriginValidator(
                    cast(
                        http_guard.ASGIApp,
                        SocketAuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
                    )
                ),
                # Background jobs, for `manage.py runworker` (rooms/workers.py).
                "channel": ChannelNameRouter({"thumbnails": ThumbnailConsumer.as_asgi()}),
            }
        ),
    )
)

# Under Daphne: on SIGTERM, close every socket with 1012 and settle presence first.
lifecycle.install()
# Under Daphne: frames go to the socket at once instead of on the next reactor turn.
writes.install()
# Under Daphne: a body over CHAT_MAX_REQUEST_BYTES is refused before Twisted buffers it.
http_guard.install()
# Under Daphne: a socket that floods is closed with 1008, one that does not read is dropped.
limits.install()
# Under Daphne: what each open socket keeps is smaller (a lighter queue, no upgraded request).
footprint.install()
# Under Daphne: its sweeps over every connection run a slice per loop turn, not all in one.
sweeps.install()

# The garbage collector's full passes walk every object the process holds, and a process
# with 500 sockets holds a lot of them: with the default thresholds, three pauses of
# ~100 ms every 20 s, which alone broke p99 <= 100 ms. Objects loaded so far (Django,
# templates) are frozen out of those passes, and collections run 70x less often
# (README "Performance").
gc.freeze()
gc.set_threshold(50_000, 20, 100)
