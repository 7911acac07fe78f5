"""ASGI entry point: HTTP goes to Django, WebSockets to the rooms consumers.

WebSocket handshakes must come from one of ALLOWED_HOSTS (a foreign, null or missing
Origin is refused) and carry the Django session, so consumers see scope["user"]
(site_config/socket_auth.py).
Under Daphne, site_config/lifecycle.py makes SIGTERM a graceful stop.
"""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_config.settings")
django_asgi_app = get_asgi_application()  # sets Django up before the imports below

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from rooms.routing import websocket_urlpatterns  # noqa: E402
from site_config import lifecycle, twisted_writes  # noqa: E402
from site_config.socket_auth import SocketAuthMiddlewareStack  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            SocketAuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)

# Under Daphne: on SIGTERM, close every socket with 1012 and settle presence first.
lifecycle.install()
# Under Daphne: frames go to the socket at once instead of on the next reactor turn.
twisted_writes.install()

# The garbage collector's full passes walk every object the process holds, and a process
# with 500 sockets holds a lot of them: with the default thresholds, three pauses of
# ~100 ms every 20 s, which alone broke p99 <= 100 ms. Objects loaded so far (Django,
# templates) are frozen out of those passes, and collections run 70x less often
# (README "Performance").
gc.freeze()
gc.set_threshold(50_000, 20, 100)
