"""Daphne's real protocols over a real loopback TCP pair, with no reactor running.

`open_socket` builds Daphne's HTTP and WebSocket factories around a Daphne `Server` that is
never run, hands Daphne's HTTP channel a real Twisted TCP connection (one end of a
loopback pair, under a `SelectReactor` that is never run either: the test calls
`doRead`/`doWrite` where the reactor would), and plays the client with `websockets`'
protocol (frames masked and parsed as a browser's would be). The handshake takes Daphne's
own path: `WebRequest.process` sees the Upgrade header and hands the connection over to
the WebSocket protocol, which starts the ASGI application.
"""

import asyncio
import contextlib
import importlib.util
import select
import socket
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from daphne.http_protocol import HTTPFactory
from daphne.server import Server
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from twisted.internet import address, tcp
from twisted.internet.selectreactor import SelectReactor
from websockets.client import ClientProtocol
from websockets.frames import Close
from websockets.uri import parse_uri


class LoopbackConnection(tcp.Connection):
    """Twisted's TCP connection (the class of Daphne's transports), on a socket we made."""

    def getPeer(self) -> address.IPv4Address:
        return address.IPv4Address("TCP", *self.socket.getpeername())

    def getHost(self) -> address.IPv4Address:
        return address.IPv4Address("TCP", *self.socket.getsockname())


@dataclass
class Socket:
    """One WebSocket: Daphne's protocol on our end, the client's protocol on the other."""

    server: Server
    application: Any  # the ASGI application Daphne started for it
    protocol: Any  # Daphne's WebSocketProtocol (or the test's subclass of it)
    conn: LoopbackConnection
    reactor: SelectReactor
    peer: socket.socket
    client: ClientProtocol

    @property
    def queue(self) -> asyncio.Queue:
        return self.protocol.application_queue

    def send_text(self, *texts: str) -> None:
        """The client sends these frames; the server reads them (one reactor read)."""
        for text in texts:
            self.client.send_text(text.encode())
        self.send_pending()

    def send_pending(self) -> None:
        """The client's protocol output (frames, its close) goes out; the server reads it."""
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

    def application_instances(self) -> list[asyncio.Future[Any]]:
        """The server's application instances, as its `connections` hold them."""
        instances = (d.get("application_instance") for d in self.server.connections.values())
        return [instance for instance in instances if instance is not None]


def daphne_server(
    application: Any, protocol_class: type = WebSocketProtocol, server_class: type = Server
) -> Server:
    """A Daphne server set up as `Server.run()` would, without running: its factories
    time out on a reactor of its own that never runs (`server.http_factory.reactor`)."""
    server = server_class(application, endpoints=["tcp:port=0"])
    server.connections = {}
    server.http_factory = HTTPFactory(server)
    server.http_factory.reactor = SelectReactor()
    server.http_factory.timeOut = None
    server.ws_factory = WebSocketFactory(server, server="daphne")
    server.ws_factory.protocol = protocol_class
    server.ws_factory.setProtocolOptions(allowNullOrigin=True, maxFramePayloadSize=64 * 1024)
    return server


async def open_socket(server: Server, path: str = "/ws/rooms/lobby/") -> Socket:
    """A WebSocket handshake through Daphne, as far as Daphne takes it by itself: the
    application is started with the handshake's scope, and accepts (or not) on its own."""
    reactor = server.http_factory.reactor
    listener = socket.create_server(("127.0.0.1", 0))
    peer = socket.create_connection(listener.getsockname())
    ours, _ = listener.accept()
    port = listener.getsockname()[1]
    listener.close()
    ours.setblocking(False)
    channel = server.http_factory.buildProtocol(None)
    conn = LoopbackConnection(ours, channel, reactor)
    conn.connected = True
    channel.makeConnection(conn)
    conn.startReading()

    client = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"))
    client.send_request(client.connect())
    peer.sendall(b"".join(client.data_to_send()))
    conn.doRead()  # the handshake request: Daphne upgrades it and starts the application
    protocol = conn.protocol
    assert isinstance(protocol, server.ws_factory.protocol), protocol
    return Socket(server, server.application, protocol, conn, reactor, peer, client)


async def opened(ws: Socket) -> None:
    """Wait for the application's accept to go out, and the client to read it."""
    async with asyncio.timeout(2):
        while ws.protocol.state != ws.protocol.STATE_OPEN:
            await asyncio.sleep(0)
    ws.received()  # the 101 response
    assert ws.client.handshake_exc is None, ws.client.handshake_exc


async def close_frame(ws: Socket) -> Close:
    """The close frame the server sends, once the application has sent it (the frames
    before it are dropped)."""
    async with asyncio.timeout(2):
        while not (closes := close_frames(ws.received())):
            await asyncio.sleep(0)  # the application runs
    (close,) = closes
    return close


def close_socket(ws: Socket) -> None:
    """Cancel what still runs of the application and close both ends."""
    for instance in ws.application_instances():
        instance.cancel()
    ws.reactor.removeAll()
    ws.peer.close()
    if hasattr(ws.conn, "socket"):  # (Twisted closed it already if the connection was lost)
        ws.conn.socket.close()


def close_frames(events: list[Any]) -> list[Close]:
    return [Close.parse(e.data) for e in events if e.opcode.name == "CLOSE"]


def texts(events: list[Any]) -> list[str]:
    return [e.data.decode() for e in events if e.opcode.name == "TEXT"]


def as_released(module_name: str) -> ModuleType:
    """A fresh copy of an upstream module, run from its source: its classes are as
    released, whatever this process patched in the module everyone else uses."""
    spec = importlib.util.find_spec(module_name)
    assert spec is not None and spec.loader is not None, module_name
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
