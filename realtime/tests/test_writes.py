"""realtime/writes.py on a real socket pair and a real (never run) reactor; its frames
on Daphne's real WebSocket protocol, over real TCP (loopback.py)."""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import abstract, tcp
from twisted.internet.protocol import Protocol
from twisted.internet.selectreactor import SelectReactor

from realtime import limits, writes
from realtime.consumer import HubSocket
from realtime.tests.loopback import (
    Socket,
    close_socket,
    daphne_server,
    open_socket,
    opened,
    texts,
)
from realtime.tests.versions import another_version_tested, assert_allowed, assert_refused, keep


@pytest.fixture
def connection(monkeypatch) -> Iterator[tuple[tcp.Connection, socket.socket, SelectReactor]]:
    monkeypatch.setattr(tcp.Connection, "write", writes.write_now)
    ours, peer = socket.socketpair()
    peer.settimeout(2)
    reactor = SelectReactor()
    conn = tcp.Connection(ours, Protocol(), reactor)
    conn.connected = True
    yield conn, peer, reactor
    reactor.removeAll()
    ours.close()
    peer.close()


def test_a_frame_reaches_the_socket_without_a_reactor_turn(connection) -> None:
    conn, peer, reactor = connection
    conn.write(b"a frame")
    assert peer.recv(100) == b"a frame"  # the reactor never ran
    assert conn not in reactor.getWriters()  # and the socket was never registered


def test_upstream_holds_a_frame_for_a_reactor_turn(connection, monkeypatch) -> None:
    """What writes.py works around (twisted/twisted#5303): Twisted's own write."""
    conn, peer, reactor = connection
    monkeypatch.setattr(tcp.Connection, "write", abstract.FileDescriptor.write)
    conn.write(b"a frame")
    assert conn in reactor.getWriters()  # registered with the reactor (epoll_ctl)...
    peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        peer.recv(100)  # ...and nothing sent
    conn.doWrite()  # the reactor's next turn
    peer.settimeout(2)
    assert peer.recv(100) == b"a frame"


def test_what_the_kernel_refuses_waits_in_order_for_the_reactor(connection) -> None:
    conn, peer, reactor = connection
    big = bytes(range(256)) * (32 * 1024)  # 8 MiB: more than a socket buffer takes
    conn.write(big)
    conn.write(b"and then this")  # must not overtake what is buffered
    assert conn in reactor.getWriters()
    received = bytearray()
    peer.setblocking(False)
    while len(received) < len(big) + len(b"and then this"):
        conn.doWrite()  # what the reactor does when the socket is writable
        with contextlib.suppress(BlockingIOError):  # nothing sent this time
            received += peer.recv(1 << 20)
    assert bytes(received) == big + b"and then this"
    assert conn not in reactor.getWriters()


def test_a_closing_connection_keeps_twisteds_own_path(connection) -> None:
    conn, peer, reactor = connection
    conn.disconnecting = True  # loseConnection() was called: Twisted flushes, then closes
    conn.write(b"last words")
    assert conn in reactor.getWriters()
    conn.doWrite()
    assert peer.recv(100) == b"last words"


def test_an_untested_twisted_is_refused(monkeypatch, settings) -> None:
    settings.CHAT_ALLOW_UNVERIFIED_DAPHNE = False
    another_version_tested(monkeypatch, writes, "TESTED_VERSIONS", "twisted")
    keep(monkeypatch, tcp.Connection, "write")
    keep(monkeypatch, writes, "_framed_sends", "_handle_reply")
    upstream_write = tcp.Connection.write
    assert_refused(writes.install, "realtime/writes.py", "twisted")
    assert tcp.Connection.write is upstream_write  # not patched


def test_the_operator_may_allow_an_untested_twisted(monkeypatch, settings, caplog) -> None:
    settings.CHAT_ALLOW_UNVERIFIED_DAPHNE = True
    another_version_tested(monkeypatch, writes, "TESTED_VERSIONS", "twisted")
    keep(monkeypatch, tcp.Connection, "write")
    keep(monkeypatch, writes, "_framed_sends", "_handle_reply")
    assert_allowed(writes.install, "realtime/writes.py", "twisted", caplog)
    assert tcp.Connection.write is writes.write_now


# Frames: framed once, written to every socket -----------------------------------------


class FramedProtocol(WebSocketProtocol):
    """Daphne's protocol with realtime/limits.py on this subclass only (as in production,
    where it is on Daphne's own class)."""


limits.bound_connections(FramedProtocol)


class SendingApplication:
    """An ASGI application that keeps the `send` Daphne gave it."""

    def __init__(self) -> None:
        self.send: Any = None
        self.started = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.send = send
        self.started.set()
        await asyncio.Event().wait()  # until cancelled


@pytest.fixture
async def ws(monkeypatch) -> AsyncIterator[tuple[Socket, Any]]:
    """An open WebSocket through Daphne, and the `send` Daphne gave its application;
    send_frame enabled as writes.install() does under Daphne."""
    monkeypatch.setattr(tcp.Connection, "write", writes.write_now)
    monkeypatch.setattr(writes, "_framed_sends", True)
    monkeypatch.setattr(writes, "_handle_reply", Server.handle_reply)
    app = SendingApplication()
    ws = await open_socket(daphne_server(app, FramedProtocol))
    await app.started.wait()
    ws.protocol.serverAccept()
    ws.received()  # the 101 response
    assert ws.protocol.state == ws.protocol.STATE_OPEN
    yield ws, app.send
    close_socket(ws)


def wire(ws: Socket) -> bytes:
    """What the server wrote to the client since the last call, as bytes on the wire."""
    ws.peer.setblocking(False)
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := ws.peer.recv(1 << 20):
            data += chunk
    return data


# Short, 16-bit and 64-bit payload lengths, and text that is not ASCII.
TEXTS = ["<p>hi</p>", "<p>é ✓ 😀</p>" * 20, "x" * 70_000]


@pytest.mark.parametrize("text", TEXTS, ids=["short", "medium", "long"])
async def test_a_frame_is_the_bytes_a_websocket_send_writes(ws, text) -> None:
    ws, send = ws
    await send({"type": "websocket.send", "text": text})  # Daphne's own path
    usual = wire(ws)
    assert writes.send_frame(send, writes.Frame(text))
    assert wire(ws) == usual
    ws.client.receive_data(usual + usual)
    assert texts(ws.client.events_received()) == [text, text]


async def test_one_frame_goes_to_many_sockets(monkeypatch) -> None:
    monkeypatch.setattr(tcp.Connection, "write", writes.write_now)
    monkeypatch.setattr(writes, "_framed_sends", True)
    monkeypatch.setattr(writes, "_handle_reply", Server.handle_reply)
    apps = [SendingApplication() for _ in range(3)]
    sockets = [await open_socket(daphne_server(app, FramedProtocol)) for app in apps]
    try:
        for app, ws in zip(apps, sockets, strict=True):
            await app.started.wait()
            ws.protocol.serverAccept()
            ws.received()
        frame = writes.Frame("<p>to everyone</p>")
        assert all(writes.send_frame(app.send, frame) for app in apps)
        for ws in sockets:
            assert texts(ws.received()) == ["<p>to everyone</p>"]
    finally:
        for ws in sockets:
            close_socket(ws)


async def test_anything_but_daphnes_send_takes_the_usual_path(ws, monkeypatch) -> None:
    ws, send = ws

    async def other_send(message: dict[str, Any]) -> None: ...

    assert not writes.send_frame(other_send, writes.Frame("x"))
    monkeypatch.setattr(writes, "_framed_sends", False)  # not installed (not under Daphne)
    assert not writes.send_frame(send, writes.Frame("x"))
    assert wire(ws) == b""


async def test_a_connection_that_is_not_plainly_open_takes_the_usual_path(ws) -> None:
    ws, send = ws
    ws.protocol.send_queue.append((b"", True))  # autobahn's own queue holds something
    assert not writes.send_frame(send, writes.Frame("x"))
    ws.protocol.send_queue.clear()
    ws.protocol._perMessageCompress = object()  # compression negotiated (Daphne never does)
    assert not writes.send_frame(send, writes.Frame("x"))
    ws.protocol._perMessageCompress = None
    ws.protocol.sendClose(code=1000)  # closing
    wire(ws)
    assert not writes.send_frame(send, writes.Frame("x"))
    assert wire(ws) == b""


async def test_a_message_over_the_size_limit_takes_the_usual_path(ws) -> None:
    ws, send = ws
    ws.protocol.maxMessagePayloadSize = 100  # Daphne's --websocket-max-message-size
    assert writes.send_frame(send, writes.Frame("x" * 100))
    assert not writes.send_frame(send, writes.Frame("é" * 51))  # 102 bytes: autobahn raises
    assert texts((ws.client.receive_data(wire(ws)), ws.client.events_received())[1]) == ["x" * 100]


async def test_a_socket_that_does_not_read_is_dropped_as_by_a_send(ws, settings) -> None:
    ws, send = ws
    settings.CHAT_SOCKET_MAX_BUFFERED_BYTES = 64 * 1024
    frame = writes.Frame("y" * 4096)
    for _ in range(10_000):  # the client reads nothing
        assert writes.send_frame(send, frame)  # taken, or dropped: never sent another way
        if getattr(ws.protocol, "dropped_unread", False):
            break
    assert ws.protocol.dropped_unread
    kept = limits.buffered_bytes(ws.conn)
    # Nothing more is kept for it, whichever path a later send takes (no longer open: the
    # usual one, which drops it too).
    if not writes.send_frame(send, frame):
        await send({"type": "websocket.send", "text": frame.text})
    assert limits.buffered_bytes(ws.conn) == kept


def test_an_untested_autobahn_is_refused_before_anything_is_patched(monkeypatch, settings) -> None:
    settings.CHAT_ALLOW_UNVERIFIED_DAPHNE = False
    another_version_tested(monkeypatch, writes, "FRAMES_TESTED_VERSIONS", "autobahn")
    keep(monkeypatch, tcp.Connection, "write")
    keep(monkeypatch, writes, "_framed_sends", "_handle_reply")
    monkeypatch.setattr(writes, "_framed_sends", False)
    upstream_write = tcp.Connection.write
    assert_refused(writes.install, "send_frame (realtime/writes.py)", "autobahn")
    assert tcp.Connection.write is upstream_write and not writes._framed_sends


class Echo(HubSocket):
    """A HubSocket that answers each frame with its text in capitals."""

    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=(text_data or "").upper())


@pytest.mark.django_db  # (channels closes old database connections around handlers)
async def test_a_sockets_own_text_is_written_as_a_frame(monkeypatch) -> None:
    monkeypatch.setattr(tcp.Connection, "write", writes.write_now)
    monkeypatch.setattr(writes, "_framed_sends", True)
    monkeypatch.setattr(writes, "_handle_reply", Server.handle_reply)
    framed = []
    send_frame = writes.send_frame

    def counting(send: Any, frame: writes.Frame) -> bool:
        framed.append(sent := send_frame(send, frame))
        return sent

    monkeypatch.setattr(writes, "send_frame", counting)
    ws = await open_socket(daphne_server(Echo.as_asgi(), FramedProtocol))
    try:
        await opened(ws)
        ws.send_text("hello", "é ✓")
        got: list[str] = []
        async with asyncio.timeout(2):
            while len(got) < 2:
                got += texts(ws.received())
                await asyncio.sleep(0.01)
        assert got == ["HELLO", "É ✓"]
        assert framed == [True, True]  # both written as frames, not through Daphne's send
    finally:
        close_socket(ws)
