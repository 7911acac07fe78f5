"""What a message costs Redis, with one process of ours subscribed and with two (issue 16).

    python -m bench.redis_cost [--n 100] [--rate 8000] [--hold 8]

A Redis of its own; ours-redis, then ours-redis-x2 (bench/servers.py), each with N sockets
and one load step at `--rate` deliveries/s. Around the step, Redis's INFO: the PUBLISH
calls and their command time (commandstats: the fan-out to the subscribed connections
included, not reading the command or writing to the sockets) and Redis's whole CPU
(`used_cpu_user + used_cpu_sys`), less its idle CPU over 4 s before the step. Per message:
Redis's CPU with P processes subscribed to the room is about a + b·P; two rows give a and
b (bench/RESULTS.md, issue 16, uses them for 8 and 32 processes).
"""

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import redis as redis_client

from bench import measure, servers
from bench.limits import raise_nofile
from e2e.servers import redis

IDLE_S = 4.0


def snapshot(client: redis_client.Redis) -> dict[str, float]:
    commands = client.info("commandstats")
    cpu = client.info("cpu")
    publish = commands.get("cmdstat_publish", {"calls": 0, "usec": 0})
    return {
        "publish_calls": publish["calls"],
        "publish_usec": publish["usec"],
        "calls": sum(stat["calls"] for stat in commands.values()),
        "cpu_s": cpu["used_cpu_user"] + cpu["used_cpu_sys"],
    }


async def one(
    name: str, work: Path, base_db: Path, sessions: list[str], args: argparse.Namespace, url: str
) -> dict[str, Any]:
    client = redis_client.Redis.from_url(url)
    server = servers.start(name, work, base_db, url)
    try:
        fleet = measure.fleet_for(server)
        await measure.connect(server, fleet, sessions, args.n, concurrency=16)
        await server.settle()
        idle0 = snapshot(client)
        await asyncio.sleep(IDLE_S)
        before = snapshot(client)
        step = await measure.step(server, fleet, args.rate, args.hold, args.senders)
        after = snapshot(client)
        await fleet.close()
    finally:
        server.stop()
        client.close()
    idle_cpu_per_s = (before["cpu_s"] - idle0["cpu_s"]) / IDLE_S
    # (the step's wall time: its hold and the drain after it)
    span_s = args.hold + max(0.0, step["max_ms"] / 1000)
    cpu = after["cpu_s"] - before["cpu_s"] - idle_cpu_per_s * span_s
    calls = after["publish_calls"] - before["publish_calls"]
    sent = max(1, step["sent"])
    return {
        "server": name,
        "processes": len(server.ports),
        "n": args.n,
        "offered": args.rate,
        "sent": step["sent"],
        "loss": step["loss"],
        "p99_ms": step["p99_ms"],
        "server_cpu_us_per_delivery": step["server_cpu_us_per_delivery"],
        "publish_calls": calls,
        "other_calls": after["calls"] - before["calls"] - calls,
        "publish_usec_per_call": round(
            (after["publish_usec"] - before["publish_usec"]) / max(1, calls), 2
        ),
        "redis_idle_cpu_ms_per_s": round(idle_cpu_per_s * 1000, 2),
        "redis_cpu_us_per_message": round(cpu * 1e6 / sent, 1),
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="bench-redis-cost-"))
    base_db, _, sessions = servers.prepare_database(work, args.n)
    rows = []
    try:
        with redis() as redis_server:
            for _ in range(args.rounds):
                for name in ("ours-redis", "ours-redis-x2"):
                    row = await one(name, work, base_db, sessions, args, redis_server.url)
                    print(json.dumps(row), file=sys.stderr, flush=True)
                    rows.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| server | processes subscribed | messages | PUBLISH calls | us per PUBLISH (command) "
        "| Redis CPU per message | loss |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['server']} | {row['processes']} | {row['sent']} | {row['publish_calls']} "
            f"| {row['publish_usec_per_call']:.1f} | {row['redis_cpu_us_per_message']:.0f} us "
            f"| {row['loss']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_cost", description=__doc__)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--rate", type=float, default=8000.0, help="deliveries/s")
    parser.add_argument("--hold", type=float, default=8.0)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    raise_nofile()
    print(table(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
