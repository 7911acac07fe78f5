"""realtime/footprint.py: what an open socket keeps in Daphne, autobahn and Twisted.

Through Daphne's real protocols over a real loopback TCP pair (realtime/tests/loopback.py):
the handshake takes Daphne's own upgrade path."""

import asyncio
from typing import Any

import pytest
from daphne.http_protocol import WebRequest
from daphne.server import Server
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from twisted.web.http import HTTPChannel

from realtime import footprint
from realtime.tests import loopback


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The patches on Daphne's classes for this test only."""
    monkeypatch.setattr(Server, "create_application", footprint.create_application)
    monkeypatch.setattr(
        WebRequest, "process", footprint.release_upgraded_request(WebRequest.process)
    )
    monkeypatch.setattr(
        WebSocketFactory,
        "buildProtocol",
        footprint.options_on_class(WebSocketFactory.buildProtocol),
    )


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accepts, then sends back every text frame until the disconnect."""
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "text": message["text"]})


async def test_a_socket_works_as_before_with_less_kept(installed: None) -> None:
    server = loopback.daphne_server(echo)
    ws = await loopback.open_socket(server)
    try:
        await loopback.opened(ws)
        # The application's queue is the slim one, and carries every frame in order.
        assert isinstance(ws.queue, footprint.SlimQueue)
        ws.send_text("one", "two", "three")
        async with asyncio.timeout(2):
            while len(got := loopback.texts(ws.received())) < 3:
                await asyncio.sleep(0)
        assert got == ["one", "two", "three"]
        # The upgraded HTTP channel is not its transport's producer (nor kept by it).
        assert not isinstance(ws.conn.producer, HTTPChannel)
        # The factory's options are read from the protocol's class, not copied onto it.
        options = set(WebSocketProtocol.CONFIG_ATTRS)
        assert not options & set(vars(ws.protocol)), options & set(vars(ws.protocol))
        assert ws.protocol.maxFramePayloadSize == 64 * 1024  # (loopback's factory's)
        accept = server.ws_factory.perMessageCompressionAccept
        assert ws.protocol.perMessageCompressionAccept is accept  # (not bound to it)
    finally:
        loopback.close_socket(ws)


async def test_the_slim_queue_is_a_fifo_whose_getter_waits() -> None:
    queue = footprint.SlimQueue()
    assert queue.empty() and queue.qsize() == 0
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.put_nowait("a")
    queue.put_nowait("b")
    assert await getter == "a"
    assert queue.qsize() == 1 and queue.get_nowait() == "b"
    # A cancelled get takes nothing: the next one gets what came.
    cancelled = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    queue.put_nowait("c")
    assert await queue.get() == "c"
