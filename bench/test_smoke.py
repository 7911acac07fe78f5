"""A small run of the benchmark, in the normal suite: 5 sockets on each of the three
servers (ours, the tutorial shape, the bare ceiling), a second of load each.

It checks the benchmark itself (every message counted once, per-socket order, renders
counted) and that ours delivers everything: not speed.
"""

import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench import measure, servers

SOCKETS = 5
RATE = 50.0  # deliveries/s: 10 messages/s to 5 sockets


async def test_five_sockets_on_each_server_get_every_message_in_order() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-smoke-"))
    base_db, _, sessions = servers.prepare_database(work, SOCKETS)
    with ExitStack() as stack:
        running = []
        for name in ("ours", "tutorial", "ceiling"):
            server = servers.start(name, work, base_db, wait=False)
            stack.callback(server.stop)
            running.append(server)
        results = {}
        for server in running:
            server.wait_ready()
            fleet = measure.fleet_for(server)
            connected = await measure.connect(
                server, fleet, sessions, SOCKETS, quiet_cap_s=5, quiet_idle_s=0.2
            )
            assert connected["opened"] == SOCKETS and not connected.get("error"), connected
            results[server.name] = await measure.step(server, fleet, RATE, 1.0, senders=2)
            await fleet.close()

    for name, result in results.items():
        assert result["n"] == SOCKETS, (name, result)
        assert result["sent"] >= 5, (name, result)
        assert result["expected"] == result["sent"] * SOCKETS, (name, result)
        assert result["delivered"] == result["expected"], (name, result)
        assert result["loss"] == 0 and result["out_of_order"] == 0, (name, result)
    # Ours renders each message once, however many sockets receive it.
    assert results["ours"]["renders_per_message"] == 1.0, results["ours"]


async def test_the_feature_mix_renders_each_event_once_and_loses_nothing() -> None:
    """bench/mix.py in small: messages, a mention's notification on another page, edits,
    reactions, deletes, typing and the room list's activity under one load."""
    from bench import mix

    work = Path(tempfile.mkdtemp(prefix="bench-smoke-mix-"))
    base_db, usernames, sessions = servers.prepare_database(work, SOCKETS + 3)
    server = servers.start("ours", work, base_db)
    try:
        result = await mix.run_mix(
            server,
            sessions,
            usernames,
            n=SOCKETS,
            pages=3,
            rate=5.0,
            hold=2.0,
            typists=2,
            targets=4,
        )
    finally:
        server.stop()
    kinds = result["kinds"]
    for kind, row in kinds.items():
        assert row["events"] > 0, (kind, result)
        assert row["loss"] == 0 and row.get("out_of_order", 0) == 0, (kind, result)
        if kind == "activity":  # coalesced per tick: at most one render per message
            assert 0 < row["renders_per_event"] <= 1, (kind, result)
        else:
            assert row["renders_per_event"] == 1.0, (kind, result)
    assert result["sockets_lost"] == 0 and result["unknown_markers"] == 0, result
    assert set(result["http_statuses"]) == {204}, result


async def test_two_processes_behind_one_redis_deliver_every_message_once() -> None:
    """ours-redis-x2 (the scale-out measurement) in small: sockets on both processes,
    senders on both, every message to every socket once, rendered once."""
    from e2e.servers import redis

    work = Path(tempfile.mkdtemp(prefix="bench-smoke-x2-"))
    base_db, _, sessions = servers.prepare_database(work, SOCKETS + 1)
    with redis() as redis_server:
        server = servers.start("ours-redis-x2", work, base_db, redis_server.url, redis_server.pid)
        try:
            fleet = measure.fleet_for(server)
            connected = await measure.connect(
                server, fleet, sessions, SOCKETS + 1, quiet_cap_s=5, quiet_idle_s=0.2
            )
            assert connected["opened"] == SOCKETS + 1 and not connected.get("error"), connected
            ports = {
                c.transport.get_extra_info("peername")[1] for c in fleet.clients if c.transport
            }
            assert ports == set(server.ports) and len(ports) == 2
            result = await measure.step(server, fleet, RATE, 1.0, senders=2)
            await fleet.close()
        finally:
            server.stop()
    assert result["sent"] >= 5 and result["delivered"] == result["expected"], result
    assert result["loss"] == 0 and result["out_of_order"] == 0, result
    assert result["renders_per_message"] == 1.0, result  # once, on whichever process took it


STORM = 50  # sockets in the storm tests


async def test_a_connect_storm_catches_every_socket_up_with_presence_frames_linear() -> None:
    """The connect storm in small (issue 16): 50 sockets at once, each gets its catch-up,
    and the joins cost a few presence frames per socket, not one per join per socket
    (that would be ~25 per join here). Bounds are generous: they catch a regression, not
    a slow machine."""
    work = Path(tempfile.mkdtemp(prefix="bench-smoke-storm-"))
    base_db, _, sessions = servers.prepare_database(work, STORM)
    server = servers.start("ours", work, base_db)
    try:
        fleet = measure.fleet_for(server)
        result = await measure.connect(server, fleet, sessions, STORM, quiet_cap_s=30)
        await fleet.close()
    finally:
        server.stop()
    assert result["opened"] == STORM and result["errors"] == 0, result
    assert result["caught_up"] == STORM, result
    assert result["caught_up_s"] < 30, result
    assert result["presence_frames_per_join"] <= 8, result


async def test_a_reconnect_storm_after_a_graceful_restart_loses_nothing() -> None:
    """The reconnect storm in small (issue 16): 50 pages, a sender posting throughout,
    SIGTERM (1012 to every socket) and a new server on the same port: every page comes
    back with every message, no error, and the online count right."""
    from bench import storm

    work = Path(tempfile.mkdtemp(prefix="bench-smoke-reconnect-"))
    base_db, _, sessions = servers.prepare_database(work, STORM)
    result = await storm.reconnect_storm(
        "ours", work, base_db, sessions, STORM, rooms=2, rate=5.0, after_s=1.0, log=lambda _: None
    )
    assert result["settled"] and result["settle_s"] < 60, result
    assert result["errors"] == 0, result
    assert result["pages_complete"] == STORM and result["missing_messages"] == 0, result
    assert result["sent"] > 0 and result["not_accepted"] == 0, result
    assert result["duplicates"] == 0, result  # (what was sent again had its send id)
    assert result["online_count_exact"] == STORM and result["online_list_exact"] == STORM, result


IDLE = 200  # sockets in the idle test


async def test_idle_sockets_are_held_cheaply_and_healthz_answers_meanwhile() -> None:
    """The idle phase in small (issue 16): 200 sockets in 2 rooms held for 2 s, /healthz
    asked every 0.1 s meanwhile. Bounds are generous (the target is 32 KiB a socket at
    10,000, and /healthz under 100 ms): they catch a regression, not a slow machine."""
    work = Path(tempfile.mkdtemp(prefix="bench-smoke-idle-"))
    base_db, _, sessions = servers.prepare_database(work, IDLE, rooms=2)
    server = servers.start("ours", work, base_db)
    try:
        result = await measure.hold_idle(server, sessions, IDLE, room_size=100, hold_s=2.0)
    finally:
        server.stop()
    assert result["held"] == IDLE and result["errors"] == 0, result
    assert result["healthz_checks"] >= 5 and result["healthz_failed"] == 0, result
    assert result["healthz_p50_ms"] < 1000, result
    assert result["rss_per_socket_kib"] < 80, result
