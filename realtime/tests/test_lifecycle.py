"""realtime/lifecycle.py: its two patches of Daphne and its graceful stop, on Daphne's real
protocol and server objects over real TCP (loopback.py), with a real channels consumer in
the process's real socket registry.

The patches are applied to subclasses (the classes Daphne uses stay as they are for the
rest of the test process); `inspect.unwrap` gives back what a patch replaced, which is
how each test shows the upstream behaviour the patch works around.
"""

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol

from realtime import lifecycle, sockets
from realtime.tests.loopback import (
    Socket,
    close_frame,
    close_frames,
    close_socket,
    daphne_server,
    open_socket,
    opened,
)
from realtime.tests.versions import another_version_tested, assert_allowed, assert_refused


class PatchedProtocol(WebSocketProtocol):
    """Daphne's protocol with `allow_close_codes`."""


class UpstreamProtocol(WebSocketProtocol):
    """Daphne's protocol as released, whatever this process patched."""

    serverClose = inspect.unwrap(WebSocketProtocol.serverClose)


class PatchedServer(Server):
    """Daphne's server with `cancel_applications_reliably`."""


class UpstreamServer(Server):
    """Daphne's server as released, whatever this process patched."""

    kill_all_applications = inspect.unwrap(Server.kill_all_applications)


lifecycle.allow_close_codes(PatchedProtocol)
lifecycle.cancel_applications_reliably(PatchedServer)


class ChatLikeConsumer(AsyncWebsocketConsumer):
    """What lifecycle needs of a consumer, as the chat's does it: it is in the process's
    socket registry while open, and closes with a code (here, the one it is sent)."""

    disconnects: list[int]

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' own dispatch first closes stale database connections (in a thread),
        # which a test without the database refuses; this consumer has no database.
        await getattr(self, get_handler_name(message))(message)

    async def connect(self) -> None:
        self.disconnects = []
        await self.accept()
        sockets.open_sockets.add(self)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.close(int(text_data or ""))

    async def disconnect(self, code: int) -> None:
        sockets.open_sockets.discard(self)
        self.disconnects.append(code)


async def open_sockets(server: Server, count: int) -> list[Socket]:
    opened_sockets = [await open_socket(server) for _ in range(count)]
    for ws in opened_sockets:
        await opened(ws)
    assert len(sockets.open_sockets) == count
    return opened_sockets


@pytest.fixture
async def chat() -> AsyncIterator[Callable[..., Any]]:
    """Opens sockets to a consumer through a Daphne server of their own (the patched
    protocol unless told otherwise), and closes them all at the end."""
    opened_sockets: list[Socket] = []

    async def open_to(
        count: int = 1, protocol: type = PatchedProtocol, server_class: type = Server
    ) -> list[Socket]:
        server = daphne_server(ChatLikeConsumer.as_asgi(), protocol, server_class)
        opened_sockets.extend(await open_sockets(server, count))
        return opened_sockets[-count:]

    yield open_to
    for ws in opened_sockets:
        close_socket(ws)


def application_of(ws: Socket) -> asyncio.Future[Any]:
    return ws.server.connections[ws.protocol]["application_instance"]


# allow_close_codes ---------------------------------------------------------------------


@pytest.mark.parametrize("code", [1012, 1013, 1003, 1008, 1009, 1000, 4000])
async def test_a_consumer_closes_with_the_code_it_chose(chat, code) -> None:
    (ws,) = await chat()
    ws.send_text(str(code))
    assert (await close_frame(ws)).code == code
    assert not application_of(ws).done()  # the consumer did not crash


async def test_upstream_refuses_1012_and_the_client_never_hears_of_it(chat) -> None:
    (ws,) = await chat(protocol=UpstreamProtocol)
    ws.send_text("1012")
    application = application_of(ws)
    await asyncio.wait([application], timeout=2)  # the consumer crashed...
    assert "invalid close code 1012" in str(application.exception())
    assert close_frames(ws.received()) == []  # ...and no close went out


@pytest.mark.parametrize("code", [1005, 1006, 1015, 2000, 5000])
async def test_an_invalid_code_still_raises_as_autobahn_would(chat, code) -> None:
    (ws,) = await chat()
    with pytest.raises(Exception, match=f"invalid close code {code}"):
        ws.protocol.serverClose(code)
    assert ws.protocol.state == ws.protocol.STATE_OPEN
    assert close_frames(ws.received()) == []


# cancel_applications_reliably ------------------------------------------------------------


def connections_without_an_application(server: Server) -> list[Any]:
    return [p for p, details in server.connections.items() if "application_instance" not in details]


async def test_daphnes_shutdown_cancels_every_application(chat) -> None:
    opened_sockets = await chat(2, server_class=PatchedServer)
    server = opened_sockets[0].server
    # Each handshake's HTTP request is still there, with no application (until Daphne's
    # application checker, a second later, if the reactor ran): what upstream trips on.
    assert len(connections_without_an_application(server)) == 2
    applications = [application_of(ws) for ws in opened_sockets]

    waiting = server.kill_all_applications()  # what the reactor's shutdown trigger calls

    await asyncio.wait_for(waiting.asFuture(asyncio.get_running_loop()), 2)
    assert all(application.cancelled() for application in applications)
    # Cancelled, as Daphne means it: no disconnect handler ran (lifecycle settles presence).
    assert all(ws.protocol.state == ws.protocol.STATE_OPEN for ws in opened_sockets)


async def test_upstream_cancels_nothing_after_a_handshake(chat) -> None:
    opened_sockets = await chat(2, server_class=UpstreamServer)
    server = opened_sockets[0].server
    assert connections_without_an_application(server)

    with pytest.raises(KeyError, match="application_instance"):
        server.kill_all_applications()

    await asyncio.sleep(0)
    assert not any(application_of(ws).done() for ws in opened_sockets)


async def test_finished_applications_are_not_cancelled_again(chat, caplog) -> None:
    (done, running) = await chat(2, server_class=PatchedServer)
    application_of(done).cancel()
    await asyncio.wait([application_of(done)], timeout=2)
    server = done.server

    with caplog.at_level(logging.INFO, logger="daphne.server"):
        waiting = server.kill_all_applications()
    await asyncio.wait_for(waiting.asFuture(asyncio.get_running_loop()), 2)

    assert application_of(running).cancelled()
    assert "Killed 1 pending application instances" in caplog.text


# graceful_stop ---------------------------------------------------------------------------


@pytest.fixture
def hooks(monkeypatch) -> list[str]:
    """No shutdown hooks but the test's own (the chat registers one when its app loads);
    what they did, in order."""
    monkeypatch.setattr(lifecycle, "_shutdown_hooks", [])
    return []


async def test_a_graceful_stop_closes_sockets_with_1012_then_runs_the_hooks_in_order(
    chat, hooks, monkeypatch, caplog
) -> None:
    monkeypatch.setattr(lifecycle, "STEP_TIMEOUT", 0.2)
    opened_sockets = await chat(3)

    async def first() -> None:
        closing = all(ws.protocol.state == ws.protocol.STATE_CLOSING for ws in opened_sockets)
        hooks.append(f"first (sockets closing: {closing})")

    async def failing() -> None:
        hooks.append("failing")
        raise RuntimeError("the database is gone")

    async def hanging() -> None:
        hooks.append("hanging")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            hooks.append("hanging: given up after STEP_TIMEOUT")
            raise

    async def last() -> None:
        hooks.append("last")

    for hook in (first, failing, hanging, last, first):  # (registered once each)
        lifecycle.on_shutdown(hook)
    bystander = asyncio.create_task(asyncio.Event().wait(), name="e.g. the heartbeat")

    with caplog.at_level(logging.INFO, logger="realtime.lifecycle"):
        await lifecycle.graceful_stop(grace=0)

    assert [(await close_frame(ws)).code for ws in opened_sockets] == [1012, 1012, 1012]
    assert hooks == [
        "first (sockets closing: True)",
        "failing",
        "hanging",
        "hanging: given up after STEP_TIMEOUT",
        "last",
    ]
    failures = [r for r in caplog.records if r.getMessage().startswith("stopping:") and r.exc_info]
    assert [r.exc_info[0] for r in failures] == [RuntimeError, TimeoutError]
    assert "stopping: closed 3 sockets" in caplog.text
    # What still ran was cancelled, the consumers with it (Daphne would cancel them too).
    assert bystander.cancelled()
    assert all(application_of(ws).cancelled() for ws in opened_sockets)


async def test_the_grace_is_waited_once_sockets_were_closed(chat, hooks) -> None:
    (ws,) = await chat()
    (consumer,) = sockets.open_sockets
    assert isinstance(consumer, ChatLikeConsumer)

    async def forget_presence() -> None:
        hooks.append("presence forgotten")

    lifecycle.on_shutdown(forget_presence)
    # (Its own task, which the test cancels in its grace: a graceful stop that ends
    # cancels every other task, the test's with it.)
    stop = asyncio.create_task(lifecycle.graceful_stop(grace=3600))
    assert (await close_frame(ws)).code == 1012

    # During the grace the process still does I/O: the client's answer completes the
    # close handshake, and the consumer hears of it.
    ws.send_pending()
    ws.reactor.runUntilCurrent()  # the connection is dropped (autobahn aborts it)
    async with asyncio.timeout(2):
        while not consumer.disconnects:
            await asyncio.sleep(0)
    assert consumer.disconnects == [1012]
    await asyncio.sleep(0.2)
    assert hooks == [] and not stop.done()
    stop.cancel()


async def test_with_no_socket_to_close_there_is_no_grace(hooks) -> None:
    async def forget_presence() -> None:
        hooks.append("presence forgotten")

    lifecycle.on_shutdown(forget_presence)
    async with asyncio.timeout(5):
        await lifecycle.graceful_stop(grace=3600)
    assert hooks == ["presence forgotten"]


# Versions (realtime/upstream.py) -------------------------------------------------------

PATCHES = [
    pytest.param(
        lifecycle.allow_close_codes,
        WebSocketProtocol,
        "serverClose",
        "CLOSE_CODES_TESTED_VERSIONS",
        "autobahn",
        id="allow_close_codes",
    ),
    pytest.param(
        lifecycle.cancel_applications_reliably,
        Server,
        "kill_all_applications",
        "CANCEL_TESTED_VERSIONS",
        "daphne",
        id="cancel_applications_reliably",
    ),
]


@pytest.mark.parametrize(("patch", "patched_class", "method", "tested", "package"), PATCHES)
def test_an_untested_version_is_refused(
    patch, patched_class, method, tested, package, monkeypatch, settings
) -> None:
    settings.CHAT_ALLOW_UNVERIFIED_DAPHNE = False
    another_version_tested(monkeypatch, lifecycle, tested, package)
    fresh = type("Fresh", (patched_class,), {})
    assert_refused(lambda: patch(fresh), patch.__name__, package)
    assert method not in vars(fresh)  # not patched


@pytest.mark.parametrize(("patch", "patched_class", "method", "tested", "package"), PATCHES)
def test_the_operator_may_allow_an_untested_version(
    patch, patched_class, method, tested, package, monkeypatch, settings, caplog
) -> None:
    settings.CHAT_ALLOW_UNVERIFIED_DAPHNE = True
    another_version_tested(monkeypatch, lifecycle, tested, package)
    fresh = type("Fresh", (patched_class,), {})
    assert_allowed(lambda: patch(fresh), patch.__name__, package, caplog)
    assert method in vars(fresh)  # patched
