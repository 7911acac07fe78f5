"""The feature mix (issue 16): every kind of event of issues 12-13 under one load, with
its renders counted in the server, its deliveries counted per socket, its latency and loss.

    python -m bench.mix [--n 100] [--pages 100] [--rate 10] [--hold 10] [--server ours]
                        [--rounds 1] [--json out.json]

One Daphne of ours (bench.ours_asgi: it counts each partial rendered), on a copy of the
prepared database. N sockets in the room (the room page's socket), and M other pages of M
other users on /ws/me/?rooms=bench (the room list: the room's activity, their
notifications). Then, for `--hold` s, all at once:

  message   S of the room's sockets post marked messages, `--rate` a second in all;
  mention   once a second one of them mentions the user of one of the M pages: the
            message reaches the room, and a notification that page (and its activity
            every page);
  edit      twice a second an author rewords one of their messages (POST .../edit/, as
            htmx sends it): the new text, marked, reaches the room;
  react     twice a second someone toggles a reaction on a message (POST .../reactions/);
  delete    once a second an author deletes one of their messages (POST .../delete/);
  typing    T of the room's sockets send the typing signal every second (the server lets
            one a person through each 3 s);
  activity  every message's activity reaches every one of the M pages, coalesced per
            tick (rooms/attention.py ActivityCoalescer): counted by data-count.

Per kind: the events, the renders of the partial that kind renders (message-oob for
messages and mentions, message-change for edits, reactions and deletes,
mention-notification, typing, room-activity) per event of the kinds rendering it, which
must be 1.00 (the activity: at most 1, one per tick), the deliveries against what was
expected (N per room event, one notification per mention, M activities per message), the
p50/p99 from sending to receiving (the HTTP changes: from the POST), and the loss.
"""

import argparse
import asyncio
import json
import re
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench import measure, servers
from bench.limits import raise_nofile
from bench.loadgen import MARKER, Client, Fleet, Window, now_us
from bench.unread import TYPING_MARK, open_all, type_along

# A target message's text, posted before the load: its id is read from the pushes.
TARGET = re.compile(rb'data-message-id="(\d+)"[^>]*data-author="([^"]+)".*?tgt-(\w+)-(\d+)', re.S)
# A change of a message (an edit, a reaction, a delete): its id and change number.
CHANGE = re.compile(rb'data-message-id="(\d+)" data-seq="\d+" data-change="(\d+)"')
ACTIVITY_COUNT = re.compile(rb'data-room-activity[^>]*data-count="(\d+)"')
CSRF = "benchcsrftoken0123456789abcdefgh"  # any 32 characters, sent as cookie and header
KINDS = ("message", "mention", "edit", "react", "delete", "typing", "activity")
# kind -> the partial it renders
PARTIAL = {
    "message": "message-oob",
    "mention": "message-oob",
    "notification": "mention-notification",
    "edit": "message-change",
    "react": "message-change",
    "delete": "message-change",
    "typing": "typing",
    "activity": "room-activity",
}


@dataclass
class Tracked:
    """Deliveries of the events that carry no marker (reactions, deletes): by message id,
    when the change was asked for; each socket counts a (message, change) once."""

    sent_us: dict[int, int] = field(default_factory=dict)
    latencies_us: list[int] = field(default_factory=list)
    delivered: int = 0


class MixFleet(Fleet):
    """Sockets that count every kind: marked messages (each marker once a frame, as an
    edit's push may quote the text twice), changes of tracked messages, typing lines,
    activity (by data-count) and the targets' ids while setting up."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.targets: dict[str, list[tuple[int, str]]] = defaultdict(list)
        self.target_ids: set[int] = set()
        self.tracked: dict[str, Tracked] = {"react": Tracked(), "delete": Tracked()}
        self.seen_changes: set[tuple[Client, int, int]] = set()
        self.typing = 0
        self.activity = 0
        self.activity_pushes = 0
        self.recording_targets = False

    def on_text(self, client: Client, data: bytes, now: int) -> None:
        self.last_frame = now
        if self.recording_targets and client.index == 0:
            for pk, author, kind, _ in TARGET.findall(data):
                if int(pk) not in self.target_ids:
                    self.target_ids.add(int(pk))
                    self.targets[kind.decode()].append((int(pk), author.decode()))
        for match in set(MARKER.findall(data)):
            wid, sender, seq, sent = (int(x) for x in match)
            window = self.windows.get(wid)
            if window is None:
                self.late_or_unknown += 1
                continue
            window.delivered += 1
            window.latencies_us.append(now - sent)
            window.last_arrival = now
            if seq <= client.last_seq.get(sender, -1):
                window.out_of_order += 1
            else:
                client.last_seq[sender] = seq
        for pk, change in CHANGE.findall(data):
            key = (client, int(pk), int(change))
            for tracked in self.tracked.values():
                asked = tracked.sent_us.get(int(pk))
                if asked is not None and key not in self.seen_changes:
                    self.seen_changes.add(key)
                    tracked.delivered += 1
                    tracked.latencies_us.append(now - asked)
        self.typing += data.count(TYPING_MARK)
        templates = data.count(b"data-room-activity")
        if templates:
            counts = [int(c) for c in ACTIVITY_COUNT.findall(data)]
            self.activity += sum(counts) + templates - len(counts)
            self.activity_pushes += 1


class Marked:
    """Marked texts from senders that are not sockets (the HTTP edits): a sender index
    of their own (past any socket's), and the marker's sequence per sender."""

    def __init__(self) -> None:
        self.seq: Counter[int] = Counter()

    def text(self, window: Window, sender: int) -> str:
        seq = self.seq[sender]
        self.seq[sender] += 1
        window.sent += 1
        return f"bq:{window.id}:{1_000_000 + sender}:{seq}:{now_us()}"


def http_session(session_key: str) -> requests.Session:
    """A browser of one user, as htmx posts a message action's form."""
    http = requests.Session()
    http.cookies.set("sessionid", session_key)
    http.cookies.set("csrftoken", CSRF)
    http.headers.update({"X-CSRFToken": CSRF, "HX-Request": "true"})
    return http


async def every(period_s: float, hold_s: float, action: Callable[[int], Any]) -> int:
    """Call `action(k)` every `period_s` for `hold_s` (open loop; an async action is
    awaited in a task of its own). Returns the calls."""
    count = max(1, round(hold_s / period_s))
    start = time.monotonic()
    tasks = []
    for k in range(count):
        delay = start + k * period_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        result = action(k)
        if asyncio.iscoroutine(result):
            tasks.append(asyncio.create_task(result))
    if tasks:
        await asyncio.gather(*tasks)
    return count


async def post(http: requests.Session, url: str, data: dict[str, str]) -> int:
    response = await asyncio.to_thread(http.post, url, data=data, timeout=30)
    return response.status_code


async def run_mix(
    server: servers.Server,
    sessions: list[str],
    usernames: list[str],
    *,
    n: int,
    pages: int,
    rate: float,
    hold: float,
    senders: int = 5,
    typists: int = 5,
    targets: int = 40,
) -> dict[str, Any]:
    """One mixed step on a running server of ours; the per-kind results."""
    room = MixFleet("127.0.0.1", server.port, f"/ws/rooms/{servers.ROOM}/?read=1", server.origin)
    listing = MixFleet("127.0.0.1", server.port, f"/ws/me/?rooms={servers.ROOM}", server.origin)
    base = f"http://127.0.0.1:{server.port}/rooms/{servers.ROOM}/messages"
    try:
        await open_all(room, [f"sessionid={key}" for key in sessions[:n]])
        await measure.barrier(server, room)
        await room.quiet(idle_s=0.5, cap_s=60)
        clients = room.open_clients()
        speakers = clients[: max(1, min(senders, n))]
        # The targets: plain texts (a push of them carries no marker), read back from
        # the first socket's frames. Edits and deletes are their authors'.
        room.recording_targets = True
        for k in range(targets):
            for kind in ("edit", "react", "delete"):
                speakers[k % len(speakers)].send_text(server.encode(f"tgt-{kind}-{k}"))
        deadline = time.monotonic() + 30
        while sum(len(v) for v in room.targets.values()) < 3 * targets:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"targets seen: { {k: len(v) for k, v in room.targets.items()} }"
                )
            await asyncio.sleep(0.05)
        room.recording_targets = False
        await room.quiet(idle_s=0.5, cap_s=30)
        page_users = list(range(n, n + pages))
        await open_all(listing, [f"sessionid={sessions[i]}" for i in page_users])
        await listing.quiet(idle_s=0.5, cap_s=60)
        await server.settle()

        by_name = dict(zip(usernames, sessions, strict=True))
        https = {
            name: http_session(by_name[name])
            for name in {a for v in room.targets.values() for _, a in v}
        }
        reactor = http_session(sessions[n - 1])

        windows = {
            kind: room.new_window(next(measure._window_ids))
            for kind in ("message", "mention", "edit")
        }
        notified = listing.new_window(windows["mention"].id)
        notified.receivers = 1  # each mention reaches one page (its user's)
        stats0 = server.stats()["renders"]
        cpu0 = server.cpu_seconds()
        typing0, activity0, pushes0 = room.typing, listing.activity, listing.activity_pushes
        statuses: Counter[int] = Counter()
        marked = Marked()

        def mention(k: int) -> None:
            speaker = speakers[k % len(speakers)]
            name = usernames[page_users[k % len(page_users)]]
            seq = room.next_seq.get(speaker.index, 0)
            room.next_seq[speaker.index] = seq + 1
            marker = f"bq:{windows['mention'].id}:{speaker.index}:{seq}:{now_us()}"
            speaker.send_text(server.encode(f"@{name} {marker}"))
            windows["mention"].sent += 1
            notified.sent += 1

        async def edit(k: int) -> None:
            pk, author = room.targets["edit"][k % len(room.targets["edit"])]
            text = marked.text(windows["edit"], pk)  # (one sender per message: its edits)
            statuses[await post(https[author], f"{base}/{pk}/edit/", {"body": text})] += 1

        async def react(k: int) -> None:
            pk, _ = room.targets["react"][k % len(room.targets["react"])]
            room.tracked["react"].sent_us[pk] = now_us()
            statuses[await post(reactor, f"{base}/{pk}/reactions/", {"emoji": "👍"})] += 1

        async def delete(k: int) -> None:
            pk, author = room.targets["delete"][k % len(room.targets["delete"])]
            if pk in room.tracked["delete"].sent_us:
                return  # (each target is deleted once)
            room.tracked["delete"].sent_us[pk] = now_us()
            statuses[await post(https[author], f"{base}/{pk}/delete/", {})] += 1

        open_room = room.open_clients()
        tasks = {
            "message": room.run_window(windows["message"], speakers, rate, hold, server.encode),
            "mention": every(1.0, hold, mention),
            "edit": every(0.5, hold, edit),
            "react": every(0.5, hold, react),
            "delete": every(1.0, hold, delete),
            "typing": type_along(open_room[len(open_room) - typists :], hold),
        }
        counts = dict(zip(tasks, await asyncio.gather(*tasks.values()), strict=True))
        for window in windows.values():
            await room.drain(window)
        await listing.drain(notified)
        await listing.quiet(idle_s=1.0, cap_s=30)
        await room.quiet(idle_s=1.0, cap_s=30)
        cpu = server.cpu_seconds() - cpu0
        stats1 = server.stats()["renders"]
        renders = {p: stats1.get(p, 0) - stats0.get(p, 0) for p in set(PARTIAL.values())}

        n_open = len(room.open_clients())
        events: dict[str, int] = {
            "message": windows["message"].sent,
            "mention": windows["mention"].sent,
            "edit": windows["edit"].sent,
            "react": int(counts["react"] or 0),
            "delete": len(room.tracked["delete"].sent_us),
        }
        typing_received = room.typing - typing0
        # Every socket of the room gets each accepted typing event (the typist's too).
        events["typing"] = round(typing_received / max(1, n_open))
        events["notification"] = notified.sent
        events["activity"] = events["message"] + events["mention"]
        by_partial: Counter[str] = Counter()
        for kind, partial in PARTIAL.items():
            by_partial[partial] += events[kind]
        rows: dict[str, dict[str, Any]] = {}
        for kind in (
            "message",
            "mention",
            "notification",
            "edit",
            "react",
            "delete",
            "typing",
            "activity",
        ):
            partial = PARTIAL[kind]
            row: dict[str, Any] = {
                "events": events[kind],
                "partial": partial,
                "renders_per_event": round(renders[partial] / max(1, by_partial[partial]), 3),
            }
            if kind in windows:
                w = windows[kind]
                row |= _latency(w.latencies_us, w.delivered, w.expected, w.out_of_order)
            elif kind == "notification":
                w = notified
                row |= _latency(w.latencies_us, w.delivered, w.expected, w.out_of_order)
            elif kind in room.tracked:
                t = room.tracked[kind]
                row |= _latency(t.latencies_us, t.delivered, events[kind] * n_open, 0)
            elif kind == "typing":
                row |= {"delivered": typing_received, "expected": events[kind] * n_open, "loss": 0}
            else:  # activity
                expected = events["activity"] * pages
                delivered = listing.activity - activity0
                row |= {
                    "delivered": delivered,
                    "expected": expected,
                    "loss": expected - delivered,
                    "pushes_per_page": round(
                        (listing.activity_pushes - pushes0) / max(1, pages), 1
                    ),
                }
            rows[kind] = row
        lost = [c for c in room.clients + listing.clients if c.lost.done()]
        return {
            "n": n_open,
            "pages": pages,
            "rate": rate,
            "hold_s": hold,
            "server_cpu_s": round(cpu, 3),
            "http_statuses": dict(statuses),
            "renders": renders,
            "kinds": rows,
            "sockets_lost": len(lost),
            "unknown_markers": room.late_or_unknown + listing.late_or_unknown,
        }
    finally:
        await room.close()
        await listing.close()


def _latency(latencies: Any, delivered: int, expected: int, out_of_order: int) -> dict[str, Any]:
    return {
        "delivered": delivered,
        "expected": expected,
        "loss": expected - delivered,
        "out_of_order": out_of_order,
        "p50_ms": round(measure.percentile(latencies, 50) / 1000, 2),
        "p99_ms": round(measure.percentile(latencies, 99) / 1000, 2),
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"N = {result['n']} room sockets, M = {result['pages']} room-list pages, "
        f"{result['rate']:g} messages/s for {result['hold_s']:g} s; server CPU "
        f"{result['server_cpu_s']:.2f} s; HTTP {result['http_statuses']}",
        "",
        "| kind | events | partial | renders per event | delivered / expected | loss | p50 / p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, row in result["kinds"].items():
        latency = f"{row['p50_ms']:.1f} / {row['p99_ms']:.1f} ms" if "p99_ms" in row else "n/a"
        extra = f" ({row['pushes_per_page']:g} pushes per page)" if "pushes_per_page" in row else ""
        lines.append(
            f"| {kind} | {row['events']} | {row['partial']} | {row['renders_per_event']:.2f} "
            f"| {row['delivered']} / {row['expected']}{extra} | {row['loss']} | {latency} |"
        )
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-mix-"))
    base_db, usernames, sessions = servers.prepare_database(work, args.n + args.pages)
    server = servers.start(args.server, work, base_db)
    results = []
    try:
        for round_no in range(args.rounds):
            result = await run_mix(
                server,
                sessions,
                usernames,
                n=args.n,
                pages=args.pages,
                rate=args.rate,
                hold=args.hold,
                typists=args.typists,
            )
            result["round"] = round_no
            results.append(result)
            print(f"[{time.strftime('%H:%M:%S')}] {json.dumps(result)}", file=sys.stderr)
            await server.settle()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {"args": vars(args), "results": results}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mix", description=__doc__)
    parser.add_argument("--n", type=int, default=100, help="sockets in the room (N)")
    parser.add_argument("--pages", type=int, default=100, help="room-list pages (M)")
    # (10 messages/s to 100 sockets: the reference load, 1,000 deliveries/s)
    parser.add_argument("--rate", type=float, default=10.0, help="messages/s")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds")
    parser.add_argument("--typists", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--server", default="ours", help="ours (or ours@<checkout dir>)")
    parser.add_argument("--json", help="write the results here as well")
    args = parser.parse_args(argv)
    raise_nofile()
    results = asyncio.run(run(args))
    for result in results["results"]:
        print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
