"""Publishing: the one way anything reaches the sockets, and the one failure policy.

A publication goes to a group on every process (through the channel layer, then each
process's hub). It is at-most-once: when the layer fails, `publish` returns False and
marks the layer failed; the watchdog's next good check then closes every socket with
1012, and each reconnects and catches up from the database (the app's catch-up is what
makes delivery exactly-once in the page). Nothing else decides what a failure means.

Sync code (services, views, signals, commands) publishes with `publish_on_commit`: the
event leaves once the transaction commits, never from inside it, and not at all if it
rolls back. From a thread that `sync_to_async` runs for an event loop (a consumer's
database work, a view under ASGI), the publication is handed to that loop without
waiting for it: that thread is shared by every socket and must not wait on the loop.
"""

import asyncio
import concurrent.futures
import logging
from collections.abc import Coroutine, Generator
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync
from django.db import transaction

from realtime import hub, sockets

log = logging.getLogger(__name__)

HTML = "hub.html"  # the event type of pre-rendered HTML (hub.py delivers runs of them)

Event = dict[str, Any]


async def publish(group: str, html: str, *, seq: int | None = None) -> bool:
    """Send pre-rendered HTML to every socket in `group`; False if the layer failed.

    `seq`, when given, is the event's place in its stream: a socket that already caught
    up past it leaves it out (HubSocket.caught_up_to)."""
    return await publish_event(group, {"type": HTML, "html": html, "seq": seq})


async def publish_event(group: str, event: Event) -> bool:
    """Send `event` (e.g. {"type": "socket.close", "code": 4401}, which calls the sockets'
    `socket_close`) to every socket in `group`; False if the layer failed."""
    try:
        await hub.group_send(group, event)
    except Exception as error:
        log.warning("publish to %s failed: %r", group, error)
        sockets.layer_health.failed(error)
        return False
    return True


class Publication:
    """A publication that leaves when its transaction commits. Await it (in the event
    loop) for whether it was delivered to the layer; it never completes if the
    transaction rolls back, so only await it once that transaction is over."""

    def __init__(self) -> None:
        self.future: concurrent.futures.Future[bool] = concurrent.futures.Future()

    def __await__(self) -> Generator[Any, None, bool]:
        return asyncio.wrap_future(self.future).__await__()

    def start(self, send: Coroutine[Any, Any, bool]) -> None:
        """Run `send` on the right loop (see the module docstring)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            # This thread runs the loop (the ORM called from async code): a task.
            task = loop.create_task(send)
            task.add_done_callback(lambda done: _settle(self.future, done))
            return
        main_loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
        if main_loop is not None and main_loop.is_running():
            done = asyncio.run_coroutine_threadsafe(send, main_loop)
            done.add_done_callback(lambda finished: _settle(self.future, finished))
            return
        # No event loop at all (a command, a sync test): send it here and now.
        try:
            self.future.set_result(async_to_sync(_awaited)(send))
        except Exception as error:
            self.future.set_exception(error)


async def _awaited(send: Coroutine[Any, Any, bool]) -> bool:
    return await send


def _settle(future: concurrent.futures.Future[bool], done: Any) -> None:
    if done.cancelled():
        future.cancel()
    elif done.exception() is not None:
        future.set_exception(done.exception())
    else:
        future.set_result(done.result())


def publish_on_commit(
    group: str, html: str, *, seq: int | None = None, using: str | None = None
) -> Publication:
    """`publish(group, html, seq=seq)` once the current transaction commits (at once
    outside one)."""
    return event_on_commit(group, {"type": HTML, "html": html, "seq": seq}, using=using)


def event_on_commit(group: str, event: Event, *, using: str | None = None) -> Publication:
    """`publish_event(group, event)` once the current transaction commits."""
    publication = Publication()
    transaction.on_commit(lambda: publication.start(publish_event(group, event)), using=using)
    return publication
