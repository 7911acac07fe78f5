"""Who is online where, correct across any number of server processes: the one module
that reads and writes Connection rows and announces joins and leaves.

Every open socket is a Connection row. A user is online in a room while at least one of
their rows there is fresh (its process heartbeats it every CHAT_PRESENCE_HEARTBEAT
seconds) and is open, or closed less than CHAT_PRESENCE_LEAVE_GRACE seconds ago.

Two things keep the room's log readable whatever clients do:
- A leave counts only once the user has been gone for the grace period: a closed socket
  marks its row departed, and the row is settled (deleted, "left" announced if it was the
  user's last) after the grace. A reload, a reconnect or a hand-over to another process
  within the grace shows nothing at all, and a client that connects and disconnects in a
  loop cannot fill everyone's log with lines.
- Announcements are collected per room and sent once per CHAT_PRESENCE_TICK as one
  fragment: N people joining at once cost each socket a few frames, not N.

The rows of a process that died stop being refreshed and are reaped, with a "left" line,
by whichever process heartbeats next: ghosts last at most one TTL plus one heartbeat.
"""

import asyncio
import logging
import os
import socket
import uuid
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Window
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

import realtime
from rooms import services
from rooms.models import Connection, Room

log = logging.getLogger(__name__)

SERVER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

Event = Literal["joined", "left"]


@dataclass(frozen=True)
class Change:
    room: Room
    user: Any
    event: Event


# Reading ------------------------------------------------------------------------------


def _cutoffs() -> tuple[datetime, datetime]:
    """(rows refreshed before this are stale, rows departed before this are gone)"""
    now = timezone.now()
    return (
        now - timedelta(seconds=settings.CHAT_PRESENCE_TTL),
        now - timedelta(seconds=settings.CHAT_PRESENCE_LEAVE_GRACE),
    )


def _online(rows: QuerySet[Connection]) -> QuerySet[Connection]:
    stale, gone = _cutoffs()
    return rows.filter(
        Q(seen_at__gte=stale) & (Q(departed_at__isnull=True) | Q(departed_at__gte=gone))
    )


def online_people(
    room: Room, *, also: Collection[int] = (), without: Collection[int] = ()
) -> QuerySet[Any]:
    """Everyone online in `room`, by username (the online list's order); counting the
    users whose ids are `also` in and those in `without` out (the list as it stood)."""
    online = Q(pk__in=_online(room.connections.all()).values("user_id"))
    # (Only what the list shows: a connect storm reads it once per batch of sockets.)
    users = get_user_model().objects.filter(online | Q(pk__in=also) if also else online)
    if without:
        users = users.exclude(pk__in=without)
    return users.only("id", "username").order_by("username")


def online_users(room: Room) -> list[Any]:
    """Everyone online in `room` (@here; the list a page shows is `online_list`)."""
    return list(online_people(room))


@dataclass(frozen=True)
class OnlineList:
    """What a room's online list shows whole (room.html#online-users): its first
    CHAT_ONLINE_LIST_LIMIT people, and how many are online. Every page and every
    connect's catch-up carries it, so its size must not grow with the room: whole, it was
    ~150 KB at 1,000 online and past the 1 MiB a socket may leave unread at ~7,000, and a
    connect storm's bytes grew O(N^2). The rest are "and N more", a link to the room's
    /online/ page."""

    users: list[Any]
    count: int

    @property
    def more(self) -> int:
        """How many are online past the list's limit (the "and N more")."""
        return more_than_listed(self.count)

    def context(self) -> dict[str, Any]:
        """The online-users partial's context (with the room and, optionally, the
        entries kept by `online_entries` as `online_items`)."""
        return {"online_users": self.users, "online_count": self.count, "online_more": self.more}


def more_than_listed(count: int) -> int:
    return max(0, count - settings.CHAT_ONLINE_LIST_LIMIT)


def online_list(room: Room) -> OnlineList:
    # One query: the first by name, each row carrying how many there are in all (a
    # window over the whole of them, counted before the LIMIT). A connect storm reads
    # this for each room of each batch of arrivals.
    listed = online_people(room).annotate(online_count=Window(Count("pk")))
    users = list(listed[: settings.CHAT_ONLINE_LIST_LIMIT])
    return OnlineList(users, users[0].online_count if users else 0)


# Each user's entry in an online list (room.html#online-user), rendered once and kept: a
# connect storm sends the whole list with every batch of sockets' catch-up, and rendering
# a thousand entries each time was a fifth of a 1,000-socket storm's server time.
_entries: dict[tuple[int, str], str] = {}
ENTRIES_KEPT = 100_000


def online_entries(users: list[Any]) -> SafeString:
    """The entries of `users` in an online list, as room.html#online-users's
    `online_items` (the same HTML as its loop renders)."""
    entries = []
    for user in users:
        key = (user.pk, user.username)
        entry = _entries.get(key)
        if entry is None:
            if len(_entries) >= ENTRIES_KEPT:
                _entries.clear()
            entry = _entries[key] = services.render_fragment("online-user", person=user)
        entries.append(entry)
    return mark_safe("".join(entries))  # (each entry is the template's escaped output)


def online_count_per_room() -> Coalesce:
    """An annotation for a Room queryset: how many users are online in each room (a
    subquery per room, so a page of rooms stays one query)."""
    online = (
        _online(Connection.objects.filter(room_id=OuterRef("pk")))
        .order_by()
        .values("room_id")
        .annotate(users=Count("user_id", distinct=True))
        .values("users")
    )
    return Coalesce(Subquery(online), 0)


def online_count(room: Room) -> int:
    return _online(room.connections.all()).values("user").distinct().count()


def _is_online(room_id: int, user_id: int) -> bool:
    return _online(Connection.objects.filter(room_id=room_id, user_id=user_id)).exists()


# Writing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    room: Room
    user: Any
    socket_id: str


def arrive(room: Room, user: Any, socket_id: str) -> bool:
    """Record a new socket; True when it brings the user online in the room (they were
    not online, nor gone for less than the grace period)."""
    (first,) = arrive_many([Arrival(room, user, socket_id)])
    return first


@transaction.atomic
def arrive_many(arrivals: list[Arrival]) -> list[bool]:
    """`arrive` for many sockets in a few queries, whatever their number (a connect
    storm: one row and three queries each were most of a connect's database time);
    for each, whether it brings its user online (the first of theirs in the batch)."""
    if not arrivals:
        return []
    was_online = set(
        _online(
            Connection.objects.filter(
                room_id__in={a.room.pk for a in arrivals},
                user_id__in={a.user.pk for a in arrivals},
            )
        ).values_list("room_id", "user_id")
    )
    # (A socket id seen before is replaced, as update_or_create did: ids are per process
    # and never reused, but a test may.)
    Connection.objects.filter(socket_id__in=[a.socket_id for a in arrivals]).delete()
    now = timezone.now()
    Connection.objects.bulk_create(
        Connection(socket_id=a.socket_id, room=a.room, user=a.user, server=SERVER_ID, seen_at=now)
        for a in arrivals
    )
    firsts = []
    for arrival in arrivals:
        key = (arrival.room.pk, arrival.user.pk)
        firsts.append(key not in was_online)
        was_online.add(key)
    return firsts


def depart(socket_id: str) -> bool:
    """Mark a closed socket departed; True when the user may have left the room (it
    was their last open socket there), to be settled after the grace period."""
    connection = Connection.objects.filter(socket_id=socket_id, departed_at=None).first()
    if connection is None:
        return False
    Connection.objects.filter(pk=connection.pk).update(departed_at=timezone.now())
    return not Connection.objects.filter(
        room_id=connection.room_id, user_id=connection.user_id, departed_at=None
    ).exists()


def settle(room_id: int, user_id: int) -> list[Change]:
    """Once the grace has passed: drop the user's departed rows in the room; a "left"
    change if that was the last of them and no socket came back."""
    _, gone = _cutoffs()
    with transaction.atomic():
        deleted, _ = Connection.objects.filter(
            room_id=room_id, user_id=user_id, departed_at__lt=gone
        ).delete()
        if not deleted or _is_online(room_id, user_id):
            return []
    room = Room.objects.filter(pk=room_id).first()
    user = get_user_model().objects.filter(pk=user_id).first()
    return [Change(room, user, "left")] if room and user else []


def heartbeat() -> list[Change]:
    """Refresh this process's rows; reap the stale ones (a process that died) and the
    departed ones nobody settled; return who left by that."""
    Connection.objects.filter(server=SERVER_ID).update(seen_at=timezone.now())
    stale, gone = _cutoffs()
    expired = list(
        Connection.objects.filter(Q(seen_at__lt=stale) | Q(departed_at__lt=gone))
        .select_related("room", "user")
        .order_by("pk")
    )
    changes: dict[tuple[int, int], Change] = {}
    for connection in expired:
        # Delete by id and seen_at, so a row its process refreshed meanwhile survives.
        deleted, _ = Connection.objects.filter(
            pk=connection.pk, seen_at=connection.seen_at
        ).delete()
        key = (connection.room_id, connection.user_id)
        if deleted and not _is_online(*key):
            changes[key] = Change(connection.room, connection.user, "left")
    if expired:
        log.info("reaped %d closed or stale connections", len(expired))
    return list(changes.values())


def forget_server() -> list[Change]:
    """Drop this process's rows (on shutdown); who is now gone from their rooms (not
    online through another process)."""
    mine = Connection.objects.filter(server=SERVER_ID).select_related("room", "user")
    pairs = {(row.room_id, row.user_id): (row.room, row.user) for row in mine}
    Connection.objects.filter(server=SERVER_ID).delete()
    still_online = set(
        _online(Connection.objects.filter(room_id__in={room_id for room_id, _ in pairs}))
        .values_list("room_id", "user_id")
        .distinct()
    )
    return [
        Change(room, user, "left") for key, (room, user) in pairs.items() if key not in still_online
    ]


# Announcing ---------------------------------------------------------------------------


def render_changes(room: Room, changes: list[Change]) -> str:
    """One fragment for a room's changes of one tick: list increments, the count, lines."""
    for change in changes:
        log.info("%s %s %s", change.user, change.event, room)
    joined = [c.user for c in changes if c.event == "joined"]
    left = [c.user for c in changes if c.event == "left"]
    lines = [(people, event) for people, event in ((joined, "joined"), (left, "left")) if people]
    count = online_count(room)
    appended, removed = _list_changes(room, joined, left, count)
    return services.render_fragment(
        "presence-oob",
        room=room,
        listed=appended,
        left=[*left, *removed],
        lines=lines,
        online_count=count,
        online_more=more_than_listed(count),
    )


def _list_changes(
    room: Room, joined: list[Any], left: list[Any], count: int
) -> tuple[list[Any], list[Any]]:
    """Whom a tick appends to the pages' online lists, and whom it takes off besides those
    who left. A page's list is the first CHAT_ONLINE_LIST_LIMIT people by name
    (`online_list`), and each tick keeps it so:

    - under the limit, whoever joined is appended;
    - past it, a join among the first is appended and pushes the last of them off; a
      join after them is only the count and "and N more". A storm of N joins into a big
      room then sends each page the few joins that land among the first, not an entry
      per join (O(N^2) bytes in all);
    - whoever leaves makes room for the next by name, appended. (Without that, the
      departures a restart announces as the pages come back to the new process left
      pages listing a few people and "and 900 more".)
    """
    limit = settings.CHAT_ONLINE_LIST_LIMIT
    was = count - len(joined) + len(left)  # how many were online before the tick
    if count <= limit and was <= limit:
        return joined, []  # (everyone was listed, and is)
    # The first by name now, and before the tick (as the database sorts names).
    gone, came = {u.pk for u in left}, {u.pk for u in joined}
    first = list(online_people(room)[:limit])
    before = {u.pk: u for u in online_people(room, also=gone, without=came)[:limit]}
    first_ids = {u.pk for u in first}
    appended = [u for u in first if u.pk not in before]
    removed = [u for pk, u in before.items() if pk not in first_ids and pk not in gone]
    return appended, removed


# Ticks slow down as the process fills up: each tick of a room is a frame to every socket
# in it, so this process's sockets are sent at most this many presence frames a second in
# all (its socket count / this seconds between a room's ticks, never less than
# CHAT_PRESENCE_TICK). A storm of N joins then costs O(N) presence frames, not O(N^2);
# and in a long storm over many rooms (10,000 reconnecting sockets, ten rooms of 1,000),
# a tick per room every 0.25 s was millions of frames, most of the server's time.
# 1,000 sockets keep the 0.25 s tick; 10,000 get one every 2.5 s.
PRESENCE_FRAMES_PER_SECOND = 4000

# This process's room sockets (rooms/consumers.py counts them in and out).
_local_sockets = 0


def counted_in() -> None:
    global _local_sockets
    _local_sockets += 1


def counted_out() -> None:
    global _local_sockets
    _local_sockets = max(0, _local_sockets - 1)


def tick() -> float:
    """Seconds between two presence fragments of a room (see PRESENCE_FRAMES_PER_SECOND)."""
    return max(settings.CHAT_PRESENCE_TICK, _local_sockets / PRESENCE_FRAMES_PER_SECOND)


class Announcer:
    """Collects joins and leaves and sends each room's as one fragment per tick (`tick`).

    A join and a leave of the same user within one tick cancel out: the others' view
    did not change. The rooms due in a tick are rendered in one database call.
    """

    def __init__(self) -> None:
        self.pending: dict[int, dict[int, Change]] = defaultdict(dict)
        self.sent_at: dict[int, float] = {}  # loop time of each room's last fragment
        self.flushing = False  # a flush is scheduled
        self.lock = asyncio.Lock()  # one flush at a time: a room's fragments go in order

    def add(self, change: Change) -> None:
        room_changes = self.pending[change.room.pk]
        earlier = room_changes.pop(change.user.pk, None)
        if earlier is None or earlier.event == change.event:
            room_changes[change.user.pk] = change
        if not self.flushing:
            self.flushing = True
            _spawn(self._flush_after(settings.CHAT_PRESENCE_TICK), "presence-announcer")

    async def _flush_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.flush(due_only=True)

    async def flush(self, due_only: bool = False) -> None:
        """Send the rooms' changes (with `due_only`, of the rooms whose tick has come; the
        others' at theirs)."""
        async with self.lock:
            await self._flush(due_only)

    async def _flush(self, due_only: bool) -> None:
        now = asyncio.get_running_loop().time()
        due: dict[int, dict[int, Change]] = {}
        later = 0.0
        for room_id, changes in list(self.pending.items()):
            wait = self.sent_at.get(room_id, -1e9) + tick() - now
            if due_only and wait > 0:
                later = min(later, wait) if later else wait
                continue
            del self.pending[room_id]
            if changes:
                due[room_id] = changes
        self.flushing = bool(self.pending)
        if self.flushing:
            _spawn(self._flush_after(later), "presence-announcer")
        if not due:
            return
        batch = [list(changes.values()) for changes in due.values()]
        try:
            fragments = await database_sync_to_async(_render_rooms)(batch)
        except Exception:
            log.exception("presence: could not render the changes in %d rooms", len(batch))
            return
        for room_id, html in zip(due, fragments, strict=True):
            self.sent_at[room_id] = asyncio.get_running_loop().time()
            if html is not None:
                await self.send(services.room_group(room_id), html)

    async def send(self, group: str, html: str) -> None:
        await realtime.publish(group, html)


def _render_rooms(batch: list[list[Change]]) -> list[str | None]:
    """Each room's fragment (None where it could not be rendered: logged)."""
    fragments: list[str | None] = []
    for changes in batch:
        room = changes[0].room
        try:
            fragments.append(render_changes(room, changes))
        except Exception:
            log.exception("presence: could not render the changes in %s", room)
            fragments.append(None)
    return fragments


_announcers: dict[asyncio.AbstractEventLoop, Announcer] = {}


def _announcer() -> Announcer:
    loop = asyncio.get_running_loop()
    if loop not in _announcers:
        _announcers[loop] = Announcer()
    return _announcers[loop]


def announce(changes: list[Change]) -> None:
    """Send these changes with the next tick (from the event loop)."""
    for change in changes:
        _announcer().add(change)


async def departed(room: Room, user: Any, socket_id: str) -> None:
    """A socket closed: its user leaves once the grace has passed without them back."""
    if not await database_sync_to_async(depart)(socket_id):
        return
    # (A little past the grace, so that the row is past the cutoff when settled.)
    grace = settings.CHAT_PRESENCE_LEAVE_GRACE
    _spawn(_settle_after(grace + 0.05 if grace else 0, room.pk, user.pk), "presence-settle")


async def _settle_after(delay: float, room_id: int, user_id: int) -> None:
    await asyncio.sleep(delay)
    try:
        announce(await database_sync_to_async(settle)(room_id, user_id))
    except Exception:
        log.exception("presence: could not settle a departure (the heartbeat will)")


_tasks: set["asyncio.Task[None]"] = set()


def _spawn(work: Any, name: str) -> None:
    task = asyncio.get_running_loop().create_task(work, name=name)
    _tasks.add(task)  # (the loop keeps only weak references to tasks)
    task.add_done_callback(_tasks.discard)


async def drain() -> None:
    """Wait for departures being settled and announcements being sent (tests)."""
    while _tasks:
        await asyncio.gather(*_tasks, return_exceptions=True)


async def leave_server() -> int:
    """On shutdown: forget this process's rows and announce who is gone, now."""
    changes = await database_sync_to_async(forget_server)()
    announce(changes)
    await _announcer().flush()
    log.info("stopping: presence forgotten; %d left their rooms", len(changes))
    return len(changes)


# The heartbeat --------------------------------------------------------------------------

_heartbeats: dict[Any, "asyncio.Task[None]"] = {}


def ensure_heartbeat() -> None:
    """Start this process's heartbeat on the running event loop, once."""
    loop = asyncio.get_running_loop()
    task = _heartbeats.get(loop)
    if task is None or task.done():
        _heartbeats[loop] = loop.create_task(_beat_forever(), name="presence-heartbeat")


async def _beat_forever() -> None:
    while True:
        await asyncio.sleep(settings.CHAT_PRESENCE_HEARTBEAT)
        try:
            announce(await database_sync_to_async(heartbeat)())
        except Exception:
            log.exception(
                "presence heartbeat failed; retrying in %ss", settings.CHAT_PRESENCE_HEARTBEAT
            )


def reset() -> None:
    """Forget the loop-bound state (tests: each has its own event loop)."""
    global _local_sockets
    _heartbeats.clear()
    _announcers.clear()
    _local_sockets = 0
    _tasks.clear()
