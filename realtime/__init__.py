"""The realtime transport: WebSockets, the channel layer and Daphne, for any app.

It knows nothing of rooms or messages. Its interface is this module (realtime/README.md):

    await publish(group, html, seq=None)      HTML to every socket in a group, everywhere
    await publish_event(group, event)         a non-HTML event (calls the sockets' handler)
    publish_on_commit(group, html, seq=None)  the same from sync code, after the commit
    event_on_commit(group, event)
    await database_call(fn)(*args)            database_sync_to_async(fn), whose
                                              publications leave from the loop after it
    HubSocket                                 the base of a consumer: subscribe(), hold
                                              while busy, caps, catch-up cut-off, close
    on_shutdown(hook)                         run at a graceful stop (after the grace)
    health()                                  why live delivery is paused, or None
"""

from realtime.consumer import HubSocket
from realtime.lifecycle import on_shutdown
from realtime.publishing import (
    Publication,
    database_call,
    event_on_commit,
    publish,
    publish_event,
    publish_on_commit,
)
from realtime.sockets import layer_health


def health() -> str | None:
    """Why live delivery is paused (a failed publish, receive, renewal or hub task since
    the last good check of the layer), or None while it runs."""
    return None if layer_health.healthy else layer_health.reason


__all__ = [
    "HubSocket",
    "Publication",
    "database_call",
    "event_on_commit",
    "health",
    "on_shutdown",
    "publish",
    "publish_event",
    "publish_on_commit",
]
