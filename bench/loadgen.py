"""The load generator: many WebSocket clients in one asyncio loop, open-loop senders.

Each client is a bare asyncio Protocol speaking RFC 6455 with websockets' own pieces: its
handshake request and key check (websockets.http11, websockets.utils) and its frame
encoder with masking (websockets.frames). Frames from the server are read by a small
parser here rather than websockets' generator-based one: at 100,000 deliveries/s the
generator's ~12 us per frame made the load generator, not the server, the limit.

A measured message carries `bq:<window>:<sender>:<seq>:<sent_us>` in its text; every
receiver parses it back (digits and colons survive HTML escaping and JSON) and records
send-to-receive latency in its window, and checks that each sender's sequence numbers
arrive in order. Frames without the marker (presence, the composer) are only counted.
"""

import asyncio
import re
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request
from websockets.utils import accept_key, generate_key

MARKER = re.compile(rb"bq:(\d+):(\d+):(\d+):(\d+)")
CURSOR = b'id="chat-cursor"'
PRESENCE_LINE = b'class="presence-line'
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def now_us() -> int:
    return time.monotonic_ns() // 1000


@dataclass
class Window:
    """One measured step (or a barrier): what was sent with its id, and what arrived."""

    id: int
    receivers: int
    sent: int = 0
    delivered: int = 0
    out_of_order: int = 0
    first_send: float = 0.0
    last_send: float = 0.0
    last_arrival: float = 0.0
    latencies_us: array = field(default_factory=lambda: array("q"))
    send_lag_us: array = field(default_factory=lambda: array("q"))

    @property
    def expected(self) -> int:
        return self.sent * self.receivers


class HandshakeError(Exception):
    pass


class Client(asyncio.Protocol):
    """One WebSocket client; `fleet` gets its text frames."""

    def __init__(self, fleet: "Fleet", index: int, uri: str, origin: str, cookie: str) -> None:
        self.fleet = fleet
        self.index = index
        url = urlsplit(uri)
        self.key = generate_key()
        headers = Headers()
        headers["Host"] = url.netloc
        headers["Upgrade"] = "websocket"
        headers["Connection"] = "Upgrade"
        headers["Sec-WebSocket-Key"] = self.key
        headers["Sec-WebSocket-Version"] = "13"
        if origin:
            headers["Origin"] = origin
        if cookie:
            headers["Cookie"] = cookie
        self.request = Request(url.path + (f"?{url.query}" if url.query else ""), headers)
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.last_seq: dict[int, int] = {}
        self.close_code: int | None = None
        self.buffer = bytearray()
        self.fragments: list[bytes] | None = None
        self.open = False
        self.started_us = now_us()  # (its handshake began: made when it is about to)
        self.caught_up_us = 0  # when its first cursor frame came (our server's catch-up)

    # asyncio.Protocol

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request.serialize())

    def data_received(self, data: bytes) -> None:
        now = now_us()
        self.fleet.bytes_received += len(data)
        if not self.open:
            self.buffer += data
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = bytes(self.buffer[:end]).decode("latin-1"), bytes(self.buffer[end + 4 :])
            self.buffer.clear()
            if not self._accepted(head):
                self.opened.set_exception(HandshakeError(head.split("\r\n", 1)[0]))
                self._hang_up()
                return
            self.open = True
            self.opened.set_result(None)
            if not data:
                return
        chunk: bytes | bytearray = data
        if self.buffer:
            self.buffer += data
            chunk = self.buffer
        view, pos, size = chunk, 0, len(chunk)
        while size - pos >= 2:
            b0, b1 = view[pos], view[pos + 1]
            length, start = b1 & 0x7F, pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length, start = int.from_bytes(view[pos + 2 : pos + 4], "big"), pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, start = int.from_bytes(view[pos + 2 : pos + 10], "big"), pos + 10
            end = start + length
            if end > size:
                break
            self._frame(b0 & 0x0F, b0 & 0x80, bytes(view[start:end]), now)
            pos = end
        if pos < size:
            self.buffer = bytearray(view[pos:])
        elif self.buffer:
            self.buffer = bytearray()

    def _accepted(self, head: str) -> bool:
        status, _, rest = head.partition("\r\n")
        if status.split(" ")[1:2] != ["101"]:
            return False
        for line in rest.split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-accept":
                return value.strip() == accept_key(self.key)
        return False

    def _frame(self, opcode: int, fin: int, payload: bytes, now: int) -> None:
        if opcode == OP_TEXT and fin:
            self.fleet.on_text(self, payload, now)
        elif opcode in (OP_TEXT, OP_CONT):
            self.fragments = [*(self.fragments or []), payload]
            if fin:
                self.fleet.on_text(self, b"".join(self.fragments), now)
                self.fragments = None
        elif opcode == OP_PING:
            self._write(Frame(Opcode.PONG, payload))
        elif opcode == OP_CLOSE:
            self.close_code = Close.parse(payload).code if len(payload) >= 2 else 1005
            self._write(Frame(Opcode.CLOSE, payload[:2]))
            self._hang_up()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.lost.done():
            self.lost.set_result(None)
        self.fleet.on_lost(self)

    # Sending

    def _write(self, frame: Frame) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame.serialize(mask=True))

    def send_text(self, text: bytes) -> None:
        self._write(Frame(Opcode.TEXT, text))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._write(Frame(Opcode.CLOSE, Close(1000, "").serialize()))
            self.transport.close()

    def _hang_up(self) -> None:
        """Close the connection from data_received (where it always has its transport)."""
        if self.transport is not None:
            self.transport.close()


class Fleet:
    """The clients connected to one server, and the windows they record into."""

    def __init__(self, host: str, port: int, path: str, origin: str) -> None:
        self.host = host
        self.port = port
        self.uri = f"ws://{host}:{port}{path}"
        self.origin = origin
        self.clients: list[Client] = []
        self.windows: dict[int, Window] = {}
        self.next_seq: dict[int, int] = {}
        self.bytes_received = 0
        self.frames_other = 0
        self.frames_presence = 0
        self.frames_marked = 0
        self.late_or_unknown = 0
        self.lost_unexpectedly = 0
        self.closing = False
        self.last_frame = 0

    # Receiving

    def on_text(self, client: Client, data: bytes, now: int) -> None:
        # A frame may carry several messages (a server may batch what queued up).
        self.last_frame = now
        # Ours: the catch-up ends with the cursor (room.html#caught-up); presence changes
        # come as lines (room.html#presence-oob), one frame per room per tick.
        if not client.caught_up_us and CURSOR in data:
            client.caught_up_us = now
        if PRESENCE_LINE in data:
            self.frames_presence += 1
        marked = False
        for match in MARKER.finditer(data):
            marked = True
            wid, sender, seq, sent = match.groups()
            window = self.windows.get(int(wid))
            if window is None:
                self.late_or_unknown += 1
                continue
            window.delivered += 1
            window.latencies_us.append(now - int(sent))
            window.last_arrival = now
            sender, seq = int(sender), int(seq)
            if seq <= client.last_seq.get(sender, -1):
                window.out_of_order += 1
            else:
                client.last_seq[sender] = seq
        if marked:
            self.frames_marked += 1
        else:
            self.frames_other += 1

    def on_lost(self, client: Client) -> None:
        # A socket that never opened is counted by connect(), not here.
        if not self.closing and client.opened.done() and not client.opened.exception():
            self.lost_unexpectedly += 1

    # Connecting

    async def connect(self, cookies: list[str], concurrency: int = 64) -> tuple[int, list[str]]:
        """Open one client per cookie, at most `concurrency` handshakes in flight.

        Returns (opened, errors).
        """
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(concurrency)
        errors: list[str] = []

        async def one(cookie: str) -> None:
            async with gate:
                index = len(self.clients)
                port, uri, origin = self.address(index)
                client = Client(self, index, uri, origin, cookie)
                self.clients.append(client)
                try:
                    await loop.create_connection(lambda: client, self.host, port)
                    await asyncio.wait_for(client.opened, 30)
                except Exception as error:
                    errors.append(f"{type(error).__name__}: {error}")

        before = len(self.clients)
        await asyncio.gather(*(one(cookie) for cookie in cookies))
        fresh = self.clients[before:]
        return sum(1 for c in fresh if c.opened.done() and not c.opened.exception()), errors

    def address(self, index: int) -> tuple[int, str, str]:
        """Client `index`'s port, WebSocket URI and Origin."""
        return self.port, self.uri, self.origin

    def open_clients(self) -> list[Client]:
        return [c for c in self.clients if not c.lost.done() and c.opened.done()]

    async def close(self) -> None:
        self.closing = True
        for client in self.clients:
            client.close()
        if self.clients:
            await asyncio.wait([c.lost for c in self.clients], timeout=10)

    # Sending

    def new_window(self, wid: int) -> Window:
        window = Window(wid, receivers=len(self.open_clients()))
        self.windows[wid] = window
        return window

    def send_marked(
        self, window: Window, sender: Client, encode: Callable[[str], bytes], now: int
    ) -> None:
        seq = self.next_seq.get(sender.index, 0)
        self.next_seq[sender.index] = seq + 1
        sender.send_text(encode(f"bq:{window.id}:{sender.index}:{seq}:{now}"))
        window.sent += 1

    async def run_window(
        self,
        window: Window,
        senders: list[Client],
        messages_per_s: float,
        duration: float,
        encode: Callable[[str], bytes],
    ) -> None:
        """Send `messages_per_s` for `duration` s on an absolute schedule (open loop).

        Message k is due at start + k / rate whatever happened to the ones before; the
        senders take turns. Latency is stamped at the actual send, and how late each
        send was against its schedule is recorded apart (the generator's own lag).
        """
        count = max(1, round(messages_per_s * duration))
        interval_us = 1e6 / messages_per_s
        start = now_us() + 2000
        window.first_send = start
        for k in range(count):
            due = start + int(k * interval_us)
            now = now_us()
            if due > now:
                await asyncio.sleep((due - now) / 1e6)
                now = now_us()
            window.send_lag_us.append(now - due)
            self.send_marked(window, senders[k % len(senders)], encode, now)
        window.last_send = now_us()

    async def drain(self, window: Window, quiet_s: float = 1.5, cap_s: float = 10.0) -> None:
        """Wait until every expected delivery arrived, or nothing arrived for `quiet_s`
        (capped at `cap_s` after the last send): what is missing then is lost."""
        deadline = time.monotonic() + cap_s
        last, last_change = -1, time.monotonic()
        while window.delivered < window.expected and time.monotonic() < deadline:
            if window.delivered != last:
                last, last_change = window.delivered, time.monotonic()
            elif time.monotonic() - last_change > quiet_s:
                break
            await asyncio.sleep(0.01)

    async def quiet(self, idle_s: float = 0.5, cap_s: float = 120.0) -> float:
        """Wait until no frame arrived for `idle_s` (a presence storm settling)."""
        start = time.monotonic()
        self.last_frame = now_us()
        while time.monotonic() - start < cap_s:
            if now_us() - self.last_frame > idle_s * 1e6:
                break
            await asyncio.sleep(0.05)
        return time.monotonic() - start


class SplitFleet(Fleet):
    """A fleet whose clients alternate between several ports of one host (the processes
    of a scaled-out server, bench.servers.ServerPair): client i goes to ports[i % k], so
    that the first S clients (the senders) are on every process."""

    def __init__(self, host: str, ports: list[int], path: str, origin: str) -> None:
        super().__init__(host, ports[0], path, origin)
        self.ports = ports
        self.path = path

    def address(self, index: int) -> tuple[int, str, str]:
        port = self.ports[index % len(self.ports)]
        # (each process's own origin, as a page it served would send)
        return port, f"ws://{self.host}:{port}{self.path}", f"http://{self.host}:{port}"
