"""`python -m bench.memory`: where an idle socket's memory goes, per component.

Starts ours (and ours-redis) with tracemalloc on (bench/memory_asgi.py), opens N idle
sockets spread over rooms as `python -m bench` does, and prints, per socket: the bytes
Python allocated and still holds, by component (the innermost frame outside the standard
library: Daphne, autobahn, Twisted, channels, asgiref, Django, realtime, rooms), by file
and by line, and the live objects by type (`gc.get_objects()`).

    .venv/bin/python -m bench.memory [--n 2000] [--room-size 100] [--servers ours,ours-redis]
                                     [--frames 16] [--json out.json]

tracemalloc adds its own bookkeeping to every allocation, so RSS here is not the
benchmark's figure (`python -m bench --idle N` measures that, without it); the bytes
below are what Python asked for, without the allocator's overhead and fragmentation.
"""

import argparse
import asyncio
import json
import math
import sys
import tempfile
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import measure, servers
from bench.limits import raise_nofile


def _get(server: servers.Server, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=900) as r:
        return json.loads(r.read())


async def breakdown(
    server: servers.Server, sessions: list[str], n: int, room_size: int
) -> dict[str, Any]:
    # Warm up (lazily imported code, caches), then mark with no socket open.
    warm = measure.room_fleets(server, 2, room_size)[0][0]
    await warm.connect(measure.cookies_for(server, sessions, 0, 2))
    await warm.quiet(idle_s=0.3, cap_s=10)
    await warm.close()
    await asyncio.sleep(0.5)
    await server.settle()
    _get(server, "/__bench__/memory/mark")
    rss0 = server.rss()
    fleets = measure.room_fleets(server, n, room_size)
    for fleet, first, end in fleets:
        await fleet.connect(measure.cookies_for(server, sessions, first, end), concurrency=32)
    await asyncio.gather(*(fleet.quiet(idle_s=0.5, cap_s=60) for fleet, _, _ in fleets))
    await server.settle()
    held = sum(len(fleet.open_clients()) for fleet, _, _ in fleets)
    result = _get(server, f"/__bench__/memory/diff?sockets={held}")
    result["server"] = server.name
    result["held"] = held
    result["rss_per_socket_kib_with_tracemalloc"] = round((server.rss() - rss0) / held / 1024, 2)
    await asyncio.gather(*(fleet.close() for fleet, _, _ in fleets))
    return result


def render(result: dict[str, Any]) -> str:
    lines = [
        f"## {result['server']}: {result['held']} idle sockets",
        "",
        f"traced (Python allocations still held): {result.get('traced_bytes_per_socket', 0):,}"
        f" bytes per socket; gc-tracked objects per socket: {result['gc_objects_per_socket']}",
        "",
        "| component | bytes per socket |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:,} |" for k, v in result.get("by_component", {}).items() if abs(v) >= 8]
    lines += ["", "| line | bytes per socket |", "|---|---|"]
    lines += [f"| {k} | {v:,} |" for k, v in result.get("by_line", {}).items() if abs(v) >= 16]
    lines += ["", "| caller (innermost frame outside the standard library) | bytes per socket |"]
    lines += ["|---|---|"]
    lines += [f"| {k} | {v:,} |" for k, v in result.get("by_caller", {}).items() if abs(v) >= 16]
    lines += ["", f"tasks: {result.get('tasks')}", f"referrers: {result.get('referrers')}"]
    lines += ["", "| type | objects per socket |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in list(result["objects_per_socket"].items())[:40]]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    rooms = math.ceil(args.n / args.room_size)
    base_db, _, sessions = servers.prepare_database(work, args.n, rooms=rooms)
    results = []
    with ExitStack() as stack:
        redis_url, redis_pid = "", None
        if any(name.startswith("ours-redis") for name in args.servers):
            from e2e.servers import redis

            redis_server = stack.enter_context(redis())
            redis_url, redis_pid = redis_server.url, redis_server.pid
        for name in args.servers:
            server = servers.start(
                name,
                work,
                base_db,
                redis_url,
                redis_pid,
                env_overrides={"BENCH_TRACEMALLOC": str(args.frames)},
                asgi_module="bench.memory_asgi",
            )
            stack.callback(server.stop)
            result = await breakdown(server, sessions, args.n, args.room_size)
            print(render(result) + "\n", flush=True)
            results.append(result)
            server.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--n", type=int, default=2000, help="idle sockets")
    parser.add_argument("--room-size", type=int, default=100, help="sockets per room")
    parser.add_argument("--servers", default="ours,ours-redis")
    parser.add_argument("--frames", type=int, default=8, help="tracemalloc frames kept")
    parser.add_argument("--json", help="write the results here as well")
    args = parser.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    raise_nofile()
    results = asyncio.run(run(args))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
