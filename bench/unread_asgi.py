"""bench.ours_asgi with the unread fan-out switched off: what bench/unread.py compares
against. Each message's activity (rooms/attention.py `announce`: one render and one
publish to the room's activity group) is not made; everything else is the real app,
render counter included. No benchmark hook lives in the application code: the switch is
this module's, as the render counter is ours_asgi's."""

from typing import Any

import realtime
from bench.ours_asgi import application  # noqa: F401  (sets Django up; the served app)
from rooms import attention


def no_activity(message: Any) -> realtime.Publication:
    publication = realtime.Publication()
    publication.future.set_result(True)
    return publication


attention.announce = no_activity
