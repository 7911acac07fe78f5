"""`python -m bench`: run the fan-out benchmark and print a table (and JSON).

Phases, each bounded in count and time, loopback only:

1. connect, one fresh server each: connect 1,000 sockets to one room as fast as the
   server accepts them (errors, time until each had its catch-up).
   idle, one fresh server each: open 10,000 sockets (1,000 to a room) and hold them idle:
   RSS per idle socket, and /healthz's latency while they are held.
2. fan-out: every server up at once, N sockets each in one room; for each N, rounds
   that alternate the servers, each climbing the rate ladder (deliveries/s, open loop)
   until a step fails twice (loss, reordering, or p99 > 100 ms). Then the knee: the
   highest rate that holds for 20 s, tried at the ladder's median knee, else sqrt(2) below.
"""

import argparse
import asyncio
import json
import math
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

from bench import measure, report, servers, storm
from bench.limits import raise_nofile

FULL = {
    "n": [100, 500, 1000],
    "rates": [500, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000],
    "rounds": 3,
    "hold": 3.0,
    "knee_hold": 20.0,
    "idle": 10000,
    "connect": 1000,
    "idle_hold": 10.0,
    "reconnect": 10000,
}
QUICK = {
    "n": [100],
    "rates": [1000, 4000, 16000, 64000],
    "rounds": 1,
    "hold": 2.0,
    "knee_hold": 0.0,
    "idle": 500,
    "connect": 500,
    "idle_hold": 2.0,
    "reconnect": 200,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small run (about a minute)")
    parser.add_argument("--n", help="room sizes, e.g. 100,500,1000")
    parser.add_argument("--rates", help="the ladder, deliveries/s, e.g. 1000,2000,4000")
    parser.add_argument("--servers", default="ours,ours-redis,tutorial,ceiling")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--hold", type=float, help="seconds per ladder step")
    parser.add_argument("--knee-hold", type=float, help="seconds a knee must hold (0: skip)")
    parser.add_argument(
        "--reference-rate",
        type=float,
        default=1000.0,
        help="deliveries/s measured in every round (equal-load latency)",
    )
    parser.add_argument("--senders", type=int, default=10, help="sockets that send (S)")
    parser.add_argument("--idle", type=int, help="idle sockets to hold (0: skip the phase)")
    parser.add_argument("--connect", type=int, help="sockets in the timed connect (0: skip it)")
    parser.add_argument("--idle-hold", type=float, help="seconds the idle sockets are held")
    parser.add_argument(
        "--idle-room-size", type=int, default=1000, help="idle sockets to a room (ours)"
    )
    parser.add_argument(
        "--reconnect", type=int, help="pages in the reconnect storm (ours only; 0: skip it)"
    )
    parser.add_argument(
        "--reconnect-rooms",
        type=int,
        help="rooms the reconnect storm's pages are spread over (default: 1,000 a room)",
    )
    parser.add_argument(
        "--reconnect-rate", type=float, default=10.0, help="messages/s posted through it"
    )
    parser.add_argument("--concurrency", type=int, default=64, help="handshakes in flight")
    parser.add_argument("--no-fanout", action="store_true", help="only the connect/idle phase")
    parser.add_argument("--json", help="write the results here as well")
    parser.add_argument("--app-dir", help="serve another checkout of the app (before/after)")
    parser.add_argument("--label", default="", help="a note stored with the results")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    args.n = [int(x) for x in args.n.split(",")] if args.n else defaults["n"]
    args.rates = [float(x) for x in args.rates.split(",")] if args.rates else defaults["rates"]
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for name in args.servers:
        if name.partition("@")[0] not in servers.SERVER_NAMES:
            parser.error(f"unknown server {name!r}: choose from {', '.join(servers.SERVER_NAMES)}")
    for key in ("rounds", "hold", "knee_hold", "idle", "connect", "idle_hold", "reconnect"):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    return args


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.stack = ExitStack()
        self.redis_url = ""
        self.redis_pid: int | None = None
        self.app_dir = Path(args.app_dir).resolve() if args.app_dir else None
        self.running: dict[str, servers.Server] = {}

    def log(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    def start(self, name: str, wait: bool = True) -> servers.Server:
        server = servers.start(
            name,
            self.work,
            self.base_db,
            self.redis_url,
            self.redis_pid,
            app_dir=self.app_dir,
            wait=wait,
        )
        self.stack.callback(server.stop)
        return server

    def prepare(self) -> None:
        users = max([*self.args.n, self.args.idle, self.args.connect, self.args.reconnect, 2])
        self.log(f"preparing {users} users and sessions in {self.work}")
        rooms = math.ceil(self.args.idle / self.args.idle_room_size) if self.args.idle else 1
        self.base_db, _, self.sessions = servers.prepare_database(
            self.work, users, self.app_dir, rooms=rooms
        )
        if any(name.startswith("ours-redis") for name in self.args.servers):
            try:
                from e2e.servers import redis

                redis_server = self.stack.enter_context(redis())
                self.redis_url, self.redis_pid = redis_server.url, redis_server.pid
            except FileNotFoundError:
                self.log("redis-server not installed: skipping ours-redis")
                self.args.servers = [
                    name for name in self.args.servers if not name.startswith("ours-redis")
                ]

    # Phase 1 --------------------------------------------------------------------

    async def idle_phase(self) -> list[dict[str, Any]]:
        """The timed connect: `connect` sockets into one room (then held for a moment)."""
        return await self.each_fresh_server(
            f"connect {self.args.connect} sockets to one room",
            lambda server: measure.idle(
                server, self.sessions, [self.args.connect], 1.0, self.args.concurrency
            ),
        )

    async def held_phase(self) -> list[dict[str, Any]]:
        """`idle` sockets held on one process (a fresh one each): RSS per idle socket and
        /healthz's latency meanwhile (issue 16: 10,000 at <= 32 KiB, /healthz < 100 ms)."""
        return await self.each_fresh_server(
            f"hold {self.args.idle} idle sockets",
            lambda server: measure.hold_idle(
                server,
                self.sessions,
                self.args.idle,
                room_size=self.args.idle_room_size,
                hold_s=self.args.idle_hold,
                concurrency=self.args.concurrency,
            ),
        )

    async def each_fresh_server(
        self, what: str, run: Callable[[Any], Awaitable[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """`run` on a fresh process of each server, one after the other."""
        results = []
        for name in self.args.servers:
            server = self.start(name)
            self.log(f"{name}: {what}")
            try:
                result = await run(server)
            except Exception as error:  # a server that cannot hold them is a result
                result = {"server": name, "error": f"{type(error).__name__}: {error}"}
            result["alive"] = server.alive()
            self.log(f"{name}: {json.dumps(result)}")
            results.append(result)
            server.stop()
        return results

    # The reconnect storm ---------------------------------------------------------

    async def reconnect_phase(self) -> list[dict[str, Any]]:
        """Ours (in-memory and Redis): N pages through a graceful restart (bench/storm.py)."""
        results = []
        n = self.args.reconnect
        rooms = self.args.reconnect_rooms or max(1, math.ceil(n / 1000))
        for name in self.args.servers:
            kind, _, other_app = name.partition("@")
            if kind not in ("ours", "ours-redis"):
                continue
            self.log(f"{name}: reconnect storm, {n} pages in {rooms} room(s)")
            try:
                result = await storm.reconnect_storm(
                    kind,
                    self.work,
                    self.base_db,
                    self.sessions,
                    n,
                    rooms=rooms,
                    rate=self.args.reconnect_rate,
                    redis_url=self.redis_url,
                    redis_pid=self.redis_pid,
                    app_dir=Path(other_app).resolve() if other_app else self.app_dir,
                    log=self.log,
                )
            except Exception as error:
                result = {"server": name, "n": n, "error": f"{type(error).__name__}: {error}"}
            result["server"] = name
            self.log(f"{name}: {json.dumps(result)}")
            results.append(result)
        return results

    # Phase 2 --------------------------------------------------------------------

    async def fanout_phase(self) -> dict[str, Any]:
        running = self.running = {name: self.start(name, wait=False) for name in self.args.servers}
        for server in running.values():
            server.wait_ready()
        fleets = {name: measure.fleet_for(server) for name, server in running.items()}
        connects: list[dict[str, Any]] = []
        steps: list[dict[str, Any]] = []
        knees: list[dict[str, Any]] = []
        broken: set[str] = set()
        for n in self.args.n:
            for name in self.order(0):
                if name in broken:
                    continue
                self.log(f"{name}: connecting to N={n}")
                # Gently (16 handshakes in flight): this phase is about fan-out, and
                # the connect rate has a test of its own (phase 1).
                result = await measure.connect(
                    running[name], fleets[name], self.sessions, n, concurrency=16
                )
                result["server"] = name
                connects.append(result)
                self.log(f"{name}: {json.dumps(result)}")
                if result.get("error") or result.get("opened", n) < n - result.get("from", 0):
                    # It could not take N sockets: no load steps there, and stopped, so
                    # that its backlog does not disturb the others' measurements.
                    broken.add(name)
                    await fleets[name].close()
                    running[name].stop()
                    continue
                await running[name].settle()
            ladder_knees: dict[str, list[float]] = {name: [] for name in running}
            for round_no in range(self.args.rounds):
                for name in self.order(round_no):
                    if name in broken:
                        continue
                    knee = await self.ladder(
                        running[name], fleets[name], n, round_no, ladder_knees[name], steps
                    )
                    ladder_knees[name].append(knee)
            if self.args.knee_hold > 0:
                for name in self.order(0):
                    if name in broken or not ladder_knees[name]:
                        continue
                    knees.append(
                        await self.knee(running[name], fleets[name], n, ladder_knees[name])
                    )
        for fleet in fleets.values():
            await fleet.close()
        renders = {s.name: s.stats().get("renders", {}) for s in running.values() if s.alive()}
        return {
            "connects": connects,
            "steps": steps,
            "knees": knees,
            "renders_total": renders,
        }

    async def settle_all(self) -> None:
        """Every server idle before a step: one still busy would share the 2 cores."""
        for server in self.running.values():
            if server.alive():
                await server.settle()

    def order(self, round_no: int) -> list[str]:
        names = list(self.args.servers)
        shift = round_no % len(names)
        return names[shift:] + names[:shift]

    async def ladder(
        self,
        server: servers.Server,
        fleet: Any,
        n: int,
        round_no: int,
        earlier_knees: list[float],
        steps: list[dict[str, Any]],
    ) -> float:
        """Climb the rate ladder until a step fails; returns the highest rate passed.

        After the first round, rates far below that round's knee are skipped (except the
        reference rate): they were light, and the time is better spent near the knee.
        """
        knee = 0.0
        floor = min(earlier_knees) / 4 if earlier_knees else 0
        for rate in self.args.rates:
            if rate < floor and rate != self.args.reference_rate:
                continue
            for attempt in (1, 2):
                # A step that failed on latency alone (throughput kept up) is run once
                # more before the climb stops: on a shared machine, one other process's
                # burst can sink a step that holds.
                await self.settle_all()
                result = await measure.step(server, fleet, rate, self.args.hold, self.args.senders)
                result["round"] = round_no + 1
                result["attempt"] = attempt
                self.log(report.step_line(result))
                overloaded = result["deliveries_per_s"] < 0.9 * rate or result["loss"] > 0
                if result["passed"] or overloaded or attempt == 2 or not server.alive():
                    break
                first = {k: result[k] for k in ("loss", "p50_ms", "p99_ms", "load1")}
            if result["attempt"] == 2:
                result["first_attempt"] = first
            steps.append(result)
            await server.settle()
            if not server.alive() or not result["passed"]:
                break
            knee = rate
        return knee

    async def knee(
        self, server: servers.Server, fleet: Any, n: int, ladder_knees: list[float]
    ) -> dict[str, Any]:
        """The highest rate with zero loss and p99 <= 100 ms held for `knee_hold` s: the
        ladder's median knee, else sqrt(2) below it (else 0: below the ladder's knee/1.4)."""
        start = median(ladder_knees)
        if start <= 0:
            start = self.args.rates[0]
        tries = []
        rate = start
        for _ in range(2):
            await self.settle_all()
            result = await measure.step(server, fleet, rate, self.args.knee_hold, self.args.senders)
            self.log("knee try: " + report.step_line(result))
            tries.append(result)
            await server.settle()
            if result["passed"]:
                return {"server": server.name, "n": n, "knee": rate, "tries": tries}
            rate /= math.sqrt(2)
        return {
            "server": server.name,
            "n": n,
            "knee": 0.0,
            "below": tries[-1]["offered"],
            "tries": tries,
        }

    async def run(self) -> dict[str, Any]:
        started = datetime.now(UTC)
        results: dict[str, Any] = {
            "started": started.isoformat(timespec="seconds"),
            "label": self.args.label,
            "argv": sys.argv[1:],
            "settings": {
                key: getattr(self.args, key)
                for key in (
                    "n",
                    "rates",
                    "servers",
                    "rounds",
                    "hold",
                    "knee_hold",
                    "reference_rate",
                    "senders",
                    "idle",
                    "connect",
                    "idle_hold",
                    "idle_room_size",
                    "reconnect",
                    "reconnect_rooms",
                    "reconnect_rate",
                    "concurrency",
                    "app_dir",
                )
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "load_before": os.getloadavg(),
            },
        }
        with self.stack:
            self.prepare()
            if self.args.connect > 0:
                results["idle"] = await self.idle_phase()
            if self.args.idle > 0:
                results["held"] = await self.held_phase()
            if not self.args.no_fanout:
                results["fanout"] = await self.fanout_phase()
            if self.args.reconnect > 0:
                results["reconnect"] = await self.reconnect_phase()
        results["machine"]["load_after"] = os.getloadavg()
        results["duration_s"] = round((datetime.now(UTC) - started).total_seconds(), 1)
        return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_nofile()
    # A TERM (a CI timeout) unwinds like Ctrl-C: the servers and Redis are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="hypertalk-bench-"))
    results = asyncio.run(Bench(args, work).run())
    text = report.render(results)
    print(text)
    out = Path(args.json) if args.json else None
    if out is None:
        out = Path(__file__).parent / "results" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"\nJSON: {out}\nlogs and databases: {work}")
    return 0
