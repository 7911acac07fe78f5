"""Socket writes that go out at once, as asyncio's own transports do.

Twisted buffers every `transport.write()` and sends it on the next reactor turn, after
registering the socket as a writer and before unregistering it again. Under Daphne the
reactor is asyncio's, where each registration is an `epoll_ctl` call plus a selector key
rebuilt. So every frame to every socket paid two of each and a loop turn: a room
broadcast to N sockets did 2N of them. That bookkeeping was the biggest single cost of
the send path (measured: bench/RESULTS.md, "The optimisations").

This is twisted/twisted#5303 ("Default transport implementation doesn't write out bytes
immediately", open since 2011): `abstract.FileDescriptor.write` (abstract.py line 394)
appends to `_tempDataBuffer` and calls `startWriting`, and only the reactor's next
`doWrite` (line 271) sends it.

`install()` makes a TCP connection with nothing buffered try `send()` first; only what
the kernel does not take (a slow reader, a full socket buffer) is buffered, through
Twisted's own `write()`, so back-pressure, producers and lost connections keep working
exactly as before. Written and tested against the versions in TESTED_VERSIONS; relies on
`tcp.Connection`'s `connected`, `disconnecting`, `_writeDisconnected`, `dataBuffer`,
`offset` and `_tempDataLen`, and on `writeSomeData` returning the bytes sent (0 if the
kernel would block) or an exception instance for a lost connection. On another version
the server refuses to start until this is re-checked (realtime/upstream.py), unless
CHAT_ALLOW_UNVERIFIED_DAPHNE=true.
"""

import sys
from collections.abc import Callable
from functools import partial
from typing import Any

from twisted.internet import tcp

from realtime import limits, upstream

# What `write_now` was written and tested against (realtime/upstream.py).
TESTED_VERSIONS = {"twisted": "26.10.0"}
# What `send_frame` was written and tested against (realtime/upstream.py).
FRAMES_TESTED_VERSIONS = {"daphne": "4.2.3", "autobahn": "26.10.2"}

# (Twisted's FileDescriptor.write is unannotated; this is how it is called here.)
_buffered_write: Callable[[tcp.Connection, bytes], None] = tcp.Connection.write


def write_now(self: tcp.Connection, data: bytes) -> None:
    """`tcp.Connection.write`, sending at once when nothing is buffered."""
    idle = (
        self.connected
        and not self.disconnecting
        and not self._writeDisconnected
        and not self._tempDataLen
        and self.offset == len(self.dataBuffer)
    )
    if idle and isinstance(data, bytes):
        sent = self.writeSomeData(data)  # 0 if the kernel would block; an error if lost
        if isinstance(sent, int):
            if sent == len(data):
                return
            data = data[sent:]
        # A lost connection: buffered, Twisted's next write attempt finds it and closes.
    _buffered_write(self, data)


# Frames -------------------------------------------------------------------------------
#
# A room's event goes to every socket in it as the same text. Sent through each socket's
# own `websocket.send`, every recipient paid for an ASGI message dict, a coroutine chain
# (channels' send, Daphne's handle_reply), Daphne's and autobahn's checks, the text's
# UTF-8 encoding, autobahn's framing, and autobahn's debug log line, whose arguments it
# formats even with debug off: about two thirds of the event loop's time per delivery
# (py-spy, bench/RESULTS.md "Issue 16: CPU per delivery"). A `Frame` is encoded and
# framed once, by autobahn's own `PreparedMessage` (its public API for broadcasts), and
# `send_frame` writes the same bytes to each connection.
#
# Daphne gives an application `send = functools.partial(server.handle_reply, protocol)`
# (daphne/server.py `create_application`); `send_frame` finds the connection there and
# takes the path Daphne's `websocket.send` would take to autobahn's `sendData`:
# `handle_reply` (nothing for a connection gone), `serverSend` with realtime/limits.py's
# checks (`refuses_send`), `sendMessage` (raises unless STATE_OPEN, or for a message over
# `maxMessagePayloadSize`; compresses if permessage-deflate was negotiated,
# `_perMessageCompress`, which Daphne never offers; `autoFragmentSize` 0: one frame),
# `sendFrame` (server frames are not masked), `sendData` (`transport.write` unless
# `send_queue` holds something). Anything else (not Daphne's send, a connection not open,
# a message too big, compression, a queue, no limits) returns False and the caller sends
# it the usual way. Tested against FRAMES_TESTED_VERSIONS (realtime/upstream.py).

_framed_sends = False  # set by install(), under Daphne on the tested versions


class Frame:
    """One WebSocket text message, encoded and framed once for every socket it goes to
    (lazily: a run whose every socket takes the usual path never frames it)."""

    __slots__ = ("_data", "size", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._data: bytes | None = None
        self.size = 0  # the payload's bytes, once framed

    @property
    def data(self) -> bytes:
        if self._data is None:
            from autobahn.websocket.protocol import PreparedMessage

            # Text, unmasked (a server's), never compressed: one complete frame.
            payload = self.text.encode()
            self._data = PreparedMessage(payload, False, False, True).payloadHybi
            self.size = len(payload)
        return self._data


def send_frame(send: Any, frame: Frame) -> bool:
    """Write `frame` to the Daphne connection behind `send` (a consumer's `base_send`),
    at once, as its `websocket.send` of `frame.text` would. False when this cannot be
    done here (see above): the caller sends it the usual way."""
    if not _framed_sends or type(send) is not partial or not send.args:
        return False
    if getattr(send.func, "__func__", None) is not _handle_reply:
        return False
    protocol = send.args[0]
    if (
        protocol.state != protocol.STATE_OPEN
        or protocol._perMessageCompress is not None
        or protocol.send_queue
        or not getattr(protocol, "_socket_limits", False)
    ):
        return False
    data = frame.data
    if 0 < protocol.maxMessagePayloadSize < frame.size:
        return False  # (autobahn refuses it, raising PayloadExceededError)
    if not limits.refuses_send(protocol):
        protocol.transport.write(data)
    return True


_handle_reply: Any = None


def install() -> None:
    """Under Daphne (which imports Twisted's TCP connections); a no-op elsewhere.

    Raises ImproperlyConfigured on an untested Twisted (realtime/upstream.py)."""
    global _framed_sends, _handle_reply
    if "daphne.server" in sys.modules:
        upstream.require_tested("realtime/writes.py", TESTED_VERSIONS)
        upstream.require_tested("send_frame (realtime/writes.py)", FRAMES_TESTED_VERSIONS)
        # The patch itself, which the type checker rightly flags: a method replaced on
        # Twisted's class, and for tcp.Connection only (the attribute is FileDescriptor's).
        tcp.Connection.write = write_now  # type: ignore[method-assign, assignment]
        from daphne.server import Server

        _handle_reply = Server.handle_reply
        _framed_sends = True
