"""What the unread fan-out costs per message, under the reference load (issue 13).

    python -m bench.unread [--n 100] [--listeners 100,1000] [--typists 10,50] [--rate 1000]
                           [--hold 20] [--rounds 3] [--senders 10] [--json out.json]
                           [--app-dir /path/to/other/checkout]

One Daphne of ours (in-memory layer) and one of bench/unread_asgi.py (the same app with
no activity published), on copies of one prepared database; N sockets in the room, S of
them sending at `--rate` deliveries/s (open loop, bench/loadgen.py), for `--hold` s. Each
round, in turn:

  off             the room's N sockets as an older page has them (no ?read=1), and no
                  activity published: the baseline;
  reads           the same N as the newest page has them (?read=1): each socket notes
                  what it delivers, and a batch writes positions every 5 s (and tells
                  each user's pages);
  activity, 0     ours: each message's activity also goes to the room's activity group
                  (rendered once per tick for all of the tick's messages, issue 16:
                  rooms/attention.py ActivityCoalescer), which nobody follows;
  activity, M     and M room-list pages follow the room (/ws/me/?rooms=bench, the same
                  users as the room's first, then others): each gets every message's
                  activity (counted by the data-count of each push).
  … @<dir>        with `--app-dir`, the activity rows again on a server of that
                  checkout, in the same rounds (before/after).
  typing, T       as "activity, 0", and T of the room's sockets (the last T, not the
                  senders) also send the page's typing signal every ~1 s each, faster
                  than the server's 3 s throttle: the frame htmx's ws-send makes of
                  room.html's #typing-signal form ({"typing": "1", "HEADERS": ...}).
                  `--typists 0` leaves these steps out.

Server CPU per message is the step's CPU over the messages sent; the fan-out's cost is
the difference from the row before (for a typing step, from "activity, 0"). Renders are
counted in the server (each partial): the activity must stay at one render per message,
whatever M is, and the typing line at one render per accepted typing event (each of which
every socket of the room receives), whatever N is. Typing is off in rooms with more than
CHAT_TYPING_MAX_ONLINE (100) people online: with a bigger --n, no typing goes out, and
the typing table says so (0 rendered). Medians of the rounds.
"""

import argparse
import asyncio
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

from bench import measure, servers
from bench.limits import raise_nofile
from bench.loadgen import Client, Fleet
from e2e.servers import daphne_command, free_port

TYPING_PERIOD_S = 1.0  # each typist's signal, every second (the throttle lets one in 3)
TYPING_INTERVAL_S = 3.0  # the server's throttle (settings.CHAT_TYPING_INTERVAL)
TYPING_MARK = b'class="typing-notice"'  # once in each pushed typing line


def encode_typing() -> bytes:
    """What htmx's ws extension sends for room.html's hidden #typing-signal form when
    static/js/chat.js submits it: the form's field and htmx's headers."""
    return json.dumps(
        {
            "typing": "1",
            "HEADERS": {
                "HX-Request": "true",
                "HX-Trigger": "typing-signal",
                "HX-Trigger-Name": None,
                "HX-Target": "typing-signal",
                "HX-Current-URL": f"http://127.0.0.1/rooms/{servers.ROOM}/",
            },
        }
    ).encode()


class RoomFleet(Fleet):
    """The room's sockets: also counts the typing lines each receives (per client, not
    per index: a client opened again after a refused handshake may share an index)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.typing: dict[Client, int] = {}

    def on_text(self, client: Client, data: bytes, now: int) -> None:
        if TYPING_MARK in data:
            self.typing[client] = self.typing.get(client, 0) + data.count(TYPING_MARK)
        super().on_text(client, data, now)


async def type_along(typists: list[Client], hold_s: float) -> int:
    """Each typist sends the typing signal every TYPING_PERIOD_S for `hold_s`, the
    typists spread evenly over the period (open loop). Returns the frames sent."""
    if not typists:
        return 0
    frame = encode_typing()
    gap = TYPING_PERIOD_S / len(typists)
    count = max(1, round(hold_s / gap))
    start = time.monotonic()
    for k in range(count):
        delay = start + k * gap - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        typists[k % len(typists)].send_text(frame)
    return count


COUNT = re.compile(rb'data-count="(\d+)"')


class ActivityFleet(Fleet):
    """Room-list pages: counts the messages whose activity they receive (a push may
    carry several: data-count each; one without it is one message) and the pushes."""

    activity = 0
    pushes = 0

    def on_text(self, client: Client, data: bytes, now: int) -> None:
        templates = data.count(b"data-room-activity")
        if templates:
            counts = [int(c) for c in COUNT.findall(data)]
            self.activity += sum(counts) + templates - len(counts)
            self.pushes += data.count(b'id="room-activity"')
        super().on_text(client, data, now)


def start(kind: str, work: Path, base_db: Path) -> servers.Server:
    """ "ours" (bench.ours_asgi), "ours@<dir>" (another checkout's) or "off"
    (bench.unread_asgi), as servers.start does."""
    if kind.startswith("ours"):
        return servers.start(kind, work, base_db)
    port = free_port()
    db_path = work / f"off-{port}.sqlite3"
    shutil.copyfile(base_db, db_path)
    log_path = work / f"off-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            daphne_command(port, "bench.unread_asgi:application"),
            cwd=servers.PROJECT_DIR,
            env=servers.bench_env(db_path),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = servers.Server(
        name="ours-off",  # ("ours…": it answers /__bench__/stats too)
        port=port,
        process=process,
        log_path=log_path,
        path=f"/ws/rooms/{servers.ROOM}/",
        encode=servers.encode_ours,
        cookies=True,
    )
    server.wait_ready()
    return server


async def open_all(fleet: Fleet, cookies: list[str], tries: int = 10) -> None:
    """Open one client per cookie, again for those refused (on a busy machine a few
    handshakes are reset; the figures are about delivery, not connecting)."""
    pending, errors = cookies, []
    for _ in range(tries):
        before = len(fleet.clients)
        await fleet.connect(pending, concurrency=8)
        fresh = fleet.clients[before:]
        failed = [cookie for cookie, c in zip(pending, fresh, strict=True) if c.opened.exception()]
        errors = [repr(c.opened.exception()) for c in fresh if c.opened.exception()]
        fleet.clients = [c for c in fleet.clients if not (c.opened.done() and c.opened.exception())]
        if not failed:
            return
        pending = failed
        await asyncio.sleep(1)
    raise RuntimeError(f"{len(pending)} sockets could not be opened: {errors[:3]}")


async def one(
    server: servers.Server,
    sessions: list[str],
    args: argparse.Namespace,
    *,
    reads: bool,
    listeners: int,
    typists: int = 0,
) -> dict[str, Any]:
    room = RoomFleet(
        "127.0.0.1", server.port, server.path + ("?read=1" if reads else ""), server.origin
    )
    pages = ActivityFleet("127.0.0.1", server.port, f"/ws/me/?rooms={servers.ROOM}", server.origin)
    try:
        await open_all(room, [f"sessionid={key}" for key in sessions[: args.n]])
        await measure.barrier(server, room)  # every socket is in the room's group
        await room.quiet(idle_s=0.5, cap_s=60)
        if listeners:
            await open_all(
                pages, [f"sessionid={sessions[i % len(sessions)]}" for i in range(listeners)]
            )
            await pages.quiet(idle_s=0.5, cap_s=60)
        await server.settle()
        renders0 = server.stats()["renders"]
        activity0, pushes0 = pages.activity, pages.pushes
        open_room = room.open_clients()
        typing_clients = open_room[len(open_room) - min(typists, len(open_room)) :]
        typing0 = dict(room.typing)
        typing = asyncio.create_task(type_along(typing_clients, args.hold))
        result = await measure.step(server, room, args.rate, args.hold, args.senders)
        typing_sent = await typing
        await pages.quiet(idle_s=0.5, cap_s=30)
        await room.quiet(idle_s=0.5, cap_s=30)
        renders1 = server.stats()["renders"]
        sent = max(1, result["sent"])
        result["listeners"] = listeners
        result["reads"] = reads
        result["cpu_us_per_message"] = round(result["server_cpu_s"] * 1e6 / sent, 1)
        result["activity_renders_per_message"] = round(
            (renders1.get("room-activity", 0) - renders0.get("room-activity", 0)) / sent, 3
        )
        result["activity_delivered"] = pages.activity - activity0
        result["activity_pushes_per_listener"] = round(
            (pages.pushes - pushes0) / max(1, listeners), 1
        )
        result["activity_expected"] = result["sent"] * listeners
        result["frames_to_listeners"] = pages.frames_other
        if typists:
            rendered = renders1.get("typing", 0) - renders0.get("typing", 0)
            received = [room.typing.get(c, 0) - typing0.get(c, 0) for c in open_room]
            result["typists"] = len(typing_clients)
            result["typing_sent"] = typing_sent
            # The throttle's bound: one per typist per 3 s (a send due at exactly 3 s
            # may land a hair early and wait for the next: fewer is fine, more is not).
            result["typing_allowed_max"] = len(typing_clients) * math.ceil(
                args.hold / TYPING_INTERVAL_S
            )
            result["typing_rendered"] = rendered
            result["typing_received_per_socket"] = {
                "min": min(received),
                "median": median(received),
                "max": max(received),
            }
            result["typing_received_total"] = sum(received)
            # Every socket gets every accepted event: one render each means this is 1.
            result["typing_renders_per_event"] = round(rendered / max(1, median(received)), 3)
        lost = [c for c in room.clients + pages.clients if c.lost.done()]
        result["sockets_lost"] = len(lost)
        result["close_codes"] = sorted({c.close_code for c in lost if c.close_code})
        return result
    finally:
        await room.close()
        await pages.close()
        await server.settle()


# name, server, reads, listeners (M), typists (T), the row its cost is compared with
CONFIGS = [
    ("off", "off", False, 0, 0, None),
    ("reads", "off", True, 0, 0, "off"),
    ("activity, 0", "ours", True, 0, 0, "reads"),
]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-unread-"))
    users = max(args.n, *args.listeners, 2)
    base_db, _, sessions = servers.prepare_database(work, users)
    kinds = ["off", "ours"] + ([f"ours@{args.app_dir}"] if args.app_dir else [])
    running = {kind: start(kind, work, base_db) for kind in kinds}
    configs = list(CONFIGS)
    for m in args.listeners:
        configs.append((f"activity, {m}", "ours", True, m, 0, configs[-1][0]))
    if args.app_dir:
        other = f"ours@{args.app_dir}"
        label = f" @{Path(args.app_dir).name}"
        configs.append((f"activity, 0{label}", other, True, 0, 0, "reads"))
        for m in args.listeners:
            configs.append((f"activity, {m}{label}", other, True, m, 0, configs[-1][0]))
    configs += [(f"typing, {t}", "ours", True, 0, t, "activity, 0") for t in args.typists]
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in configs}
    try:
        for round_no in range(args.rounds):
            for name, kind, reads, listeners, typists, base in configs:
                row = await one(
                    running[kind], sessions, args, reads=reads, listeners=listeners, typists=typists
                )
                row["round"] = round_no
                row["compared_with"] = base
                rows[name].append(row)
                print(f"[{time.strftime('%H:%M:%S')}] {name}: {json.dumps(row)}", file=sys.stderr)
    finally:
        for server in running.values():
            server.stop()
        if args.keep:
            print(f"databases and server logs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return {"args": vars(args), "rows": rows}


def table(results: dict[str, Any]) -> str:
    lines = [
        "| configuration | server CPU per message "
        "| + over the row before (typing: over activity, 0) "
        "| p50 / p99 (room) "
        "| loss | activity renders / message | activity delivered / expected "
        "| activity pushes per page |",
        "|---|---|---|---|---|---|---|---|",
    ]
    cpus: dict[str, float] = {}
    for name, rows in results["rows"].items():
        cpu = median(r["cpu_us_per_message"] for r in rows)
        base = rows[0].get("compared_with")
        p50 = median(r["p50_ms"] for r in rows)
        p99 = median(r["p99_ms"] for r in rows)
        loss = sum(r["loss"] for r in rows)
        renders = median(r["activity_renders_per_message"] for r in rows)
        delivered = sum(r["activity_delivered"] for r in rows)
        expected = sum(r["activity_expected"] for r in rows)
        plus = f"{cpu - cpus[base]:+.0f} us" if base in cpus else ""
        pushes = median(r.get("activity_pushes_per_listener", 0) for r in rows)
        lines.append(
            f"| {name} | {cpu:.0f} us | {plus} | {p50:.1f} / {p99:.1f} ms | {loss} "
            f"| {renders:.2f} | {delivered} / {expected} | {pushes:g} |"
        )
        cpus[name] = cpu
    typing = {name: rows for name, rows in results["rows"].items() if rows and "typists" in rows[0]}
    if typing:
        lines += [
            "",
            "| configuration | typing frames sent | allowed by the throttle (at most) "
            "| rendered (accepted events) | received per socket (min / median / max) "
            "| renders per event | + server CPU per typing event |",
            "|---|---|---|---|---|---|---|",
        ]
    for name, rows in typing.items():
        sent = sum(r["typing_sent"] for r in rows)
        allowed = sum(r["typing_allowed_max"] for r in rows)
        rendered = sum(r["typing_rendered"] for r in rows)
        per_socket = [r["typing_received_per_socket"] for r in rows]
        low = sum(p["min"] for p in per_socket)
        mid = sum(p["median"] for p in per_socket)
        high = sum(p["max"] for p in per_socket)
        per_event = median(r["typing_renders_per_event"] for r in rows)
        # The step's CPU over its base row's, per message, spread over the typing events.
        base = rows[0]["compared_with"]
        messages = sum(r["sent"] for r in rows)
        extra = (cpus[name] - cpus[base]) * messages / max(1, rendered) if base in cpus else 0
        lines.append(
            f"| {name} | {sent} | {allowed} | {rendered} | {low} / {mid:g} / {high} "
            f"| {per_event:.2f} | {extra:+.0f} us |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.unread", description=__doc__)
    parser.add_argument("--n", type=int, default=100, help="sockets in the room (N)")
    parser.add_argument(
        "--listeners", default="100,1000", help="room-list pages (M), e.g. 100,1000"
    )
    parser.add_argument(
        "--typists",
        default="10,50",
        help="room sockets that also type (T), e.g. 10,50; 0 leaves the typing steps out",
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="deliveries/s to the room")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds per step")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--json", help="write the results here as well")
    parser.add_argument("--keep", action="store_true", help="keep the databases and logs")
    parser.add_argument(
        "--app-dir", help="the activity rows again on this checkout's app (before/after)"
    )
    args = parser.parse_args(argv)
    args.listeners = [int(m) for m in args.listeners.split(",") if m]
    args.typists = [int(t) for t in args.typists.split(",") if t and int(t) > 0]
    raise_nofile()
    results = asyncio.run(run(args))
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
