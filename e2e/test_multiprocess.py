"""Many processes, one chat: two Daphnes on one PostgreSQL database and one Redis.

Users are signed up through the real form and talk through real sockets (`websockets`),
each to the process a load balancer might have sent them to. No browser: what the page
would show is read from the pushed fragments (servers.RoomSocket).

Also here, because they need several processes or a Redis to stop: presence when a
process is killed (-9) or stopped (SIGTERM, realtime/lifecycle.py), and /healthz
while Redis or the database is away.

Needs redis-server and the local PostgreSQL: skipped without them, failed in CI.
"""

import asyncio
import os
import signal
import time
import uuid

import psycopg
import pytest

from e2e import servers

pytestmark = [pytest.mark.e2e, pytest.mark.multiprocess]

# Presence for these tests: rows go stale 3 s after their process stops heartbeating
# (every second), and a stopping process gives its clients 1 s to reconnect elsewhere.
PRESENCE_TTL = 3
SHUTDOWN_GRACE = 1
# A ghost lasts at most TTL + one heartbeat (rooms/presence.py); the rest is slack.
GHOST_BOUND = PRESENCE_TTL + PRESENCE_TTL / 3
LIVE = 10  # seconds a live update may take before a test gives up


@pytest.fixture(scope="module")
def env(database_url: str, redis_server: servers.RedisProcess) -> dict[str, str]:
    env = servers.server_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_server.url,
        STATIC_ROOT=servers.collected_static_root(),
        CHAT_PRESENCE_TTL=str(PRESENCE_TTL),
        CHAT_SHUTDOWN_GRACE=str(SHUTDOWN_GRACE),
        CHAT_LAYER_CHECK_SECONDS="0.5",
        CHAT_RATE_BURST="100",
    )
    servers.migrate(env)
    return env


@pytest.fixture
def room() -> str:
    return f"room-{uuid.uuid4().hex[:10]}"


def name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:6]}"


def lines(log: str, text: str) -> list[str]:
    return [line for line in log.splitlines() if text in line]


def presence(username: str, event: str):
    return lambda socket: f"{username} {event}" in socket.presence_lines()


def online(*usernames: str):
    return lambda socket: socket.online_usernames() == set(usernames)


async def test_two_processes_serve_one_chat(env: dict[str, str], room: str) -> None:
    alice_name, bob_name = name("alice"), name("bob")
    with servers.daphne(env) as one, servers.daphne(env) as two:
        alice = servers.sign_up(one.url, alice_name)
        bob = servers.sign_up(two.url, bob_name)  # one database: sessions work anywhere
        assert alice.create_room(room).status == 200

        alice_socket = await servers.RoomSocket.open(one.url, room, alice.sessionid)
        await alice_socket.wait_for(online(alice_name))
        bob_socket = await servers.RoomSocket.open(two.url, room, bob.sessionid)

        # Presence crosses processes: the join line and the online list, both ways.
        await bob_socket.wait_for(online(alice_name, bob_name), LIVE)
        await alice_socket.wait_for(presence(bob_name, "joined"), LIVE)
        await alice_socket.wait_for(online(alice_name, bob_name), LIVE)

        # Messages, both ways.
        await alice_socket.send("hello from process one")
        await bob_socket.wait_for(
            lambda s: (alice_name, "hello from process one") in s.messages(), LIVE
        )
        await bob_socket.send("and back from process two")
        await alice_socket.wait_for(
            lambda s: (bob_name, "and back from process two") in s.messages(), LIVE
        )

        # Private messages reach the recipient on the other process, and the sender.
        await bob_socket.send(f"/pm {alice_name} only for you")
        expected = (bob_name, alice_name, "only for you")
        await alice_socket.wait_for(lambda s: expected in s.private_messages(), LIVE)
        await bob_socket.wait_for(lambda s: expected in s.private_messages(), LIVE)
        assert all("only for you" not in body for _, body in alice_socket.messages())

        # Leaving crosses processes too.
        await bob_socket.close()
        await alice_socket.wait_for(presence(bob_name, "left"), LIVE)
        await alice_socket.wait_for(online(alice_name), LIVE)
        assert alice_socket.presence_lines().count(f"{bob_name} joined") == 1
        await alice_socket.close()
        await wait_until(lambda: lines(one.log(), f"disconnected {alice_name}"), LIVE)

        # One log line per event, from the process where it happened.
        log_one, log_two = one.log(), two.log()
        assert len(lines(log_one, f"connected {alice_name} to {room}")) == 1
        assert len(lines(log_two, f"connected {bob_name} to {room}")) == 1
        assert len(lines(log_two, f"{bob_name} joined {room}")) == 1
        assert len(lines(log_two, f"disconnected {bob_name} from {room} (code 1000)")) == 1
        assert len(lines(log_two, f"{bob_name} left {room}")) == 1
        assert len(lines(log_one, f"disconnected {alice_name} from {room} (code 1000)")) == 1
        for log in (log_one, log_two):
            assert "Traceback" not in log, log


async def test_a_killed_process_leaves_no_ghosts(env: dict[str, str], room: str) -> None:
    """kill -9: nothing cleans up, so the survivors' heartbeat reaps the dead rows."""
    alice_name, bob_name = name("alice"), name("bob")
    with servers.daphne(env) as doomed, servers.daphne(env) as survivor:
        alice = servers.sign_up(doomed.url, alice_name)
        assert alice.create_room(room).status == 200
        alice_socket = await servers.RoomSocket.open(doomed.url, room, alice.sessionid)
        await alice_socket.wait_for(online(alice_name))
        bob = servers.sign_up(survivor.url, bob_name)
        bob_socket = await servers.RoomSocket.open(survivor.url, room, bob.sessionid)
        await bob_socket.wait_for(online(alice_name, bob_name), LIVE)

        killed_at = time.monotonic()
        doomed.stop(signal.SIGKILL)
        assert await alice_socket.wait_close() == 1006  # no close frame from a dead process

        await bob_socket.wait_for(presence(alice_name, "left"), GHOST_BOUND + 5)
        await bob_socket.wait_for(online(bob_name), 2)
        expired_after = time.monotonic() - killed_at
        print(f"ghost gone {expired_after:.1f}s after kill -9 (TTL {PRESENCE_TTL}s)")
        assert expired_after <= GHOST_BOUND + 2
        # Reaped by the survivor's heartbeat; and a fresh page agrees.
        assert lines(survivor.log(), "reaped"), survivor.log()
        page = bob.get(f"/rooms/{room}/").text
        assert f'data-username="{alice_name}"' not in page.split('id="online-users"')[1]
        await bob_socket.close()


async def test_sigterm_closes_with_1012_and_hands_over(env: dict[str, str], room: str) -> None:
    """SIGTERM: every socket gets 1012 (htmx reconnects), presence is settled before exit.

    alice reconnects to the other process at once, as htmx does behind a load balancer:
    nobody sees her leave or join again. carol does not come back: she is announced as
    leaving after the grace period, not after the presence TTL.
    """
    alice_name, bob_name, carol_name = name("alice"), name("bob"), name("carol")
    with servers.daphne(env) as stopping, servers.daphne(env) as staying:
        alice = servers.sign_up(stopping.url, alice_name)
        carol = servers.sign_up(stopping.url, carol_name)
        bob = servers.sign_up(staying.url, bob_name)
        assert alice.create_room(room).status == 200
        alice_socket = await servers.RoomSocket.open(stopping.url, room, alice.sessionid)
        carol_socket = await servers.RoomSocket.open(stopping.url, room, carol.sessionid)
        # Their joins have gone out (once per tick) before bob's socket opens.
        await alice_socket.wait_for(presence(carol_name, "joined"), LIVE)
        bob_socket = await servers.RoomSocket.open(staying.url, room, bob.sessionid)
        everyone = online(alice_name, bob_name, carol_name)
        for socket in (alice_socket, carol_socket, bob_socket):
            await socket.wait_for(everyone, LIVE)

        seen_before = len(bob_socket.presence_lines())
        stopped_at = time.monotonic()
        stopping.process.send_signal(signal.SIGTERM)
        assert await alice_socket.wait_close(5) == 1012
        alice_again = await servers.RoomSocket.open(staying.url, room, alice.sessionid)
        assert await carol_socket.wait_close(5) == 1012
        assert stopping.process.wait(SHUTDOWN_GRACE + 5) == 0
        exited_after = time.monotonic() - stopped_at
        print(f"SIGTERM: exited after {exited_after:.1f}s (grace {SHUTDOWN_GRACE}s)")

        await bob_socket.wait_for(presence(carol_name, "left"), LIVE)
        await bob_socket.wait_for(online(alice_name, bob_name), 2)
        await alice_again.wait_for(online(alice_name, bob_name), LIVE)
        left_after = time.monotonic() - stopped_at
        assert left_after < PRESENCE_TTL, "announced by the stopping process, not expired"
        # The hand-over: alice never left as far as bob could see.
        await bob_socket.send("still here?")
        await bob_socket.wait_for(lambda s: (bob_name, "still here?") in s.messages(), LIVE)
        await alice_again.wait_for(lambda s: (bob_name, "still here?") in s.messages(), LIVE)
        since_the_stop = bob_socket.presence_lines()[seen_before:]
        assert f"{alice_name} left" not in since_the_stop
        assert f"{alice_name} joined" not in since_the_stop

        log = stopping.log()
        assert len(lines(log, "stopping: closing")) == 2, log
        assert len(lines(log, "closed 2 sockets")) == 1, log
        assert len(lines(log, "presence forgotten; 1 left")) == 1, log  # carol, not alice
        assert "Traceback" not in log, log
        await alice_again.close()
        await bob_socket.close()


async def test_healthz_follows_the_channel_layer(env: dict[str, str], room: str) -> None:
    """Redis away: 503 naming the channel layer; back: 200, and open sockets are closed
    with 1012 so that they reconnect and catch up (realtime/sockets.py)."""
    alice_name = name("alice")
    with servers.redis() as redis, servers.daphne({**env, "REDIS_URL": redis.url}) as server:
        client = servers.HttpClient(server.url)
        assert client.get("/healthz").status == 200
        alice = servers.sign_up(server.url, alice_name)
        assert alice.create_room(room).status == 200
        socket = await servers.RoomSocket.open(server.url, room, alice.sessionid)
        await socket.wait_for(online(alice_name))

        redis.stop()
        down = await wait_until(lambda: unhealthy(client), LIVE)
        assert down.status == 503 and "channel layer" in down.text, down.text
        # An outage shorter than one check of the watchdog would go unnoticed by it.
        await wait_until(lambda: lines(server.log(), "channel layer unavailable"), LIVE)

        redis.start()
        await wait_until(lambda: client.get("/healthz").status == 200, LIVE)
        assert await socket.wait_close(LIVE) == 1012
        # One line each for the outage and the recovery.
        log = server.log()
        assert len(lines(log, "channel layer unavailable")) == 1, log
        assert len(lines(log, "channel layer is back")) == 1, log


async def test_healthz_follows_the_database(env: dict[str, str], database_url: str) -> None:
    database = database_url.rsplit("/", 1)[1]
    with servers.daphne(env) as server:
        client = servers.HttpClient(server.url)
        assert client.get("/healthz").status == 200
        try:
            admin(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
            admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                database,
            )
            down = await wait_until(lambda: unhealthy(client), LIVE)
            assert down.status == 503 and "database" in down.text, down.text
        finally:
            admin(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
        await wait_until(lambda: client.get("/healthz").status == 200, LIVE)


# Helpers -------------------------------------------------------------------------------


def admin(sql: str, *params: str) -> None:
    base = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
    with psycopg.connect(f"{base}/postgres", autocommit=True, connect_timeout=3) as conn:
        conn.execute(sql, params or None)


def unhealthy(client: servers.HttpClient) -> servers.HttpReply | None:
    reply = client.get("/healthz")
    return reply if reply.status != 200 else None


async def wait_until(check, timeout: float):
    """Poll a blocking `check` (off the event loop) until it returns something true."""
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true within {timeout}s: {check}")
        await asyncio.sleep(0.1)
