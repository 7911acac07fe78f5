"""Publishing: the one way anything reaches the sockets, and the one failure policy.

A publication goes to a group on every process (through the channel layer, then each
process's hub). It is at-most-once: when the layer fails, `publish` returns False and
marks the layer failed; the watchdog's next good check then closes every socket with
1012, and each reconnects and catches up from the database (the app's catch-up is what
makes delivery exactly-once in the page). Nothing else decides what a failure means.

Sync code (services, views, signals, commands) publishes with `publish_on_commit`: the
event leaves once the transaction commits, never from inside it, and not at all if it
rolls back. Async code that runs sync code which publishes wraps it in
`database_call` (as `database_sync_to_async`): the publications leave from the loop when
it returns. From any other thread that `sync_to_async` runs for an event loop (a view
under ASGI), the publication is handed to that loop without waiting for it: that thread
is shared by every socket and must not wait on the loop.
"""

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Coroutine, Generator
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import SyncToAsync, async_to_sync
from channels.db import database_sync_to_async
from django.db import transaction

from realtime import hub, sockets

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

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


# Publications made during a `database_call`, started by it back on the event loop.
_outbox: ContextVar[list[tuple["Publication", Coroutine[Any, Any, bool]]] | None] = ContextVar(
    "realtime_outbox", default=None
)


def database_call(
    function: Callable[P, R],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """`database_sync_to_async(function)`, for sync code that may publish: what it
    publishes (after its commits) leaves from the event loop once it returns, in order.

    Handing each publication to the loop from the database thread cost a thread wake-up
    per message, and each wake-up waited for the GIL held by the busy loop: under load a
    fifth of that thread's time (py-spy, 4,000 deliveries/s, bench/RESULTS.md).
    """

    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        outbox: list[tuple[Publication, Coroutine[Any, Any, bool]]] = []
        token = _outbox.set(outbox)  # the thread runs in a copy of this context
        try:
            return await database_sync_to_async(function)(*args, **kwargs)
        finally:
            _outbox.reset(token)
            loop = asyncio.get_running_loop()
            for publication, send in outbox:
                publication.start_in(loop, send)

    return call


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
            self.start_in(loop, send)
            return
        outbox = _outbox.get()
        if outbox is not None:
            outbox.append((self, send))  # a database_call: it starts it on its return
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

    def start_in(self, loop: asyncio.AbstractEventLoop, send: Coroutine[Any, Any, bool]) -> None:
        """Run `send` as a task of `loop` (called in that loop's thread)."""
        task = loop.create_task(send)
        task.add_done_callback(lambda done: _settle(self.future, done))


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
