"""Measurements on one running server: the connect phase, one load step, idle sockets."""

import asyncio
import itertools
import math
import os
import time
from statistics import median
from typing import Any

from bench.loadgen import Fleet, SplitFleet, Window, now_us
from bench.servers import Server

P99_LIMIT_MS = 100.0
_window_ids = itertools.count(1)


def percentile(values: Any, q: float) -> float:
    if not len(values):
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def fleet_for(server: Server) -> Fleet:
    if len(server.ports) > 1:  # a scaled-out server: its sockets split between processes
        return SplitFleet("127.0.0.1", server.ports, server.path, server.origin)
    return Fleet("127.0.0.1", server.port, server.path, server.origin)


def cookies_for(server: Server, sessions: list[str], start: int, stop: int) -> list[str]:
    if server.cookies:
        return [f"sessionid={key}" for key in sessions[start:stop]]
    return [""] * (stop - start)


async def barrier(server: Server, fleet: Fleet, tries: int = 20, wait_s: float = 3.0) -> float:
    """Send one marked message until one reaches every open client: then all are in the
    room (their group membership is done). Returns the seconds it took."""
    start = time.monotonic()
    for _ in range(tries):
        window = fleet.new_window(next(_window_ids))
        fleet.send_marked(window, fleet.open_clients()[0], server.encode, now_us())
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and window.delivered < window.expected:
            await asyncio.sleep(0.01)
        if window.delivered >= window.expected:
            return time.monotonic() - start
    raise TimeoutError(f"{server.name}: no barrier message reached all clients")


async def connect(
    server: Server,
    fleet: Fleet,
    sessions: list[str],
    count: int,
    *,
    concurrency: int = 64,
    quiet_cap_s: float = 120.0,
    quiet_idle_s: float = 0.5,
) -> dict[str, Any]:
    """Grow `fleet` to `count` open clients and wait until the room is quiet again.

    Reports the handshakes' time, the time until a message reaches all (barrier), the
    time until the connect-time traffic (presence) stops, and that traffic's size. On
    ours also: the time until every socket had its catch-up (its cursor frame), each
    socket's time from its handshake to its catch-up, and the presence frames per join.
    """
    have = len(fleet.clients)
    if count <= have:
        return {}
    cpu0, bytes0, frames0 = server.cpu_seconds(), fleet.bytes_received, fleet.frames_other
    presence0 = fleet.frames_presence
    start, start_us = time.monotonic(), now_us()
    opened, errors = await fleet.connect(
        cookies_for(server, sessions, have, count), concurrency=concurrency
    )
    handshakes_s = time.monotonic() - start
    fresh = fleet.clients[have:]
    if server.name.startswith("ours"):
        deadline = time.monotonic() + quiet_cap_s
        while time.monotonic() < deadline and any(
            not c.caught_up_us for c in fresh if c.open and not c.lost.done()
        ):
            await asyncio.sleep(0.01)
        caught = [c for c in fresh if c.caught_up_us]
    result: dict[str, Any] = {
        "from": have,
        "to": count,
        "opened": opened,
        "errors": len(errors),
        "error_samples": errors[:3],
        "handshakes_s": round(handshakes_s, 3),
    }
    if server.name.startswith("ours"):
        waits = [(c.caught_up_us - c.started_us) / 1000 for c in caught]
        result["caught_up"] = len(caught)
        # Every socket connected and caught up: the connect storm's target (issue 16).
        result["caught_up_s"] = round(
            (max((c.caught_up_us for c in caught), default=start_us) - start_us) / 1e6, 3
        )
        result["catch_up_p50_ms"] = round(percentile(waits, 50), 1)
        result["catch_up_p99_ms"] = round(percentile(waits, 99), 1)
    try:
        result["barrier_s"] = round(await barrier(server, fleet), 3)
    except TimeoutError as error:
        result["error"] = str(error)
    result["quiet_s"] = round(await fleet.quiet(idle_s=quiet_idle_s, cap_s=quiet_cap_s), 3)
    result["total_s"] = round(time.monotonic() - start, 3)
    result["server_cpu_s"] = round(server.cpu_seconds() - cpu0, 3)
    result["bytes_received"] = fleet.bytes_received - bytes0
    result["other_frames"] = fleet.frames_other - frames0
    if server.name.startswith("ours"):
        # (Frames with presence lines; the joins are the sockets: one user each.)
        result["presence_frames"] = fleet.frames_presence - presence0
        result["presence_frames_per_join"] = round(result["presence_frames"] / max(1, opened), 2)
    result["connected_per_s"] = round((count - have) / handshakes_s, 1)
    return result


async def step(
    server: Server,
    fleet: Fleet,
    rate: float,
    hold_s: float,
    senders: int,
) -> dict[str, Any]:
    """Offer `rate` deliveries/s (rate / N messages/s, open loop) for `hold_s` seconds."""
    clients = fleet.open_clients()
    n = len(clients)
    window = fleet.new_window(next(_window_ids))
    stats0 = server.stats()
    frames0 = fleet.frames_marked
    cpu0, extra0 = server.cpu_seconds(), server.extra_cpu_seconds()
    own0, wall0 = time.process_time(), time.monotonic()
    await fleet.run_window(
        window, clients[: max(1, min(senders, n))], rate / n, hold_s, server.encode
    )
    await fleet.drain(window)
    wall = time.monotonic() - wall0
    own = time.process_time() - own0
    cpu = server.cpu_seconds() - cpu0
    extra = server.extra_cpu_seconds() - extra0
    stats1 = server.stats()
    renders = _renders(stats1) - _renders(stats0)
    result = summarize(server, window, n, rate, hold_s, wall, own, cpu, extra, renders)
    if stats1.get("gc"):  # full garbage collections during the step (each a long pause)
        result["gc_full"] = stats1["gc"]["gen2"]["count"] - stats0["gc"]["gen2"]["count"]
    # Fewer frames than deliveries: the server sent several messages in one frame.
    result["frames"] = fleet.frames_marked - frames0
    return result


def _renders(stats: dict[str, Any]) -> int:
    return stats.get("renders", {}).get("message-oob", 0)


def summarize(
    server: Server,
    window: Window,
    n: int,
    rate: float,
    hold_s: float,
    wall: float,
    own_cpu: float,
    cpu: float,
    extra_cpu: float,
    renders: int,
) -> dict[str, Any]:
    lat = window.latencies_us
    span_s = max(1e-6, (window.last_arrival - window.first_send) / 1e6)
    loss = window.expected - window.delivered
    p99_ms = percentile(lat, 99) / 1000
    lag = window.send_lag_us
    lag_p99_ms = percentile(lag, 99) / 1000
    own_share = own_cpu / wall
    result = {
        "server": server.name,
        "n": n,
        "offered": rate,
        "hold_s": hold_s,
        "sent": window.sent,
        "expected": window.expected,
        "delivered": window.delivered,
        "loss": loss,
        "out_of_order": window.out_of_order,
        "deliveries_per_s": round(window.delivered / span_s),
        "p50_ms": round(percentile(lat, 50) / 1000, 2),
        "p99_ms": round(p99_ms, 2),
        "max_ms": round(max(lat, default=0) / 1000, 2),
        "server_cpu_s": round(cpu, 3),
        "server_cpu_us_per_delivery": round(cpu * 1e6 / max(1, window.delivered), 2),
        "server_cpu_share": round(cpu / wall, 3),
        "loadgen_cpu_share": round(own_share, 3),
        "send_lag_p99_ms": round(lag_p99_ms, 2),
        "load1": round(os.getloadavg()[0], 2),
    }
    if extra_cpu:
        result["redis_cpu_s"] = round(extra_cpu, 3)
    if server.name.startswith("ours"):
        result["renders_per_message"] = round(renders / max(1, window.sent), 3)
    result["passed"] = loss == 0 and window.out_of_order == 0 and p99_ms <= P99_LIMIT_MS
    # The generator, not the server, was the limit: its core was (nearly) full, or it
    # could not keep to its own schedule, while the server still had room.
    result["loadgen_limited"] = (own_share > 0.9 or lag_p99_ms > 20) and cpu / wall < 0.9
    return result


async def rss_after_warm_up(server: Server, sessions: list[str], warm: Fleet) -> int:
    """The server's RSS once a warm-up socket came and went (so that lazily imported
    code is not charged to the sockets measured next)."""
    await warm.connect(cookies_for(server, sessions, 0, 2))
    await warm.quiet(idle_s=0.3, cap_s=10)
    await warm.close()
    await asyncio.sleep(0.5)
    await server.settle()
    return server.rss()


async def idle(
    server: Server, sessions: list[str], counts: list[int], hold_s: float, concurrency: int
) -> dict[str, Any]:
    """Connect as fast as the server accepts, then hold idle sockets: RSS per socket.

    RSS with 0 sockets is taken after a warm-up socket came and went (so that lazily
    imported code is not charged to the sockets).
    """
    rss0 = await rss_after_warm_up(server, sessions, fleet_for(server))
    fleet = fleet_for(server)
    result: dict[str, Any] = {"server": server.name, "rss0_mib": round(rss0 / 2**20, 1)}
    steps = []
    for count in counts:
        phase = await connect(server, fleet, sessions, count, concurrency=concurrency)
        await server.settle()
        rss = server.rss()
        phase["rss_mib"] = round(rss / 2**20, 1)
        phase["rss_per_socket_kib"] = round((rss - rss0) / count / 1024, 2)
        steps.append(phase)
    if server.name.startswith("ours"):
        # How much of that is freed memory the allocator kept (after the presence storm).
        server.trim()
        rss_trimmed = server.rss()
        result["rss_per_socket_kib_after_trim"] = round((rss_trimmed - rss0) / counts[-1] / 1024, 2)
    await asyncio.sleep(hold_s)
    result["connects"] = steps
    result["held"] = len(fleet.open_clients())
    result["lost_while_idle"] = fleet.lost_unexpectedly
    result["rss_per_socket_kib"] = steps[-1]["rss_per_socket_kib"]
    result["errors"] = sum(s["errors"] for s in steps) + fleet.lost_unexpectedly
    await fleet.close()
    return result


def median_of(rows: list[dict[str, Any]], key: str) -> float:
    values = [row[key] for row in rows if key in row]
    return median(values) if values else float("nan")


async def healthz_ms(port: int, timeout: float = 5.0) -> float:
    """One GET /healthz on a fresh connection, as a load balancer's check: milliseconds
    until the whole answer came (inf if it failed or was not 200)."""
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = await reader.read()
            writer.close()
    except (OSError, TimeoutError):
        return float("inf")
    if not answer.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
        return float("inf")
    return (time.perf_counter() - start) * 1000


async def probe_healthz(port: int, seconds: float, every_s: float = 0.1) -> dict[str, Any]:
    """/healthz every `every_s` for `seconds`: p50 and max latency, and failures."""
    latencies, start = [], time.monotonic()
    deadline = start + seconds
    while time.monotonic() < deadline:
        at = time.monotonic() - start
        latencies.append((at, await healthz_ms(port)))
        await asyncio.sleep(every_s)
    ok = [ms for _, ms in latencies if ms != float("inf")]
    return {
        "healthz_checks": len(latencies),
        "healthz_failed": len(latencies) - len(ok),
        "healthz_p50_ms": round(percentile(ok, 50), 2),
        "healthz_max_ms": round(max(ok, default=float("nan")), 2),
        "healthz_over_100ms": sum(1 for ms in ok if ms >= 100),
        # (seconds into the hold, ms) of the slowest: a periodic cause shows as a pattern
        "healthz_slowest": [
            (round(at, 1), round(ms, 1)) for at, ms in sorted(latencies, key=lambda x: -x[1])[:5]
        ],
    }


def room_fleets(server: Server, count: int, room_size: int) -> list[tuple[Fleet, int, int]]:
    """(fleet, first socket, end) per room: `count` sockets, `room_size` to a room
    (bench.prepare.room_slugs), as a site's sockets are spread; the ceiling has no rooms."""
    from bench.prepare import room_slugs

    if not server.name.startswith(("ours", "tutorial")):
        return [(fleet_for(server), 0, count)]
    slugs = room_slugs(math.ceil(count / room_size))
    return [
        (
            Fleet("127.0.0.1", server.port, f"/ws/rooms/{slug}/", server.origin),
            k * room_size,
            min(count, (k + 1) * room_size),
        )
        for k, slug in enumerate(slugs)
    ]


async def hold_idle(
    server: Server,
    sessions: list[str],
    count: int,
    *,
    room_size: int,
    hold_s: float,
    concurrency: int = 64,
) -> dict[str, Any]:
    """Open `count` sockets (`room_size` to a room), let them go quiet, then hold them
    idle for `hold_s` while /healthz is asked every 0.1 s: RSS per idle socket (before
    and after returning freed heap to the system) and /healthz's latency meanwhile.

    RSS with 0 sockets is taken after a warm-up socket came and went (so that lazily
    imported code is not charged to the sockets).
    """
    warm = fleet_for(server) if not server.name.startswith(("ours", "tutorial")) else None
    rss0 = await rss_after_warm_up(
        server, sessions, warm or room_fleets(server, 1, room_size)[0][0]
    )
    fleets = room_fleets(server, count, room_size)
    rooms_at_once = max(1, min(len(fleets), concurrency // 16))
    gate = asyncio.Semaphore(rooms_at_once)
    errors: list[str] = []

    async def fill(fleet: Fleet, first: int, end: int) -> None:
        async with gate:
            _, failed = await fleet.connect(
                cookies_for(server, sessions, first, end),
                concurrency=max(1, concurrency // rooms_at_once),
            )
            errors.extend(failed)

    cpu0, start = server.cpu_seconds(), time.monotonic()
    await asyncio.gather(*(fill(*room) for room in fleets))
    handshakes_s = time.monotonic() - start
    await asyncio.gather(*(fleet.quiet(idle_s=0.5, cap_s=120) for fleet, _, _ in fleets))
    await server.settle()
    settled_s = time.monotonic() - start
    rss = server.rss()
    result: dict[str, Any] = {
        "server": server.name,
        "sockets": count,
        "room_size": room_size,
        "rooms": len(fleets),
        "opened": sum(len(fleet.open_clients()) for fleet, _, _ in fleets),
        "connect_errors": len(errors),
        "error_samples": errors[:3],
        "handshakes_s": round(handshakes_s, 2),
        "settled_s": round(settled_s, 2),
        "connect_cpu_s": round(server.cpu_seconds() - cpu0, 2),
        "rss0_mib": round(rss0 / 2**20, 1),
        "rss_mib": round(rss / 2**20, 1),
        "rss_per_socket_kib": round((rss - rss0) / count / 1024, 2),
    }
    gc0 = server.stats().get("gc", {})
    result.update(await probe_healthz(server.port, hold_s))
    if gc0:  # full garbage collections while held (each walks every socket's objects)
        gc1 = server.stats()["gc"]
        result["gc_full_while_held"] = gc1["gen2"]["count"] - gc0["gen2"]["count"]
        result["gc_max_pause_ms_since_start"] = max(
            gc1[gen]["max_ms"] for gen in ("gen0", "gen1", "gen2")
        )
    if server.name.startswith("ours"):
        # How much of that is freed memory the allocator kept (after the connects).
        server.trim()
        result["rss_per_socket_kib_after_trim"] = round((server.rss() - rss0) / count / 1024, 2)
    result["held"] = sum(len(fleet.open_clients()) for fleet, _, _ in fleets)
    result["lost_while_idle"] = sum(fleet.lost_unexpectedly for fleet, _, _ in fleets)
    result["errors"] = count - result["held"]  # not opened, or lost since
    await asyncio.gather(*(fleet.close() for fleet, _, _ in fleets))
    return result
