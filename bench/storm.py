"""The reconnect storm: N pages in a room, a sender posting, and a graceful restart.

What a deploy does to a chat (issue 16): SIGTERM makes the server close every socket with
1012 (realtime/lifecycle.py) and a new server takes its place on the same port; every
page reconnects at once, from its cursor, while people keep posting. Measured here:

- each page is a loadgen client that behaves as static/js/chat.js does with htmx's ws
  extension: on 1006, 1011, 1012 or 1013 it reconnects after a jittered delay
  (`random() * min(0.5 * 2**retry, 5)` s), to `?after=<cursor>&have=<seqs past a gap>`,
  the cursor being the last `#chat-cursor` the server sent it moved on over the
  messages it holds without a gap;
- one page also sends a message at a steady rate throughout; while its socket is down
  what it sends waits and goes out when it opens again (htmx's queue);
- settle time: from the SIGTERM until every page is open again and has its catch-up;
- errors: handshakes the server refused, closes that are not retried, pages that never
  came back (a refused connection while no server listens is counted apart: it is the
  restart, retried as a browser would);
- completeness: afterwards, every page holds every message of the room from its first
  cursor to the room's last (by `data-seq`, read from the database), and its online
  count and list are exact (every page is a different user, all online): the count is
  everyone, and the list with its "and N more" accounts for everyone (a list capped at
  CHAT_ONLINE_LIST_LIMIT holds the first that many by name, and for a moment perhaps one
  more, which the page's style hides; never more entries than people).
"""

import asyncio
import contextlib
import random
import re
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import servers
from bench.loadgen import Client, now_us
from e2e.servers import PROJECT_DIR, daphne_command

RETRIED = {1006, 1011, 1012, 1013}
MESSAGE_SEQ = re.compile(rb'data-message-id="\d+" data-seq="(\d+)"')
CURSOR = re.compile(rb'id="chat-cursor" data-seq="(\d+)"')
COUNT = re.compile(rb'id="online-count" class="count"[^>]*>(\d+)<')
# The whole list (page or catch-up), an entry dropped, an entry added (room.html), in
# the order htmx applies them.
ONLINE = re.compile(rb'<ul id="online-list">|<li id="online-user-(\d+)"( hx-swap-oob="delete")?')
# The "and N more" past a capped list (empty: everyone is listed).
MORE = re.compile(rb'id="online-more"[^>]*>(?:<a [^>]*>and (\d+) more)?')
COMPOSER = b'<form id="composer"'
STORM_MARK = "storm"


@dataclass
class Page:
    """One page in the room: its socket (reconnected as often as needed) and its state."""

    index: int
    cookie: str
    room: int  # which of the storm's rooms (0: the bench's own)
    first_cursor: int | None = None
    cursor: int = 0  # the last #chat-cursor the server sent
    seqs: set[int] = field(default_factory=set)
    online: set[int] = field(default_factory=set)
    count: int | None = None
    more: int = 0  # the "and N more" past the list
    client: Client | None = None
    connects: int = 0
    retries: int = 0  # failed tries since it was last open
    caught_up_us: int = 0  # its latest connection's catch-up
    closes: dict[int, int] = field(default_factory=dict)
    refused: int = 0  # connection refused: no server listening (the restart)
    errors: list[str] = field(default_factory=list)
    queue: list[bytes] = field(default_factory=list)  # frames waiting for the socket
    unanswered: list[bytes] = field(default_factory=list)  # sent, no composer back yet
    resent: int = 0

    def query(self) -> str:
        """chat.js's reconnect URL parameters: the cursor, and what it holds past it."""
        if self.first_cursor is None:
            return ""
        after = self.cursor
        have = sorted(seq for seq in self.seqs if seq > after)
        while have and have[0] == after + 1:
            after = have.pop(0)
        return f"?after={after}" + (f"&have={','.join(map(str, have[:500]))}" if have else "")


class Storm:
    """The pages, acting as the loadgen's fleet for their clients."""

    def __init__(self, port: int, cookies: list[str], rooms: int) -> None:
        self.port = port
        self.rooms = rooms
        self.pages = [Page(i, cookie, i % rooms) for i, cookie in enumerate(cookies)]
        self.bytes_received = 0
        self.stopping = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.gate = asyncio.Semaphore(64)  # handshakes in flight, as the connect phase

    # The loadgen's fleet interface ------------------------------------------------------

    def on_text(self, client: Client, data: bytes, now: int) -> None:
        page = self.pages[client.index]
        # Each frame the composer sent is answered by the composer, emptied (or kept with
        # an error): the page knows the message was taken.
        if page.unanswered and client is page.client:
            del page.unanswered[: data.count(COMPOSER)]
        for match in MESSAGE_SEQ.finditer(data):
            page.seqs.add(int(match.group(1)))
        for match in ONLINE.finditer(data):
            if match.group(0) == b'<ul id="online-list">':
                page.online.clear()
            elif match.group(2):
                page.online.discard(int(match.group(1)))
            else:
                page.online.add(int(match.group(1)))
        counts = COUNT.findall(data)
        if counts:
            page.count = int(counts[-1])
        mores = MORE.findall(data)
        if mores:
            page.more = int(mores[-1] or 0)
        cursor = CURSOR.search(data)
        if cursor is not None:
            page.cursor = int(cursor.group(1))
            if page.first_cursor is None:
                page.first_cursor = page.cursor
            if client is page.client and not page.caught_up_us:
                page.caught_up_us = now

    def on_lost(self, client: Client) -> None:
        page = self.pages[client.index]
        if client is not page.client or self.stopping:
            return
        page.client = None
        # What was sent and not answered is still in the composer: the person sends it
        # again once the page is back, with its send id (stored once: a second copy
        # would count as a duplicate).
        page.resent += len(page.unanswered)
        page.queue[:0], page.unanswered = page.unanswered, []
        code = client.close_code or 1006
        page.closes[code] = page.closes.get(code, 0) + 1
        if code in RETRIED:
            self.reconnect_later(page)
        else:
            page.errors.append(f"closed with {code}")

    # Connecting -------------------------------------------------------------------------

    def reconnect_later(self, page: Page) -> None:
        # static/js/chat.js: full jitter, 0.5 s doubling per retry, capped at 5 s.
        delay = random.random() * min(0.5 * 2**page.retries, 5.0)
        page.retries += 1
        self.spawn(self.open(page, delay))

    def spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def open(self, page: Page, delay: float = 0.0) -> None:
        await asyncio.sleep(delay)
        if self.stopping:
            return
        loop = asyncio.get_running_loop()
        async with self.gate:
            uri = f"ws://127.0.0.1:{self.port}/ws/rooms/{room_slug(page.room)}/{page.query()}"
            client = Client(self, page.index, uri, f"http://127.0.0.1:{self.port}", page.cookie)  # type: ignore[arg-type]
            page.client, page.caught_up_us = client, 0
            try:
                await loop.create_connection(lambda: client, "127.0.0.1", self.port)
                await asyncio.wait_for(client.opened, 30)
            except ConnectionRefusedError:
                page.refused += 1
                page.client = None
                self.reconnect_later(page)
                return
            except Exception as error:  # a refused handshake, a timeout: an error
                page.errors.append(f"{type(error).__name__}: {error}"[:200])
                if page.client is client:
                    page.client = None
                    self.reconnect_later(page)
                return
        page.connects += 1
        page.retries = 0
        for frame in page.queue:  # htmx's ws extension sends what waited, on open
            client.send_text(frame)
        page.unanswered += page.queue
        page.queue.clear()

    def settled(self, since_us: int) -> bool:
        """Every page open again, with its catch-up, on a connection opened after `since_us`."""
        return all(
            p.client is not None and p.client.open and p.caught_up_us > since_us for p in self.pages
        )

    async def close(self) -> None:
        self.stopping = True
        for task in list(self.tasks):
            task.cancel()
        for page in self.pages:
            if page.client is not None:
                page.client.close()
        await asyncio.sleep(0.2)


async def _sender(
    storm: Storm, page: Page, rate: float, stop: asyncio.Event, sent: list[str]
) -> None:
    """`page` posts `rate` messages a second, on an absolute schedule; while its socket
    is down they wait in its queue (htmx's), and go out when it opens."""
    start = time.monotonic()
    k = 0
    while not stop.is_set():
        due = start + k / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        text = f"{STORM_MARK}:{page.index}:{k}"
        frame = servers.encode_ours(text, token=f"{page.index:016x}{k:016x}")
        client = page.client
        if client is not None and client.open and not client.lost.done():
            client.send_text(frame)
            page.unanswered.append(frame)
        else:
            page.queue.append(frame)
        sent.append(text)
        k += 1


def room_slug(room: int) -> str:
    return servers.ROOM if room == 0 else f"{servers.ROOM}-storm-{room}"


def _add_rooms(db_path: Path, rooms: int) -> None:
    """Rooms 1 .. rooms-1 (room_slug), copies of the bench's room, in its database."""
    # (Closed, not only committed: the file is in WAL mode, and it is copied next.)
    with contextlib.closing(sqlite3.connect(db_path)) as db, db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(rooms_room)")]
        copied = [c for c in columns if c not in ("id", "slug")]
        for room in range(1, rooms):
            db.execute(
                f"INSERT INTO rooms_room (slug, {', '.join(copied)}) SELECT ?, "
                f"{', '.join(copied)} FROM rooms_room WHERE slug = ?",
                (room_slug(room), servers.ROOM),
            )


def _room_state(db_path: Path, rooms: int) -> tuple[list[int], int, int]:
    """(each room's last seq, storm messages stored, distinct storm messages stored)."""
    with contextlib.closing(sqlite3.connect(db_path, timeout=30)) as db:
        last_seqs = [
            db.execute(
                "SELECT last_seq FROM rooms_room WHERE slug = ?", (room_slug(room),)
            ).fetchone()[0]
            for room in range(rooms)
        ]
        stored, distinct = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT body) FROM rooms_message WHERE body LIKE ?",
            (f"{STORM_MARK}:%",),
        ).fetchone()
    return last_seqs, stored, distinct


async def _wait(check: Any, cap_s: float, step: float = 0.05) -> float:
    start = time.monotonic()
    while not check() and time.monotonic() - start < cap_s:
        await asyncio.sleep(step)
    return time.monotonic() - start


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        # (As Twisted binds: the closed sockets' TIME_WAIT does not keep a server out.)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def reconnect_storm(
    kind: str,
    work: Path,
    base_db: Path,
    sessions: list[str],
    n: int,
    *,
    rooms: int = 1,
    rate: float = 5.0,
    redis_url: str = "",
    redis_pid: int | None = None,
    app_dir: Path | None = None,
    before_s: float = 2.0,
    after_s: float = 3.0,
    cap_s: float = 120.0,
    log: Any = print,
) -> dict[str, Any]:
    """Connect `n` pages (page i in room i % `rooms`), post `rate` messages/s in all (one
    sender per room), restart the server gracefully (SIGTERM, a new process on the same
    port and database), and measure the storm (module doc)."""
    storm_db = work / f"storm-{rooms}-rooms.sqlite3"
    shutil.copyfile(base_db, storm_db)
    _add_rooms(storm_db, rooms)
    first = servers.start(kind, work, storm_db, redis_url, redis_pid, app_dir=app_dir)
    db_path = work / f"{kind}-{first.port}.sqlite3"
    current = first
    storm = Storm(first.port, [f"sessionid={key}" for key in sessions[:n]], rooms)
    stop_sending = asyncio.Event()
    sent: list[str] = []
    result: dict[str, Any] = {"server": kind, "n": n, "rooms": rooms, "rate": rate}
    senders: list[asyncio.Task[None]] = []
    try:
        start = time.monotonic()
        await asyncio.gather(*(storm.open(page) for page in storm.pages))
        await _wait(lambda: storm.settled(0), cap_s)
        result["connect_s"] = round(time.monotonic() - start, 3)
        loop = asyncio.get_running_loop()
        senders = [
            loop.create_task(_sender(storm, page, rate / rooms, stop_sending, sent))
            for page in storm.pages[:rooms]
        ]
        await asyncio.sleep(before_s)

        term_us, term = now_us(), time.monotonic()
        first.process.terminate()  # the graceful stop: 1012 to every socket
        await _wait(lambda: _port_free(first.port), 30, 0.01)
        result["port_free_s"] = round(time.monotonic() - term, 3)
        log(f"{kind}: restarting on port {first.port} ({n} pages, {rate:g} messages/s)")
        current = _start_on(kind, first.port, db_path, work, redis_url, redis_pid, app_dir)
        await _wait(lambda: storm.settled(term_us), cap_s)
        result["settle_s"] = round(time.monotonic() - term, 3)
        result["settled"] = storm.settled(term_us)
        result["new_server_cpu_s"] = round(current.cpu_seconds(), 3)

        await asyncio.sleep(after_s)
        stop_sending.set()
        await asyncio.gather(*senders)
        # Everything sent reaches the pages (what waited in a queue included).
        await _wait(lambda: all(not p.queue and not p.unanswered for p in storm.pages), 30)
        last_seqs, stored, distinct = await asyncio.to_thread(_room_state, db_path, rooms)
        await _wait(lambda: all(_complete(p, last_seqs) for p in storm.pages), 30)
        await asyncio.sleep(1.0)  # the last presence tick
        incomplete = [p for p in storm.pages if not _complete(p, last_seqs)]
        users = [sum(1 for p in storm.pages if p.room == room) for room in range(rooms)]
        inexact = [p for p in storm.pages if not _list_exact(p, users[p.room])]
        result.update(
            sent=len(sent),
            stored=stored,
            duplicates=stored - distinct,
            not_accepted=len(sent) - distinct,
            sent_again=sum(p.resent for p in storm.pages),
            last_seqs=last_seqs[:10],
            pages_complete=n - len(incomplete),
            missing_messages=sum(len(_missing(p, last_seqs)) for p in incomplete),
            errors=sum(len(p.errors) for p in storm.pages),
            error_samples=[e for p in storm.pages for e in p.errors][:5],
            refused_while_restarting=sum(p.refused for p in storm.pages),
            reconnects=sum(p.connects for p in storm.pages) - n,
            closes={
                str(code): sum(p.closes.get(code, 0) for p in storm.pages)
                for code in sorted({c for p in storm.pages for c in p.closes})
            },
            online_count_exact=sum(1 for p in storm.pages if p.count == users[p.room]),
            online_list_exact=n - len(inexact),
            # (Pages whose list is not: entries, "and N more", count, people in the room.)
            online_list_samples=[
                (len(p.online), p.more, p.count, users[p.room]) for p in inexact[:5]
            ],
            bytes_received=storm.bytes_received,
        )
    finally:
        stop_sending.set()
        for task in senders:
            task.cancel()
        await storm.close()
        first.stop()
        current.stop()
    return result


def _start_on(
    kind: str,
    port: int,
    db_path: Path,
    work: Path,
    redis_url: str,
    redis_pid: int | None,
    app_dir: Path | None,
) -> servers.Server:
    """The new process of a restart: our app on `port` and the old one's database."""
    log_path = work / f"{kind}-{port}-restarted.log"
    env = servers.bench_env(db_path, redis_url if kind == "ours-redis" else "", app_dir)
    process = servers.spawn(
        daphne_command(port, "bench.ours_asgi:application"), app_dir or PROJECT_DIR, env, log_path
    )
    return servers.Server(
        name=kind,
        port=port,
        process=process,
        log_path=log_path,
        path=f"/ws/rooms/{servers.ROOM}/",
        encode=servers.encode_ours,
        cookies=True,
        extra_pids=[redis_pid] if (kind == "ours-redis" and redis_pid) else [],
    )


def _list_exact(page: Page, users: int) -> bool:
    """The page's online list accounts for everyone (`users`, all online): its entries and
    its "and N more" together, without more entries than people (see the module doc)."""
    return len(page.online) <= users and len(page.online) + page.more >= users


def _missing(page: Page, last_seqs: list[int]) -> set[int]:
    last_seq = last_seqs[page.room]
    if page.first_cursor is None:
        return set(range(1, last_seq + 1))
    return set(range(page.first_cursor + 1, last_seq + 1)) - page.seqs


def _complete(page: Page, last_seqs: list[int]) -> bool:
    return not _missing(page, last_seqs)


def table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "Reconnect storm (graceful restart: SIGTERM, 1012, a new server on the same port):",
        "",
        "| server | pages (rooms) | messages/s | settle s | errors | pages complete | missing "
        "| sent / stored / not accepted | online count exact | refused while restarting |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['server']} | {r['n']:,} | {r['error']} | | | | | | | |")
            continue
        out.append(
            f"| {r['server']} | {r['n']:,} ({r['rooms']}) | {r['rate']:g} "
            f"| {r.get('settle_s', '-')} "
            f"| {r.get('errors', '-')} | {r.get('pages_complete', '-')} "
            f"| {r.get('missing_messages', '-')} "
            f"| {r.get('sent', '-')} / {r.get('stored', '-')} / {r.get('not_accepted', '-')} "
            f"| {r.get('online_count_exact', '-')} | {r.get('refused_while_restarting', '-')} |"
        )
    return out


def connect_table(idle: list[dict[str, Any]]) -> list[str]:
    """The connect storm (the idle phase's first connect): catch-up and presence."""
    out = [
        "Connect storm (64 handshakes in flight): every socket connected and caught up:",
        "",
        "| server | sockets | all caught up s | catch-up p50 / p99 ms | presence frames "
        "(per join) | server CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for r in idle:
        if "error" in r or not r.get("connects"):
            continue
        c = r["connects"][0]
        if "caught_up_s" not in c:
            continue
        out.append(
            f"| {r['server']} | {c['to']:,} | {c['caught_up_s']} "
            f"| {c['catch_up_p50_ms']} / {c['catch_up_p99_ms']} "
            f"| {c['presence_frames']:,} ({c['presence_frames_per_join']}) "
            f"| {c['server_cpu_s']} |"
        )
    return out
