"""What an open socket keeps in Daphne, autobahn and Twisted, made smaller.

10,000 idle sockets on one process is the target (issue 16); each one idle cost ~38 KiB
of RSS against ~15 for a bare `websockets` server. `python -m bench.memory` (tracemalloc,
grouped by who allocated) found three upstream costs that buy an idle socket nothing:

1. Daphne's application queue. `Server.create_application` (daphne/server.py line 214)
   gives every connection an `asyncio.Queue()`: three `collections.deque`s (items,
   getters, putters) of a 64-slot block each, ~3.2 KiB per socket, to carry a connect, a
   few frames and a disconnect. `SlimQueue` is the same queue for its one consumer, on
   a list: ~0.2 KiB. No upstream issue names it as of 2026-11 (django/daphne#373 reports
   memory per connection in general).
2. The HTTP request that was upgraded. Twisted's `HTTPChannel` registers itself as its
   transport's producer when the connection opens (twisted/web/http.py line 2354), and
   Daphne's `WebRequest.process` (daphne/http_protocol.py line 118) hands the transport
   to the WebSocket protocol without unregistering it. So the transport keeps the
   channel, which keeps its `WebRequest` (headers, body buffer, the request line):
   ~2.5 KiB per socket, for the socket's life. After the upgrade the channel is still
   "handling a request" (never finished), so as a producer it pauses nothing: letting it
   go changes no behaviour. No upstream issue names it as of 2026-11 (django/daphne#373,
   as above).
3. autobahn's per-connection copy of its factory's options. `_connectionMade`
   (autobahn/websocket/protocol.py line 1117) copies each of `CONFIG_ATTRS` (~30
   options) from the factory onto the protocol instance, unless the protocol already
   has the attribute. Daphne's factory is configured once, so each factory's protocol
   class gets them as class attributes instead (a subclass per factory, made on its
   first connection): ~1 KiB less per instance dict. (autobahn's own comment there says
   options set on the protocol override the factory's; the per-factory subclass is such a
   setting, with the factory's values.) Not an upstream bug: a cost of its design.

And one cost in time: autobahn pretty-prints every connection's options and transport
details for two debug log lines (`_connectionMade`, `startHandshake`), whether or not
debug is logged: `pformat` was 6% of a connect storm's CPU (py-spy, 1,000 connects).
Its module's `pformat` is made lazy (`LazyFormat`): the log line formats it only if it
is written.

Written and tested against TESTED_VERSIONS; relies on daphne's `Server.create_application`
(its body copied below with the queue swapped), `WebRequest.process` leaving
`self.transport` None after an upgrade and `self.channel` set, the queue being used only
through `get()`, `put_nowait()`, `qsize()`, `empty()` and `get_nowait()` (Daphne and
realtime/limits.py), and `WebSocketFactory.protocol`/`buildProtocol`; on Twisted's
`producer` and `unregisterProducer` of a TCP transport; on autobahn's `CONFIG_ATTRS` and
the `hasattr` check in `_connectionMade`; on autobahn.websocket.protocol using `pformat`
for log arguments and `Timings.__str__`. On other versions the server refuses to start
(realtime/upstream.py) unless CHAT_ALLOW_UNVERIFIED_DAPHNE=true.
"""

import asyncio
import pprint
import sys
from functools import partial
from typing import Any

from realtime import upstream

# What `install` was written and tested against (realtime/upstream.py).
TESTED_VERSIONS = {"daphne": "4.2.3", "autobahn": "26.10.2", "twisted": "26.10.0"}

_installed = False


class SlimQueue:
    """An unbounded FIFO for one consumer: `asyncio.Queue`'s `get`, `put_nowait`,
    `get_nowait`, `qsize` and `empty`, on a list (short: realtime/limits.py closes a
    socket with more than CHAT_SOCKET_MAX_QUEUED_FRAMES waiting)."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def get_nowait(self) -> Any:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.pop(0)

    async def get(self) -> Any:
        while not self._items:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


def create_application(self: Any, protocol: Any, scope: dict[str, Any]) -> SlimQueue | None:
    """daphne.server.Server.create_application (4.2.3), with a SlimQueue."""
    assert "application_instance" not in self.connections[protocol]
    input_queue = SlimQueue()
    scope.setdefault("asgi", {"version": "3.0"})
    application_instance = self.application(
        scope=scope,
        receive=input_queue.get,
        send=partial(self.handle_reply, protocol),
    )
    if protocol not in self.connections:
        return None
    self.connections[protocol]["application_instance"] = asyncio.ensure_future(
        application_instance,
        loop=asyncio.get_event_loop(),
    )
    return input_queue


def release_upgraded_request(process: Any) -> Any:
    """Wrap `WebRequest.process`: once a request was upgraded to a WebSocket, its
    channel stops being its old transport's producer (and so stops being kept)."""

    def patched(self: Any) -> Any:
        transport, channel = self.transport, self.channel
        result = process(self)
        upgraded = self.transport is None and transport is not None  # (handed over)
        if upgraded and getattr(transport, "producer", None) is channel:
            transport.unregisterProducer()
        return result

    return patched


def options_on_class(build_protocol: Any) -> Any:
    """Wrap `WebSocketFactory.buildProtocol`: a factory's protocols read its options
    from their class, not each from a copy of its own."""

    def patched(self: Any, addr: Any) -> Any:
        if not vars(self).get("_options_on_class"):
            base = self.protocol
            options = {name: getattr(self, name) for name in base.CONFIG_ATTRS}
            # (A function on a class would be bound to each instance: one option is one,
            # perMessageCompressionAccept, and autobahn calls it with the offers only.)
            options = {k: staticmethod(v) if callable(v) else v for k, v in options.items()}
            self.protocol = type(base.__name__, (base,), options)
            self._options_on_class = True
        return build_protocol(self, addr)

    return patched


class LazyFormat:
    """`pprint.pformat(value)` when formatted (a log line written), not before."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        return pprint.pformat(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def install() -> None:
    """Under Daphne (a no-op elsewhere), once. Raises ImproperlyConfigured on untested
    upstream versions (realtime/upstream.py)."""
    global _installed
    if _installed or "daphne.server" not in sys.modules:
        return
    upstream.require_tested("realtime/footprint.py", TESTED_VERSIONS)
    from autobahn.websocket import protocol
    from daphne.http_protocol import WebRequest
    from daphne.server import Server
    from daphne.ws_protocol import WebSocketFactory

    Server.create_application = create_application
    WebRequest.process = release_upgraded_request(WebRequest.process)
    WebSocketFactory.buildProtocol = options_on_class(WebSocketFactory.buildProtocol)
    protocol.pformat = LazyFormat  # type: ignore[assignment]
    # (Its one other use must still return a str: the timings autobahn tracks if asked.)
    protocol.Timings.__str__ = lambda self: pprint.pformat(self._timings)  # type: ignore[method-assign]
    _installed = True
