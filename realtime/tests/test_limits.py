"""realtime/limits.py on Daphne's real WebSocket protocol, over real TCP (loopback.py).

The application is an ASGI callable of the test's own that handles only what the test
lets it take from its queue.
"""

import asyncio
import select
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.selectreactor import SelectReactor

from realtime import limits
from realtime.tests.loopback import (
    Socket,
    as_released,
    close_frames,
    close_socket,
    daphne_server,
    open_socket,
    texts,
)
from realtime.tests.versions import another_version_tested, assert_allowed, assert_refused, keep


class LimitedProtocol(WebSocketProtocol):
    """Daphne's protocol with the limits installed on this subclass only: the real class
    stays as it is for the rest of the test process."""


limits.bound_connections(LimitedProtocol)


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


class ReleasedProtocol(as_released("daphne.ws_protocol").WebSocketProtocol):  # type: ignore[misc]
    """Daphne's protocol as released (whatever this process patched): what limits.py
    works around."""


@pytest.fixture
async def ws(request, settings) -> AsyncIterator[Socket]:
    """An open WebSocket: handshake done, the application has taken its connect. Daphne's
    protocol with the limits, or the one `@pytest.mark.parametrize("ws", [...], indirect=True)`
    names."""
    app = Application()
    ws = await open_socket(daphne_server(app, getattr(request, "param", LimitedProtocol)))
    await app.started.wait()
    ws.protocol.serverAccept()  # what the application's websocket.accept does
    ws.received()  # the 101 response
    assert ws.client.handshake_exc is None and ws.protocol.state == ws.protocol.STATE_OPEN
    assert (await app.take())["type"] == "websocket.connect"
    yield ws
    close_socket(ws)


# Inbound: frames waiting for the application -------------------------------------------


async def test_frames_within_the_limit_reach_the_application_in_order(ws, settings) -> None:
    settings.CHAT_SOCKET_MAX_QUEUED_FRAMES = 8
    ws.send_text(*(f"frame {n}" for n in range(8)))
    assert [(await ws.application.take())["text"] for _ in range(8)] == [
        f"frame {n}" for n in range(8)
    ]
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
    assert await ws.application.take() == {"type": "websocket.disconnect", "code": 1006}


async def test_a_flood_of_big_frames_is_closed_at_the_byte_limit(ws, settings) -> None:
    settings.CHAT_SOCKET_MAX_QUEUED_BYTES = 64 * 1024
    ws.send_text(*("x" * 16 * 1024 for _ in range(4)))  # exactly the limit: kept
    assert ws.queue.qsize() == 4
    assert close_frames(ws.received()) == []
    ws.send_text("y")
    assert [c.code for c in close_frames(ws.received())] == [1008]
    assert ws.queue.empty()


@pytest.mark.parametrize("ws", [ReleasedProtocol], indirect=True)
async def test_upstream_queues_a_whole_flood(ws, settings) -> None:
    settings.CHAT_SOCKET_MAX_QUEUED_FRAMES = 8
    ws.send_text(*(f"flood {n}" for n in range(1000)))
    assert ws.queue.qsize() == 1000  # and so on, for as long as the client sends
    assert close_frames(ws.received()) == []
    assert ws.conn in ws.reactor.getReaders()


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
    assert await ws.application.take() == {"type": "websocket.disconnect", "code": 1006}
    # The peer sees its connection reset (nothing more is sent, no close frame).
    ws.peer.setblocking(True)
    ws.peer.settimeout(2)
    with pytest.raises(ConnectionResetError):
        while ws.peer.recv(1 << 20):
            pass


@pytest.mark.parametrize("ws", [ReleasedProtocol], indirect=True)
async def test_upstream_holds_whatever_a_client_does_not_read(ws, settings) -> None:
    settings.CHAT_SOCKET_MAX_BUFFERED_BYTES = 64 * 1024
    frame = "x" * 4096
    fill_kernel(ws, frame)
    for _ in range(64):  # 256 KiB more, four times the limit
        ws.protocol.serverSend(frame)
    assert limits.buffered_bytes(ws.conn) > 4 * 64 * 1024
    assert ws.protocol.state == ws.protocol.STATE_OPEN


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
        conn = tcp.Connection(ours, Protocol(), SelectReactor())
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


def test_an_untested_autobahn_is_refused(monkeypatch, settings) -> None:
    settings.CHAT_ALLOW_UNVERIFIED_DAPHNE = False
    another_version_tested(monkeypatch, limits, "TESTED_VERSIONS", "autobahn")
    monkeypatch.setattr(limits, "_installed", False)
    assert_refused(limits.install, "realtime/limits.py", "autobahn")
    assert not limits._installed


def test_the_operator_may_allow_an_untested_daphne(monkeypatch, settings, caplog) -> None:
    settings.CHAT_ALLOW_UNVERIFIED_DAPHNE = True
    another_version_tested(monkeypatch, limits, "TESTED_VERSIONS", "daphne")
    keep(monkeypatch, limits, "_installed")
    keep(monkeypatch, WebSocketProtocol, "onMessage", "serverSend", "_socket_limits")
    limits._installed = False
    assert_allowed(limits.install, "realtime/limits.py", "daphne", caplog)
    assert limits._installed and vars(WebSocketProtocol)["_socket_limits"]
