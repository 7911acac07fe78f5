"""What one client can cost the server is bounded per connection.

Each test runs its own Daphne (the Procfile's flags) on a SQLite file and measures that
process's resident memory (RSS, psutil) while a hostile client does its worst, next to
well-behaved users who must keep being served. The figures are printed (run with -s);
the bounds asserted are generous multiples of what the limits allow, far below what the
same clients cost without them (README "Bounded per connection"):

- a flood: one logged-in socket sends small frames as fast as TCP allows;
- non-readers: 30 sockets that never read while another user posts;
- a socket cap: one user opens 100 sockets.
"""

import asyncio
import base64
import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from e2e import servers

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
CLOSE_POLICY_VIOLATION = 1008
LIVE = 20  # seconds a delivery may take before a test gives up (the host is loaded)

# The bounds: what the limits let the server hold, plus headroom for the allocator (freed
# buffers are not all returned to the system). A flood is cut once 64 frames or 1 MiB
# wait (CHAT_SOCKET_MAX_QUEUED_FRAMES/_BYTES): at most ~1 MiB, measured +0.1 MiB; without
# the limits the same 5 s cost +160 MiB. A non-reader is dropped once its unsent bytes
# pass CHAT_SOCKET_MAX_BUFFERED_BYTES (1 MiB), so 30 hold at most ~30 MiB at once
# (transient copies in Twisted's buffer joins come on top), measured +42 MiB; without the
# limit, +157 MiB, and growing with every post (the kernel's socket buffers hold the first
# ~400 posts, outside the RSS: hence 1,500 posts).
FLOOD_SECONDS = 5
FLOOD_RSS_BOUND = 30 * MiB
NON_READERS = 30
NON_READER_POSTS = 1500
NON_READER_BODY = "x" * 3990  # with its number, near the longest: ~4.3 KB of HTML each
NON_READER_RSS_BOUND = NON_READERS * MiB + 30 * MiB
CAP_SOCKETS = 100
CAP = 30  # CHAT_MAX_SOCKETS_PER_USER's default


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = servers.server_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'abuse.sqlite3'}",
        STATIC_ROOT=servers.collected_static_root(),
        CHAT_LOG_LEVEL="WARNING",  # a line per connect is I/O the measurement doesn't need
    )
    servers.migrate(env)
    return env


@pytest.fixture
def room(env: dict[str, str]) -> Iterator[str]:
    slug = f"abuse-{uuid.uuid4().hex[:8]}"
    yield slug


def rss(server: servers.DaphneProcess) -> int:
    return psutil.Process(server.process.pid).memory_info().rss


@asynccontextmanager
async def peak_rss(server: servers.DaphneProcess):
    """Samples the server's RSS every 20 ms while the block runs; yields a dict whose
    "before" and "peak" are filled in (peak once the block is done)."""
    figures = {"before": rss(server), "peak": 0}
    figures["peak"] = figures["before"]

    async def sample() -> None:
        while True:
            figures["peak"] = max(figures["peak"], rss(server))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    try:
        yield figures
    finally:
        sampler.cancel()
        figures["peak"] = max(figures["peak"], rss(server))
        figures["after"] = rss(server)


def report(what: str, figures: dict[str, int]) -> str:
    line = (
        f"{what}: RSS {figures['before'] / MiB:.1f} MiB before, peak {figures['peak'] / MiB:.1f}"
        f" MiB (+{(figures['peak'] - figures['before']) / MiB:.1f}),"
        f" {figures['after'] / MiB:.1f} MiB after"
    )
    print(line)
    return line


def stored_messages(env: dict[str, str], room: str) -> list[tuple[str, str]]:
    database = env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as db:
        return db.execute(
            "SELECT u.username, m.body FROM rooms_message m JOIN rooms_room r ON r.id = m.room_id"
            " JOIN auth_user u ON u.id = m.author_id WHERE r.slug = ? ORDER BY m.id",
            (room,),
        ).fetchall()


def composer_frame(body: str) -> str:
    return json.dumps({"body": body, "HEADERS": {"HX-Request": "true", "HX-Trigger": "composer"}})


def ws_url(server: servers.DaphneProcess, room: str) -> str:
    return server.url.replace("http://", "ws://", 1) + f"/ws/rooms/{room}/"


async def post_and_see(poster: servers.RoomSocket, body: str, count: int) -> None:
    """`poster` sends `body` and reads until its page shows `count` of its messages."""
    await poster.send(body)
    await poster.wait_for(lambda s: len(s.messages()) >= count, LIVE)


# A flood ------------------------------------------------------------------------------


async def flood(connection: Any, seconds: float) -> int:
    """Send small composer frames as fast as the connection takes them, for `seconds`
    or until the server closes it; returns how many were sent."""
    frame = composer_frame("flood")
    sent = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            await connection.send(frame)
            sent += 1
            if sent % 256 == 0:
                await asyncio.sleep(0)  # let the client read what comes back (the close)
    except ConnectionClosed:
        pass
    return sent


async def test_a_flood_is_closed_with_1008_and_costs_the_server_little(
    env: dict[str, str], room: str
) -> None:
    sessions = await asyncio.to_thread(servers.make_sessions, env, ["alice", "bob", "mallory"])
    await asyncio.to_thread(servers.make_room, env, room, "alice")
    with servers.daphne(env) as server:
        alice = await servers.RoomSocket.open(server.url, room, sessions["alice"], name="alice")
        bob = await servers.RoomSocket.open(server.url, room, sessions["bob"], name="bob")
        await post_and_see(alice, "before the flood", 1)
        await bob.wait_for(lambda s: ("alice", "before the flood") in s.messages(), LIVE)
        # The flooder reads everything the server sends (no receive queue limit), so it
        # sees the close frame however much came before it.
        flooder = await connect(
            ws_url(server, room),
            origin=Origin(server.url),
            additional_headers={"Cookie": f"sessionid={sessions['mallory']}"},
            proxy=None,
            max_queue=None,
            open_timeout=10,
        )
        async with peak_rss(server) as figures:
            sent = await flood(flooder, FLOOD_SECONDS)
            try:
                async with asyncio.timeout(LIVE):
                    await flooder.wait_closed()
            except TimeoutError:
                pass
        line = report(f"flood ({sent} frames sent)", figures)
        assert flooder.close_code == CLOSE_POLICY_VIOLATION, (flooder.close_code, line)
        assert figures["peak"] - figures["before"] < FLOOD_RSS_BOUND, line

        # Everyone else is still served, in order, and nothing stored was harmed.
        await post_and_see(alice, "after the flood", 2)
        await bob.wait_for(lambda s: ("alice", "after the flood") in s.messages(), LIVE)
        await alice.close()
        await bob.close()
        log = server.log()
    stored = stored_messages(env, room)
    assert stored[0] == ("alice", "before the flood") and stored[-1] == ("alice", "after the flood")
    flooded = stored[1:-1]
    # Whatever of the flood was handled before the close (often nothing: the queue fills
    # before the consumer takes a frame) is within the rate limit's burst, and intact.
    assert len(flooded) <= 10 and set(flooded) <= {("mallory", "flood")}, flooded
    assert bob.messages() == stored
    assert "Traceback" not in log, log


# Sockets that never read --------------------------------------------------------------


def open_non_reader(server: servers.DaphneProcess, room: str, sessionid: str) -> socket.socket:
    """A WebSocket handshake over a plain TCP socket whose receive buffer is as small as
    the kernel allows, which is then never read: what the server sends it piles up."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws/rooms/{room}/ HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: {server.url}\r\nCookie: sessionid={sessionid}\r\n\r\n"
    )
    sock.sendall(request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(1)
        assert chunk, f"handshake refused: {response!r}"
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def dropped(sock: socket.socket) -> bool:
    """True if the server has closed (or reset) the connection; reads what is left."""
    sock.settimeout(5)
    try:
        while sock.recv(1 << 16):
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    except TimeoutError:
        return False
    return True


async def test_sockets_that_never_read_are_dropped_and_cost_the_server_little(
    env: dict[str, str], room: str
) -> None:
    readers = [f"reader{n:02d}" for n in range(NON_READERS)]
    # Many posts from one user: the flood limits are not what this test is about.
    env = {**env, "CHAT_RATE_BURST": "100000", "CHAT_SOCKET_FRAME_BURST": "100000"}
    sessions = await asyncio.to_thread(servers.make_sessions, env, ["alice", "bob", *readers])
    await asyncio.to_thread(servers.make_room, env, room, "alice")
    with servers.daphne(env) as server:
        alice = await servers.RoomSocket.open(server.url, room, sessions["alice"], name="alice")
        bob = await servers.RoomSocket.open(server.url, room, sessions["bob"], name="bob")
        non_readers = [open_non_reader(server, room, sessions[name]) for name in readers]
        # Each non-reader's arrival is announced; once bob has seen them all, all are in.
        await bob.wait_for(lambda s: {*readers} <= s.online_usernames(), LIVE)
        await alice.wait_for(lambda s: {*readers} <= s.online_usernames(), LIVE)

        expected = [("alice", f"{n} {NON_READER_BODY}") for n in range(NON_READER_POSTS)]
        bob_reads = asyncio.create_task(
            bob.wait_for(lambda s: len(s.messages()) >= NON_READER_POSTS, 4 * LIVE)
        )
        async with peak_rss(server) as figures:
            for count, (_, body) in enumerate(expected, 1):
                await post_and_see(alice, body, count)
            await bob_reads
        line = report(f"{NON_READERS} non-readers, {NON_READER_POSTS} posts", figures)
        assert figures["peak"] - figures["before"] < NON_READER_RSS_BOUND, line
        assert server.log().count("not reading") == NON_READERS, line

        # Dropped, and their consumers saw it: everyone else is told they left.
        await bob.wait_for(lambda s: not ({*readers} & s.online_usernames()), LIVE)
        assert all(dropped(sock) for sock in non_readers)
        assert alice.messages() == bob.messages() == expected
        for sock in non_readers:
            sock.close()
        await alice.close()
        await bob.close()
        log = server.log()
    assert stored_messages(env, room) == expected
    assert log.count("not reading") == NON_READERS, log  # once each
    assert "Traceback" not in log, log


# One user, many sockets -----------------------------------------------------------------


async def outcome(socket: servers.RoomSocket) -> str | int:
    """ "open" if the socket answers a frame; else the code it was closed with.

    A frame that is not JSON is answered with a composer error by an open socket and
    dropped by one being closed: either way the socket has had its chance to answer."""
    try:
        await socket.connection.send("ping")
        async with asyncio.timeout(LIVE):
            await socket.connection.recv()
        return "open"
    except ConnectionClosed:
        return socket.connection.close_code or 1006


async def test_one_user_gets_at_most_the_socket_cap(env: dict[str, str], room: str) -> None:
    sessions = await asyncio.to_thread(servers.make_sessions, env, ["alice", "bob"])
    await asyncio.to_thread(servers.make_room, env, room, "alice")
    with servers.daphne(env) as server:
        bob = await servers.RoomSocket.open(server.url, room, sessions["bob"], name="bob")
        async with peak_rss(server) as figures:
            tabs = await asyncio.gather(
                *(
                    servers.RoomSocket.open(server.url, room, sessions["alice"], query="")
                    for _ in range(CAP_SOCKETS)
                )
            )
            outcomes = await asyncio.gather(*(outcome(tab) for tab in tabs))
        report(f"one user opening {CAP_SOCKETS} sockets", figures)
        assert sorted(outcomes, key=str).count("open") == CAP, outcomes
        assert outcomes.count(CLOSE_POLICY_VIOLATION) == CAP_SOCKETS - CAP, outcomes

        # The open ones work: a message from one reaches every one and bob.
        open_tabs = [tab for tab, result in zip(tabs, outcomes, strict=True) if result == "open"]
        await open_tabs[0].send("from one of many tabs")
        for tab in [*open_tabs, bob]:
            await tab.wait_for(lambda s: ("alice", "from one of many tabs") in s.messages(), LIVE)
        # A closed tab frees its place.
        await open_tabs[0].close()
        again = await servers.RoomSocket.open(server.url, room, sessions["alice"], query="")
        assert await outcome(again) == "open"
        for tab in [*open_tabs[1:], again, bob]:
            await tab.close()
        log = server.log()
    assert stored_messages(env, room) == [("alice", "from one of many tabs")]
    assert "Traceback" not in log, log
