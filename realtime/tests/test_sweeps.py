"""realtime/sweeps.py: Daphne's sweeps over every connection, a slice per loop turn.

On Daphne's real server and protocols over real loopback TCP (realtime/tests/loopback.py).
The turns are played by the test (`Turns`), where the reactor would run them; the
application sweep is compared with Daphne's own `application_checker`, run on the same
situation.
"""

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from daphne.server import Server
from twisted.python.failure import Failure

from realtime import sweeps
from realtime.tests import loopback
from realtime.tests.versions import another_version_tested, assert_allowed, assert_refused, keep

ReleasedServer = loopback.as_released("daphne.server").Server


@dataclass
class Turns:
    """What the sweeps ask the reactor to run later, run when the test says."""

    scheduled: list[tuple[float, Any, tuple[Any, ...]]] = field(default_factory=list)

    def call_later(self, delay: float, function: Any, *args: Any) -> None:
        self.scheduled.append((delay, function, args))

    def delays(self) -> list[float]:
        return [delay for delay, _, _ in self.scheduled]

    def run_next(self) -> None:
        _, function, args = self.scheduled.pop(0)
        function(*args)

    def sweep(self, server: Server, check: Any, every: float) -> None:
        """A whole sweep, turn after turn; what it schedules next is left scheduled."""
        sweeps.sweep(server, check, every, self.call_later)
        while self.delays() == [sweeps.SLICE_PAUSE]:
            self.run_next()
        assert self.delays() == [every]


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        if message["text"] == "fail":
            raise ValueError("the application failed")
        await send({"type": "websocket.send", "text": message["text"]})


async def deaf(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accepts, then never reads again (not even its disconnect)."""
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    await asyncio.Event().wait()


async def route(scope: dict[str, Any], receive: Any, send: Any) -> None:
    application = deaf if scope["path"].endswith("/deaf/") else echo
    await application(scope, receive, send)


def pings(ws: loopback.Socket) -> int:
    return sum(1 for event in ws.received() if event.opcode.name == "PING")


async def test_timeouts_are_checked_a_slice_per_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweeps, "SLICE", 3)
    server = loopback.daphne_server(echo)
    sockets = [await loopback.open_socket(server) for _ in range(8)]
    try:
        for ws in sockets:
            await loopback.opened(ws)
        # (The upgraded HTTP requests are connections until an application sweep.)
        Turns().sweep(server, sweeps._check_application, sweeps.APPLICATION_EVERY)
        assert list(server.connections) == [ws.protocol for ws in sockets]
        server.ping_interval = 0  # every check pings: which sockets were checked shows
        turns = Turns()

        sweeps.sweep(server, sweeps._check_timeouts, sweeps.TIMEOUTS_EVERY, turns.call_later)
        # The first three, and the rest on the next turns, SLICE_PAUSE apart.
        assert [pings(ws) for ws in sockets] == [1, 1, 1, 0, 0, 0, 0, 0]
        assert turns.delays() == [sweeps.SLICE_PAUSE]

        # A connection that went away between two slices is not checked.
        gone = sockets[4]
        del server.connections[gone.protocol]
        turns.run_next()
        assert [pings(ws) for ws in sockets] == [0, 0, 0, 1, 0, 1, 0, 0]
        assert turns.delays() == [sweeps.SLICE_PAUSE]
        turns.run_next()
        assert [pings(ws) for ws in sockets] == [0, 0, 0, 0, 0, 0, 1, 1]

        # Swept: the next sweep two seconds later, as Daphne's, over every connection.
        assert turns.delays() == [sweeps.TIMEOUTS_EVERY]
        turns.run_next()
        assert [pings(ws) for ws in sockets] == [1, 1, 1, 0, 0, 0, 0, 0]
    finally:
        for ws in sockets:
            loopback.close_socket(ws)


async def situation(server: Server) -> dict[str, loopback.Socket]:
    """One connection in each state the application sweep tells apart."""
    sockets = {
        "open": await loopback.open_socket(server),
        "failed": await loopback.open_socket(server),
        "closed": await loopback.open_socket(server),
        "closed, deaf": await loopback.open_socket(server, "/ws/deaf/"),
        "closed long ago, deaf": await loopback.open_socket(server, "/ws/deaf/"),
    }
    for ws in sockets.values():
        await loopback.opened(ws)
    sockets["failed"].send_text("fail")
    for name in ("closed", "closed, deaf", "closed long ago, deaf"):
        # The client goes: Daphne reads the end of the stream, and the connection is lost
        # (what the reactor does with doRead's answer).
        sockets[name].peer.close()
        sockets[name].conn.connectionLost(Failure(sockets[name].conn.doRead()))
    server.connections[sockets["closed long ago, deaf"].protocol]["disconnected"] -= 60
    ending = [server.connections[sockets[name].protocol] for name in ("failed", "closed")]
    async with asyncio.timeout(2):  # the applications that end, end
        while not all(details["application_instance"].done() for details in ending):
            await asyncio.sleep(0)
    return sockets


def outcome(server: Server, sockets: dict[str, loopback.Socket]) -> dict[str, Any]:
    """Per connection: still known to the server, its application (running, cancelled,
    forgotten), and the close code its client got."""
    seen = {}
    for name, ws in sockets.items():
        details = server.connections.get(ws.protocol)
        instance = details.get("application_instance") if details else None
        state = (
            "forgotten"
            if instance is None
            else "cancelled"
            if instance.cancelled()
            else ("done" if instance.done() else "running")
        )
        closes = [] if ws.peer.fileno() == -1 else loopback.close_frames(ws.received())
        seen[name] = (details is not None, state, [close.code for close in closes])
    return seen


@pytest.mark.parametrize("checker", ["Daphne's", "sliced"])
async def test_the_application_sweep_does_what_daphnes_does(
    checker: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweeps, "SLICE", 2)  # (five connections: three turns)
    server = loopback.daphne_server(route)
    sockets = await situation(server)
    try:
        with caplog.at_level(logging.WARNING, logger="daphne.server"):
            if checker == "Daphne's":
                ReleasedServer.application_checker(server)
            else:
                Turns().sweep(server, sweeps._check_application, sweeps.APPLICATION_EVERY)
        await asyncio.sleep(0)  # (a cancelled application is cancelled on the next turn)
        assert outcome(server, sockets) == {
            "open": (True, "running", []),
            # Reaped, its error logged, and its socket closed with 1011.
            "failed": (True, "forgotten", [1011]),
            "closed": (False, "forgotten", []),
            "closed, deaf": (True, "running", []),  # within application_close_timeout
            "closed long ago, deaf": (True, "cancelled", []),  # past it: cancelled
        }
        logged = [(record.levelname, record.getMessage()) for record in caplog.records]
        assert ("ERROR", "Exception inside application: the application failed") in logged
        assert any(
            level == "WARNING" and "took too long to shut down and was killed" in message
            for level, message in logged
        ), logged
        # The next sweep forgets the cancelled one.
        Turns().sweep(server, sweeps._check_application, sweeps.APPLICATION_EVERY)
        assert sockets["closed long ago, deaf"].protocol not in server.connections
    finally:
        for ws in sockets.values():
            loopback.close_socket(ws)


def test_a_finished_application_asking_to_stop_stops_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """(Daphne's own tests stop a server this way: KeyboardInterrupt from the application.)"""
    stopped = []
    server = loopback.daphne_server(echo)
    monkeypatch.setattr(server, "stop", lambda: stopped.append(True))
    instance: asyncio.Future[None] = asyncio.Future(loop=asyncio.new_event_loop())
    instance.set_exception(KeyboardInterrupt())
    protocol = object()
    server.connections[protocol] = {"application_instance": instance}
    sweeps._check_application(server, protocol)
    assert stopped == [True]
    assert server.connections[protocol] == {}  # reaped; open, so still known


def test_install_refuses_untested_daphne(
    monkeypatch: pytest.MonkeyPatch, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    keep(monkeypatch, Server, "application_checker", "timeout_checker")
    monkeypatch.setattr(sweeps, "_installed", False)
    settings.CHAT_ALLOW_UNVERIFIED_DAPHNE = False
    another_version_tested(monkeypatch, sweeps, "TESTED_VERSIONS", "daphne")
    assert_refused(sweeps.install, "realtime/sweeps.py", "daphne")
    settings.CHAT_ALLOW_UNVERIFIED_DAPHNE = True
    assert_allowed(sweeps.install, "realtime/sweeps.py", "daphne", caplog)
    assert Server.application_checker is sweeps.application_checker
    assert Server.timeout_checker is sweeps.timeout_checker


def test_a_sweep_started_by_daphne_schedules_itself_on_the_reactor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What Server.run() calls (its bound methods, a second after start) sweeps and
    schedules the next sweep on the reactor, Daphne's seconds apart."""
    from twisted.internet import reactor

    scheduled = []
    monkeypatch.setattr(reactor, "callLater", lambda *call: scheduled.append(call))
    keep(monkeypatch, Server, "application_checker", "timeout_checker")
    monkeypatch.setattr(Server, "application_checker", sweeps.application_checker)
    monkeypatch.setattr(Server, "timeout_checker", sweeps.timeout_checker)
    server = loopback.daphne_server(echo)
    started = time.time()
    server.application_checker()
    server.timeout_checker()
    assert [call[0] for call in scheduled] == [1.0, 2.0]
    assert time.time() - started < 1
