"""What one WebSocket may cost the process, enforced where Daphne holds its bytes.

Two upstream behaviours made a socket's memory a function of what its client does,
measured with e2e/test_abuse.py's clients:

1. Inbound. Daphne 4.2.3's `WebSocketProtocol.onMessage` (ws_protocol.py line 147) puts
   every frame autobahn parses into the application's `asyncio.Queue()`, which has no
   bound (created in `Server.create_application`, server.py line 214). autobahn parses
   everything Twisted reads in one go, so a client sending small frames as fast as TCP
   allows fills that queue far faster than any consumer empties it: one socket grew the
   server by 160 MiB in 5 s and 250 MiB in 20 s, still growing, and was never cut off.
   No upstream issue found as of 2026-11 (django/daphne#483 is the same unbounded queue,
   filled by an HTTP body).
2. Outbound. A send is `transport.write()`; what the kernel does not take waits in
   Twisted's `FileDescriptor` buffers (`dataBuffer` from `offset`, plus
   `_tempDataBuffer`, `_tempDataLen` bytes) with no bound, and Daphne never looks at
   them. A client that does not read its socket makes the server keep everything sent
   to it: 30 such sockets held 157 MiB after another user posted 1,500 messages (once
   the kernel's own buffers were full), until Daphne's ping timeout dropped them 20-50 s
   after they stopped answering pings. This is django/daphne#170 ("TCP bufferbloat if
   WebSocket server keeps pushing data quickly to a slow client", open since 2018).

`install()` (from site_config/asgi.py; a no-op where Daphne is not imported) patches
Daphne's `WebSocketProtocol` so that:

- `onMessage` refuses a frame when CHAT_SOCKET_MAX_QUEUED_FRAMES frames, or frames of
  more than CHAT_SOCKET_MAX_QUEUED_BYTES in all, would be waiting for the application
  (`InboundQueue`): the socket is closed with 1008 (policy violation), the frames still
  queued are dropped unread, the transport stops reading (what the client sends after
  that is never parsed), and every later frame is dropped. autobahn then
  drops the TCP connection when its close handshake times out (`closeHandshakeTimeout`,
  1 s), and the application gets its `websocket.disconnect` as usual; what it sends
  meanwhile is dropped (autobahn would raise `Disconnected` for it). Nothing is
  rendered or stored for a refused frame. A consumer that keeps up never has more than
  a frame or two waiting; rooms/consumers.py adds a per-socket frame budget for clients
  that flood slower than that.
- `serverSend` first looks at how many bytes the connection's transport still holds
  unsent (`buffered_bytes`): over CHAT_SOCKET_MAX_BUFFERED_BYTES, the connection is
  dropped (`dropConnection(abort=True)`: a close frame would wait behind what the client
  is not reading) instead of buffering more, with one warning in the log. The
  application gets `websocket.disconnect` (code 1006), so presence is settled as for
  any lost connection, and htmx, if the page is still alive, reconnects and catches up.
  The kernel's own socket buffers come first: the limit applies to what they did not
  take.

Written and tested against the versions in TESTED_VERSIONS (realtime/upstream.py
refuses to start on others unless CHAT_ALLOW_UNVERIFIED_DAPHNE=true). What it relies on:

- daphne: `WebSocketProtocol.onMessage(payload, isBinary)` enqueues with
  `self.application_queue.put_nowait`, `serverSend(content, binary)` is the one path of
  the application's `websocket.send`, and `onClose` enqueues `websocket.disconnect`
  unless `muted` (which is why this module never sets `muted`);
- autobahn: `sendCloseFrame(code)` (the close without `sendClose`'s check, which refuses
  1008), `dropConnection(abort)`, `wasNotCleanReason`, `onMessage` being called for
  frames parsed while closing, `sendMessage` raising once closing, and the close
  handshake timeout;
- twisted: `tcp.Connection`'s `dataBuffer`, `offset`, `_tempDataLen`, `pauseProducing`,
  and a wrapping protocol's (TLS) `transport` attribute.
"""

import logging
import sys
from collections import deque
from typing import Any

from django.conf import settings

from realtime import upstream

# Under "rooms", whose lines the LOGGING setting keeps.
log = logging.getLogger(__name__)

CLOSE_POLICY_VIOLATION = 1008
# What `bound_connections` was written and tested against (realtime/upstream.py).
TESTED_VERSIONS = {"daphne": "4.2.3", "autobahn": "26.10.2", "twisted": "26.10.0"}

_installed = False


def install() -> None:
    """Bound every Daphne WebSocket (see above), once; a no-op where Daphne is not imported.

    Raises ImproperlyConfigured on untested upstream versions (realtime/upstream.py).
    """
    global _installed
    if _installed or "daphne.server" not in sys.modules:
        return
    upstream.require_tested("realtime/limits.py", TESTED_VERSIONS)
    from daphne.ws_protocol import WebSocketProtocol

    bound_connections(WebSocketProtocol)
    _installed = True


def bound_connections(protocol_class: type[Any]) -> None:
    """Patch `onMessage` and `serverSend` of Daphne's `WebSocketProtocol` (or a subclass of
    it, in the tests) with the limits above; a no-op if already done."""
    if "_socket_limits" in vars(protocol_class):
        return
    queue_frame = protocol_class.onMessage
    send_frame = protocol_class.serverSend

    def onMessage(self: Any, payload: bytes, isBinary: bool) -> None:
        if getattr(self, "refusing_frames", False):
            return
        queue = getattr(self, "application_queue", None)
        if queue is None:  # (Daphne's own onMessage fails the same way)
            queue_frame(self, payload, isBinary)
            return
        inbound = self.__dict__.setdefault("inbound", InboundQueue())
        if not inbound.admit(queue.qsize(), len(payload)):
            close_flooding(self, inbound)
            return
        queue_frame(self, payload, isBinary)

    def serverSend(self: Any, content: str | bytes, binary: bool = False) -> None:
        if not refuses_send(self):
            send_frame(self, content, binary)

    protocol_class.onMessage = onMessage
    protocol_class.serverSend = serverSend
    protocol_class._socket_limits = True


def refuses_send(protocol: Any) -> bool:
    """Whether a send to this connection is dropped: it is closing, or is dropped now for
    holding too much unsent. The one check of every send (`serverSend`, and the frames
    realtime/writes.py sends to many sockets at once)."""
    if getattr(protocol, "dropped_unread", False) or getattr(protocol, "refusing_frames", False):
        # We closed it: nothing more goes out (autobahn raises for a send after the
        # close, and the application does not know of it until its disconnect).
        return True
    if protocol.state in (protocol.STATE_CLOSING, protocol.STATE_CLOSED):
        # The client closed it: its disconnect is on the way to the application, and
        # an event delivered meanwhile has nobody to go to (autobahn would raise).
        return True
    unsent = buffered_bytes(protocol.transport)
    if unsent > settings.CHAT_SOCKET_MAX_BUFFERED_BYTES:
        drop_not_reading(protocol, unsent)
        return True
    return False


class InboundQueue:
    """What of one connection's frames still waits in its application's queue, counted
    without reading the queue: the application takes messages in order, and the only
    ones not put here are Daphne's connect (first, before any frame) and disconnect
    (last), so the frames still queued are the newest `min(frames put, qsize)`."""

    def __init__(self) -> None:
        self.sizes: deque[int] = deque()  # bytes of each frame still queued, oldest first
        self.bytes = 0

    def admit(self, queued: int, size: int) -> bool:
        """Count a frame of `size` bytes about to be queued behind `queued` messages;
        False (and nothing counted) if that would pass either limit."""
        while len(self.sizes) > queued:
            self.bytes -= self.sizes.popleft()
        if (
            len(self.sizes) >= settings.CHAT_SOCKET_MAX_QUEUED_FRAMES
            or self.bytes + size > settings.CHAT_SOCKET_MAX_QUEUED_BYTES
        ):
            return False
        self.sizes.append(size)
        self.bytes += size
        return True


def close_flooding(protocol: Any, inbound: InboundQueue) -> None:
    """Close a socket whose frames come faster than its application takes them."""
    protocol.refusing_frames = True
    log.warning(
        "closing a socket sending faster than it is served (%s %s): %d frames of %d bytes "
        "waiting, the limits are CHAT_SOCKET_MAX_QUEUED_FRAMES and _BYTES (code %d)",
        _client(protocol),
        getattr(protocol, "path", b"").decode("ascii", "replace"),
        len(inbound.sizes),
        inbound.bytes,
        CLOSE_POLICY_VIOLATION,
    )
    _drop_queued_frames(protocol.application_queue)
    protocol.sendCloseFrame(code=CLOSE_POLICY_VIOLATION)
    # Parse nothing more of the flood: the client's answer to the close is not needed,
    # autobahn drops the connection when the close handshake times out.
    protocol.transport.pauseProducing()


def drop_not_reading(protocol: Any, unsent: int) -> None:
    """Drop a connection that holds more unsent bytes than a socket may; logs once."""
    protocol.dropped_unread = True
    log.warning(
        "dropping a socket that is not reading (%s %s): %d bytes unsent, the limit is "
        "CHAT_SOCKET_MAX_BUFFERED_BYTES",
        _client(protocol),
        getattr(protocol, "path", b"").decode("ascii", "replace"),
        unsent,
    )
    protocol.wasNotCleanReason = "the peer did not read what was sent to it"
    protocol.dropConnection(abort=True)


def buffered_bytes(transport: Any) -> int:
    """Bytes written to `transport` that the kernel has not taken yet: Twisted's
    `FileDescriptor` buffers (`dataBuffer` from `offset`, and `_tempDataLen` more), found
    through any wrapping protocol (TLS) by its `transport`. 0 for anything else."""
    for _ in range(4):  # TLS over TCP is two levels; never loop on a strange chain
        if transport is None:
            return 0
        if hasattr(transport, "dataBuffer"):
            unsent: int = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
            return unsent
        transport = getattr(transport, "transport", None)
    return 0


def _drop_queued_frames(queue: Any) -> None:
    """Take the frames still waiting out of an application's queue (they are refused,
    never handled); anything else in it (the connect) stays, in order."""
    kept = []
    while not queue.empty():
        message = queue.get_nowait()
        if message.get("type") != "websocket.receive":
            kept.append(message)
    for message in kept:
        queue.put_nowait(message)


def _client(protocol: Any) -> str:
    address = getattr(protocol, "client_addr", None)
    return f"{address[0]}:{address[1]}" if address else "?"
