"""realtime/limits.py on Daphne's real WebSocket protocol, over real TCP.

Each test builds Daphne's `WebSocketFactory` around a Daphne `Server` that is never run,
hands its protocol a real Twisted TCP connection (one end of a loopback pair, under a
`SelectReactor` that is never run either: the test calls `doRead`/`doWrite` where the
reactor would), and plays the client with `websockets`' protocol (frames masked and
parsed as a browser's would be). The application is an ASGI callable of the test's own
that handles only what the test lets it take from its queue.
"""

import asyncio
import contextlib
import select
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from daphne.server import Server
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from django.core.exceptions import ImproperlyConfigured
from twisted.internet import address, tcp
from twisted.internet.selectreactor import SelectReactor
from websockets.client import ClientProtocol
from websockets.frames import Close
from websockets.uri import parse_uri

from realtime import limits, upstream, writes


class LimitedProtocol(WebSocketProtocol):
    """Daphne's protocol with the limits installed on this subclass only: the real class
    stays as it is for the rest of the test process."""


limits.bound_connections(LimitedProtocol)


class LoopbackConnection(tcp.Connection):
    """Twisted's TCP connection (the class of Daphne's transports), on a socket we made."""

    def getPeer(self) -> address.IPv4Address:
        return address.IPv4Address("TCP", *self.socket.getpeername())

    def getHost(self) -> address.IPv4Address:
        return address.IPv4Address("TCP", *self.socket.getsockname())


class Application:
    """An ASGI application that takes a message from its queue only when told to."""

    def __init__(self) -> None:
        self.receive: Any = None
        self.started = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.receive = receive
        self.started.set()
        await asyncio.Event().wait()  # until cancelled

    async def take(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.receive(), 2)


@dataclass
class Socket:
    protocol: LimitedProtocol
    conn: LoopbackConnection
    reactor: SelectReactor
    peer: socket.socket
    client: ClientProtocol
    app: Application

    @property
    def queue(self) -> asyncio.Queue:
        return self.protocol.application_queue

    def send_text(self, *texts: str) -> None:
        """The client sends these frames; the server reads them (one reactor read)."""
        for text in texts:
            self.client.send_text(text.encode())
        data = b"".join(self.client.data_to_send())
        self.peer.sendall(data)
        self.read(len(data))

    def read(self, size: int) -> None:
        """The server reads `size` bytes the client sent, as its reactor would once the
        socket is readable (doRead takes what is there, up to 64 KiB at a time), for as
        long as it is reading."""
        taken = 0
        while taken < size and self.conn in self.reactor.getReaders():
            assert select.select([self.conn.socket], [], [], 2)[0], "nothing came"
            before = self.conn.socket.recv(0x10000, socket.MSG_PEEK)
            self.conn.doRead()
            taken += len(before)

    def received(self) -> list[Any]:
        """Frames the client has received so far: the server writes out what it holds,
        as the reactor would, and the client reads what the kernel has."""
        if not self.conn.disconnected:
            self.conn.doWrite()
        self.peer.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while data := self.peer.recv(1 << 20):
                self.client.receive_data(data)
        return self.client.events_received()


@pytest.fixture
async def ws(settings) -> AsyncIterator[Socket]:
    """An open WebSocket: handshake done, the application has taken its connect."""
    app = Application()
    server = Server(app, endpoints=["tcp:port=0"])
    server.connections = {}  # what Server.run() would have set up
    factory = WebSocketFactory(server, server="daphne")
    factory.protocol = LimitedProtocol
    factory.setProtocolOptions(maxFramePayloadSize=64 * 1024)
    listener = socket.create_server(("127.0.0.1", 0))
    peer = socket.create_connection(listener.getsockname())
    ours, _ = listener.accept()
    port = listener.getsockname()[1]
    listener.close()
    ours.setblocking(False)
    reactor = SelectReactor()
    protocol = factory.buildProtocol(None)
    conn = LoopbackConnection(ours, protocol, reactor)
    conn.connected = True
    protocol._raw_query_string = b""  # Daphne's HTTP protocol sets it before handing over
    protocol.makeConnection(conn)
    conn.startReading()

    client = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/ws/rooms/lobby/"))
    client.send_request(client.connect())
    peer.sendall(b"".join(client.data_to_send()))
    conn.doRead()  # the handshake request: Daphne starts the application
    await app.started.wait()
    protocol.serverAccept()  # what the application's websocket.accept does
    ws = Socket(protocol, conn, reactor, peer, client, app)
    ws.received()  # the 101 response
    assert client.handshake_exc is None and protocol.state == protocol.STATE_OPEN
    assert (await app.take())["type"] == "websocket.connect"
    yield ws
    for instance in [d.get("application_instance") for d in server.connections.values()]:
        if instance is not None:
            instance.cancel()
    reactor.removeAll()
    peer.close()
    ours.close()


def close_frames(events: list[Any]) -> list[Close]:
    return [Close.parse(e.data) for e in events if e.opcode.name == "CLOSE"]


def texts(events: list[Any]) -> list[str]:
    return [e.data.decode() for e in events if e.opcode.name == "TEXT"]


# Inbound: frames waiting for the application -------------------------------------------


async def test_frames_within_the_limit_reach_the_application_in_order(ws, settings) -> None:
    settings.CHAT_SOCKET_MAX_QUEUED_FRAMES = 8
    ws.send_text(*(f"frame {n}" for n in range(8)))
    assert [(await ws.app.take())["text"] for _ in range(8)] == [f"frame {n}" for n in range(8)]
    # Taken: there is room again for as many.
    ws.send_text(*(f"again {n}" for n in range(8)))
    assert ws.queue.qsize() == 8
    assert close_frames(ws.received()) == []


async def test_a_flood_is_closed_with_1008_and_nothing_of_it_is_kept(ws, settings) -> None:
    settings.CHAT_SOCKET_MAX_QUEUED_FRAMES = 8
    assert ws.conn in ws.reactor.getReaders()
    ws.send_text(*(f"flood {n}" for n in range(1000)))  # what one read of a flood holds

    (close,) = close_frames(ws.received())
    assert close.code == 1008
    # The frames queued before the limit are dropped too: nothing is handled for a flood.
    assert ws.queue.empty()
    # The rest of the flood is not even read.
    assert ws.conn not in ws.reactor.getReaders()
    # The application does not know yet: what it sends meanwhile goes nowhere, quietly.
    ws.protocol.serverSend("a room event")
    assert ws.received() == []
    # When the connection goes (autobahn's close handshake timeout; the client's answer
    # is not read), the application is told, as for any lost socket.
    ws.protocol.onCloseHandshakeTimeout()
    ws.reactor.runUntilCurrent()  # the abort's connectionLost
    assert await ws.app.take() == {"type": "websocket.disconnect", "code": 1006}


async def test_a_flood_of_big_frames_is_closed_at_the_byte_limit(ws, settings) -> None:
    settings.CHAT_SOCKET_MAX_QUEUED_BYTES = 64 * 1024
    ws.send_text(*("x" * 16 * 1024 for _ in range(4)))  # exactly the limit: kept
    assert ws.queue.qsize() == 4
    assert close_frames(ws.received()) == []
    ws.send_text("y")
    assert [c.code for c in close_frames(ws.received())] == [1008]
    assert ws.queue.empty()


def test_the_inbound_count_follows_what_the_application_takes(settings) -> None:
    settings.CHAT_SOCKET_MAX_QUEUED_FRAMES = 3
    settings.CHAT_SOCKET_MAX_QUEUED_BYTES = 100
    inbound = limits.InboundQueue()
    # Behind the connect message, not yet taken: 1 + frames queued.
    assert [inbound.admit(queued, 10) for queued in (1, 2, 3)] == [True, True, True]
    assert not inbound.admit(4, 10)  # a fourth frame waiting: refused
    assert (len(inbound.sizes), inbound.bytes) == (3, 30)
    # The application took the connect and two frames: one frame is left.
    assert inbound.admit(1, 60)
    assert (len(inbound.sizes), inbound.bytes) == (2, 70)
    assert not inbound.admit(2, 31)  # 101 bytes would wait
    assert inbound.admit(0, 100)  # all taken: a frame of the whole limit fits


async def test_frames_parsed_after_the_close_are_dropped(ws, settings) -> None:
    settings.CHAT_SOCKET_MAX_QUEUED_FRAMES = 2
    ws.send_text("one", "two", "three")
    assert ws.queue.empty()
    ws.conn.startReading()  # as if the reactor read once more after all
    ws.send_text("four")
    assert ws.queue.empty()
    assert [c.code for c in close_frames(ws.received())] == [1008]


async def test_a_flood_is_logged_once(ws, settings, caplog) -> None:
    settings.CHAT_SOCKET_MAX_QUEUED_FRAMES = 2
    ws.send_text(*("x" for _ in range(50)))
    ws.conn.startReading()
    ws.send_text(*("x" for _ in range(50)))
    lines = [r.getMessage() for r in caplog.records if r.name == "realtime.limits"]
    assert len(lines) == 1 and "sending faster than it is served" in lines[0], lines


# Outbound: bytes the client has not read -------------------------------------------------


def fill_kernel(ws: Socket, frame: str) -> int:
    """Send `frame` until the kernel takes no more of it (the client reads nothing), as
    the reactor would write it out; returns how many were sent."""
    sent = 0
    while limits.buffered_bytes(ws.conn) == 0:
        ws.protocol.serverSend(frame)
        sent += 1
        ws.conn.doWrite()
    return sent


async def test_a_socket_that_does_not_read_is_dropped_past_the_limit(ws, settings) -> None:
    settings.CHAT_SOCKET_MAX_BUFFERED_BYTES = 256 * 1024
    frame = "x" * 4096
    fill_kernel(ws, frame)
    # Everything the kernel refuses is held in Twisted's buffers, up to the limit...
    while limits.buffered_bytes(ws.conn) <= 256 * 1024:
        ws.protocol.serverSend(frame)
        assert ws.protocol.state == ws.protocol.STATE_OPEN
    held = limits.buffered_bytes(ws.conn)
    assert held <= 256 * 1024 + len(frame) + 16  # one frame (and its header) over at most
    # ...and the next send drops the connection instead of holding more.
    ws.protocol.serverSend(frame)
    assert ws.protocol.state == ws.protocol.STATE_CLOSED
    ws.reactor.runUntilCurrent()  # the abort's connectionLost
    assert ws.conn.disconnected
    assert await ws.app.take() == {"type": "websocket.disconnect", "code": 1006}
    # The peer sees its connection reset (nothing more is sent, no close frame).
    ws.peer.setblocking(True)
    ws.peer.settimeout(2)
    with pytest.raises(ConnectionResetError):
        while ws.peer.recv(1 << 20):
            pass


async def test_an_event_sent_after_the_client_closed_is_dropped_quietly(ws) -> None:
    # The client's close is in; its disconnect has not reached the application yet, and
    # a room event is sent meanwhile: autobahn raised Disconnected, a traceback per event.
    ws.client.send_close(1000)
    data = b"".join(ws.client.data_to_send())
    ws.peer.sendall(data)
    ws.read(len(data))
    assert ws.protocol.state in (ws.protocol.STATE_CLOSING, ws.protocol.STATE_CLOSED)

    ws.protocol.serverSend("a room event, too late")

    assert texts(ws.received()) == []


async def test_a_socket_that_reads_is_never_dropped(ws, settings) -> None:
    settings.CHAT_SOCKET_MAX_BUFFERED_BYTES = 64 * 1024
    frames: list[str] = []
    for n in range(200):  # 800 KiB in all, far more than the limit, read as it comes
        ws.protocol.serverSend(f"{n:04d}" + "x" * 4092)
        frames += texts(ws.received())
        while limits.buffered_bytes(ws.conn):
            frames += texts(ws.received())
    while len(frames) < 200 and select.select([ws.peer], [], [], 2)[0]:  # the last bytes
        frames += texts(ws.received())
    assert ws.protocol.state == ws.protocol.STATE_OPEN
    assert [frame[:4] for frame in frames] == [f"{n:04d}" for n in range(200)]


async def test_dropping_is_logged_once(ws, settings, caplog) -> None:
    settings.CHAT_SOCKET_MAX_BUFFERED_BYTES = 16 * 1024
    fill_kernel(ws, "y" * 4096)
    for _ in range(20):
        ws.protocol.serverSend("y" * 4096)
    lines = [r.getMessage() for r in caplog.records if r.name == "realtime.limits"]
    assert len(lines) == 1 and "not reading" in lines[0], lines


def test_buffered_bytes_counts_twisteds_buffers_and_follows_wrappers() -> None:
    ours, peer = socket.socketpair()
    try:
        conn = tcp.Connection(ours, None, SelectReactor())
        assert limits.buffered_bytes(conn) == 0
        conn.dataBuffer, conn.offset = b"0123456789", 4  # 4 of them sent already
        conn._tempDataBuffer, conn._tempDataLen = [b"abc", b"de"], 5
        assert limits.buffered_bytes(conn) == 6 + 5

        class Wrapper:  # what a TLS transport looks like from the protocol
            transport = conn

        assert limits.buffered_bytes(Wrapper()) == 11
        assert limits.buffered_bytes(None) == 0
    finally:
        ours.close()
        peer.close()


# Versions ------------------------------------------------------------------------------


def test_the_tested_versions_are_the_installed_ones() -> None:
    assert upstream.require_tested("socket_limits", limits.TESTED_VERSIONS) == []
    assert upstream.require_tested("twisted_writes", writes.TESTED_VERSIONS) == []


def test_an_untested_version_refuses_to_start(monkeypatch, settings) -> None:
    settings.CHAT_ALLOW_UNVERIFIED_DAPHNE = False
    monkeypatch.setattr(limits, "_installed", False)
    monkeypatch.setattr(limits, "TESTED_VERSIONS", {"autobahn": "23.1.2"})
    with pytest.raises(ImproperlyConfigured) as refused:
        limits.install()
    message = str(refused.value)
    assert "realtime/limits.py" in message
    assert "autobahn 26.10.2 (tested with 23.1.2)" in message
    assert "CHAT_ALLOW_UNVERIFIED_DAPHNE=true" in message
    assert not limits._installed

    monkeypatch.setattr(writes, "TESTED_VERSIONS", {"twisted": "24.3.0"})
    with pytest.raises(ImproperlyConfigured, match=r"twisted 26\.10\.0 \(tested with 24\.3\.0\)"):
        writes.install()


def test_the_operator_may_allow_an_untested_version(settings, caplog) -> None:
    settings.CHAT_ALLOW_UNVERIFIED_DAPHNE = True
    differences = upstream.require_tested(
        "socket_limits", {"daphne": "4.1.0", "twisted": "26.10.0"}
    )
    assert differences == ["daphne 4.2.3 (tested with 4.1.0)"]
    assert "socket_limits applied to untested versions" in caplog.text
