"""ASGI entry point: HTTP goes to Django, WebSockets to the rooms consumers.

WebSocket handshakes must come from one of ALLOWED_HOSTS (a foreign, null or missing
Origin is refused) and carry the Django session, so consumers see request.user.
Under Daphne, site_config/lifecycle.py makes SIGTERM a graceful stop.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_config.settings")
django_asgi_app = get_asgi_application()  # sets Django up before the imports below

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from rooms.routing import websocket_urlpatterns  # noqa: E402
from site_config import lifecycle  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)

# Under Daphne: on SIGTERM, close every socket with 1012 and settle presence first.
lifecycle.install()
