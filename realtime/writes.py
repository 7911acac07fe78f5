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

from twisted.internet import tcp

from realtime import upstream

# What `write_now` was written and tested against (realtime/upstream.py).
TESTED_VERSIONS = {"twisted": "26.10.0"}

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


def install() -> None:
    """Under Daphne (which imports Twisted's TCP connections); a no-op elsewhere.

    Raises ImproperlyConfigured on an untested Twisted (realtime/upstream.py)."""
    if "daphne.server" in sys.modules:
        upstream.require_tested("realtime/writes.py", TESTED_VERSIONS)
        # The patch itself, which the type checker rightly flags: a method replaced on
        # Twisted's class, and for tcp.Connection only (the attribute is FileDescriptor's).
        tcp.Connection.write = write_now  # type: ignore[method-assign, assignment]
