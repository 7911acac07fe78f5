"""Attention: what is unread in each room, who a message mentions, and how loudly a room
may call (issue 13). The one module that reads and writes ReadPosition and
MessageMention.

Unread. Each user has a read position per room (ReadPosition.seq: the room's sequence
number up to which they have seen it). A room's unread count is its messages past it, not
deleted, not the user's own: messages are counted, not sequence numbers subtracted, since
changes (edits, reactions) take numbers from the same sequence. A room the user never
opened has no position: only mentions of them count there. Positions move forward only,
and never with a write per frame:
- the room page's GET of its newest messages moves it to the page's cursor (`mark_read`);
- an open room socket (which receives everything) notes the highest number it delivered,
  in memory (`ReadTracker.note`); the notes of every socket of the process are written
  together at most every CHAT_READ_FLUSH_SECONDS, and when a socket closes
  (`save_positions`: a few queries per batch, whatever its size).

Counting. `annotate_unread` adds each room's `unread`, `mentions`, `read_seq` and `level`
to a room queryset as correlated subqueries on indexes ((room, seq) for messages, (user,
room, seq) for mentions, (user, room) for positions): a page of rooms is still one query,
however many rooms and users there are. `unread_total` is the page title's count, one
more query.

Live, without rendering per recipient. When a message is posted, its activity (the room,
the seq, the author, who it mentions) goes to the room's activity group in ONE fragment
(room.html#room-activity) with the rest of the room's messages of the same tick
(ActivityCoalescer: a frame per listening page per tick, however fast the room talks).
Every page that lists the room is in that group (its socket URL carries `?rooms=`,
`page_groups`), and static/js/chat.js turns each push into the viewer's own increments:
the only per-viewer arithmetic there is. When a position moves,
the user's pages are told to zero that room's counts (#room-read: the same string for
every user whose position moved in a batch, rendered once per room).

Mentions. "@name" (rooms/formatting.py finds them, outside code) of a user who may enter
the room, in any case, and "@here" (whoever is online there when it is posted), are
stored with the message: as text on the message (for its rendering: links and
data-mentions, no query) and as MessageMention rows (to count and list). Each message
with mentions renders one notification, published to each mentioned user whose level for
the room is not "nothing".

Levels (ReadPosition.level): everything, mentions only, nothing. Everything: the unread
count is loud; mentions only: only the mention count is; nothing: neither, and no
notification. A room never opened behaves as "mentions only".
"""

import asyncio
import logging
import weakref
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial, reduce
from operator import or_
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import (
    Case,
    Count,
    Exists,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce

import realtime
from rooms import services
from rooms.formatting import HERE, mention_names
from rooms.models import Message, MessageMention, ReadPosition, Room

log = logging.getLogger(__name__)

Level = ReadPosition.Level
# A page subscribes to the activity of at most this many rooms (its `?rooms=`).
MAX_PAGE_ROOMS = 100
# At most this many different @names of one message are looked up.
MAX_MENTION_NAMES = 50
# /mentions/: a page of this many, newest first.
MENTIONS_PAGE = 50
# Positions moved by one UPDATE (SQLite takes at most 32,766 parameters a statement).
SAVE_CHUNK = 500


def flush_seconds() -> float:
    """How often an open room socket's reading is written (at most)."""
    return float(getattr(settings, "CHAT_READ_FLUSH_SECONDS", 5.0))


# Pages' subscriptions --------------------------------------------------------------------


def page_groups(user: Any, scope: Mapping[str, Any]) -> list[str]:
    """The activity groups of the rooms a page lists, from its socket URL's `?rooms=`
    (comma-separated slugs, at most MAX_PAGE_ROOMS): only rooms `user` may enter, in one
    query; anything else is ignored. Sync (the database): from a consumer, call it through
    `database_sync_to_async`."""
    if user is None or not user.is_authenticated:
        return []
    values = parse_qs(scope.get("query_string", b"").decode("latin1")).get("rooms")
    slugs = {
        slug for slug in (values[0].split(",") if values else []) if services.is_room_name(slug)
    }
    if not slugs:
        return []
    slugs = set(sorted(slugs)[:MAX_PAGE_ROOMS])
    rooms = Room.objects.filter(services._visible_to(user), slug__in=slugs)
    return [services.activity_group(pk) for pk in rooms.values_list("pk", flat=True)]


# Counting -----------------------------------------------------------------------------------


def annotate_unread(rooms: QuerySet[Room], user: Any) -> QuerySet[Room]:
    """`rooms`, each with the user's `read_seq` (None: never opened), `level` (a room
    never opened counts as "mentions"), `unread` (messages past the position, not deleted,
    not theirs: 0 in a room never opened) and `mentions` (of them, past the position).
    Subqueries per room: still one query for a page."""
    position = ReadPosition.objects.filter(user_id=user.pk, room_id=OuterRef("pk"))
    unread = (
        Message.objects.filter(
            room_id=OuterRef("pk"), seq__gt=OuterRef("read_seq"), deleted_at__isnull=True
        )
        .exclude(author_id=user.pk)
        .order_by()
        .values("room_id")
        .annotate(count=Count("pk"))
        .values("count")
    )
    mentions = (
        MessageMention.objects.filter(
            user_id=user.pk, room_id=OuterRef("pk"), seq__gt=Coalesce(OuterRef("read_seq"), 0)
        )
        .order_by()
        .values("room_id")
        .annotate(count=Count("pk"))
        .values("count")
    )
    return rooms.annotate(
        read_seq=Subquery(position.values("seq")[:1]),
        level=Coalesce(Subquery(position.values("level")[:1]), Value(Level.MENTIONS)),
    ).annotate(
        unread=Coalesce(Subquery(unread), 0),
        mentions=Coalesce(Subquery(mentions), 0),
    )


def loud_count() -> Case:
    """Per room of `annotate_unread`: what counts loudly at its level (the title's share):
    everything, its unread; mentions only (or never opened), its mentions; nothing, 0.
    static/js/chat.js does the same sum."""
    return Case(
        When(level=Level.EVERYTHING, read_seq__isnull=False, then="unread"),
        When(level=Level.MENTIONS, then="mentions"),
        default=Value(0),
        output_field=IntegerField(),
    )


def unread_total(user: Any) -> int:
    """The page title's count: the loud counts of every room the user may enter, summed,
    in one query (rooms they opened, or where someone mentioned them)."""
    if not user.is_authenticated:
        return 0
    mentioned = MessageMention.objects.filter(user_id=user.pk, room_id=OuterRef("pk"))
    opened = ReadPosition.objects.filter(user_id=user.pk, room_id=OuterRef("pk"))
    rooms = Room.objects.filter(services._visible_to(user)).filter(
        Exists(opened) | Exists(mentioned)
    )
    total = annotate_unread(rooms, user).aggregate(total=Sum(loud_count()))["total"]
    return int(total or 0)


# Reading ------------------------------------------------------------------------------------


def position_of(user: Any, room: Room) -> ReadPosition | None:
    return ReadPosition.objects.filter(user_id=user.pk, room_id=room.pk).first()


def mark_read(user: Any, room: Room, seq: int) -> ReadPosition | None:
    """The room page showed `user` the room up to `seq`: move their position there (never
    back). Returns the position as it was before (None: they had never opened it); tells
    their other pages when it moved. Two queries, the first visit too."""
    before = position_of(user, room)
    if before is None:
        # (ignore_conflicts: another page of theirs made it meanwhile, and moves it itself)
        ReadPosition.objects.bulk_create(
            [ReadPosition(user_id=user.pk, room_id=room.pk, seq=seq)], ignore_conflicts=True
        )
        publish_read(room, [user.pk])
    elif ReadPosition.objects.filter(pk=before.pk, seq__lt=seq).update(seq=seq):
        publish_read(room, [user.pk])
    return before


def save_positions(positions: Mapping[tuple[int, int], int]) -> dict[int, list[int]]:
    """Write what open sockets delivered: {(user id, room id): seq}. Each position only
    moves forward; one is made for a room never opened. A few queries for the whole
    batch. Returns the users whose position moved, by room id."""
    if not positions:
        return {}
    moved: dict[int, list[int]] = {}
    with transaction.atomic():
        users = {user_id for user_id, _ in positions}
        rooms = {room_id for _, room_id in positions}
        existing = {
            (row.user_id, row.room_id): row
            for row in ReadPosition.objects.filter(user_id__in=users, room_id__in=rooms)
        }
        missing = [key for key in positions if key not in existing]
        forward = [row for key, row in existing.items() if row.seq < positions[key]]
        if missing:
            ReadPosition.objects.bulk_create(
                [ReadPosition(user_id=u, room_id=r, seq=positions[u, r]) for u, r in missing],
                ignore_conflicts=True,  # (a page view made it meanwhile: the next batch)
            )
        for start in range(0, len(forward), SAVE_CHUNK):  # one UPDATE per chunk
            chunk = forward[start : start + SAVE_CHUNK]
            new_seq = Case(
                *(
                    When(pk=row.pk, then=Value(positions[row.user_id, row.room_id]))
                    for row in chunk
                ),
                output_field=IntegerField(),
            )
            # (seq__lt again: a page view may have moved it further meanwhile)
            ReadPosition.objects.filter(pk__in=[row.pk for row in chunk]).filter(
                seq__lt=new_seq
            ).update(seq=new_seq)
        for user_id, room_id in [*missing, *((row.user_id, row.room_id) for row in forward)]:
            moved.setdefault(room_id, []).append(user_id)
    return moved


def publish_read(room: Room | int, user_ids: Sequence[int]) -> None:
    """Tell these users' pages that they read `room` (its counts go to zero): one
    rendering for all of them, after the commit."""
    if not user_ids:
        return
    if isinstance(room, int):
        room = Room.objects.get(pk=room)
    html = services.render_fragment("room-read", room=room)
    for user_id in user_ids:
        read = partial(_read_after_activity, room.pk, services.user_group(user_id), html)
        transaction.on_commit(partial(_start, realtime.Publication(), read))


def _start(
    publication: realtime.Publication, send: Callable[[], Coroutine[Any, Any, bool]]
) -> None:
    publication.start(send())


async def _read_after_activity(room_id: int, group: str, html: str) -> bool:
    """Publish a read of the room once the room's activity this process still holds for
    its tick has left: else a page would zero the room's counts, then count messages that
    were read. (Another process's held activity can still come after it, within a tick.)"""
    held = activities().send_pending(room_id)
    if held is not None:
        await held
    return await realtime.publish(group, html)


def first_unread(messages: Iterable[Message], before: ReadPosition | None, user: Any) -> int | None:
    """The id of the first message of a page above which the "new messages" divider goes:
    the first past the user's previous position that is not their own (None: none, or a
    room they had never opened, where everything is new)."""
    if before is None:
        return None
    for message in messages:
        if message.seq > before.seq and message.author_id != user.pk:
            return message.pk
    return None


class ReadTracker:
    """What this process's room sockets delivered, by (user, room): written in a batch
    at most every `flush_seconds()`, and at once when asked (a socket closing)."""

    def __init__(self) -> None:
        self.pending: dict[tuple[int, int], int] = {}
        self.scheduled = False  # a flush is due in flush_seconds()
        self.tasks: set[asyncio.Task[None]] = set()  # (the loop keeps weak references)

    def note(self, user_id: int, room_id: int, seq: int) -> None:
        """A socket of `user_id` in `room_id` has shown everything up to `seq` (in memory:
        no write here)."""
        key = (user_id, room_id)
        if seq <= self.pending.get(key, 0):
            return
        self.pending[key] = seq
        if not self.scheduled:
            self.scheduled = True
            task = asyncio.get_running_loop().create_task(self._flush_later(), name="reads")
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _flush_later(self) -> None:
        await asyncio.sleep(flush_seconds())
        self.scheduled = False
        await self.flush()

    async def flush(self) -> None:
        """Write every position noted so far, and tell the pages of whoever moved."""
        pending, self.pending = self.pending, {}
        if not pending:
            return
        try:
            moved = await realtime.database_call(_save_and_publish)(pending)
        except Exception:
            log.exception("could not save %d read positions", len(pending))
            return
        log.debug("read positions: %d noted, moved in %d rooms", len(pending), len(moved))


def _save_and_publish(pending: Mapping[tuple[int, int], int]) -> dict[int, list[int]]:
    moved = save_positions(pending)
    rooms = Room.objects.in_bulk(list(moved))
    for room_id, user_ids in moved.items():
        if room_id in rooms:
            publish_read(rooms[room_id], user_ids)
    return moved


_trackers: dict[asyncio.AbstractEventLoop, ReadTracker] = {}


def reads() -> ReadTracker:
    """This event loop's tracker (each test has a loop of its own)."""
    loop = asyncio.get_running_loop()
    if loop not in _trackers:
        _trackers[loop] = ReadTracker()
    return _trackers[loop]


# Mentions -----------------------------------------------------------------------------------


def mentioned_users(room: Room, author: Any, text: str) -> list[Any]:
    """Who `text` posted in `room` by `author` mentions: each "@name" of an active user who
    may enter the room (case-insensitively), and with "@here" whoever is online in it now;
    never the author. By username."""
    from rooms import presence  # (presence imports services, which imports this lazily)

    names = mention_names(text)
    here = any(name.casefold() == HERE for name in names)
    names = [name for name in names if name.casefold() != HERE][:MAX_MENTION_NAMES]
    if not names and not here:
        return []
    wanted = Q()
    if names:
        wanted = reduce(or_, (Q(username__iexact=name) for name in names))
    online: list[Any] = []
    if here:
        online = [user.pk for user in presence.online_users(room)]
        wanted |= Q(pk__in=online)
    people = _may_enter(get_user_model().objects.filter(wanted, is_active=True), room)
    folded = {name.casefold() for name in names}
    return sorted(
        (
            person
            for person in people.exclude(pk=author.pk)
            # (iexact is ASCII-only on SQLite: the exact test, in Python, for any letters)
            if person.username.casefold() in folded or person.pk in online
        ),
        key=lambda person: person.username,
    )


def _may_enter(users: QuerySet[Any], room: Room) -> QuerySet[Any]:
    """`users` narrowed to those who may enter `room` (services.can_enter, in the query)."""
    if room.visibility == Room.Visibility.STAFF:
        return users.filter(is_staff=True)
    if room.visibility == Room.Visibility.PRIVATE:
        return users.filter(Q(pk=room.owner_id) | Q(member_rooms=room)).distinct()
    return users


def mentioned_text(people: Iterable[Any]) -> str:
    """What a message stores of who it mentions (Message.mentioned): usernames, spaced."""
    return " ".join(person.username for person in people)


def store_mentions(message: Message, people: Sequence[Any], *, new: bool = False) -> list[Any]:
    """Make `message`'s MessageMention rows those of `people` (on posting, `new`: it has
    none yet; and again on an edit); returns who is newly mentioned (to notify)."""
    before = set() if new else set(message.mentions.values_list("user_id", flat=True))
    keep = {person.pk for person in people}
    if before - keep:
        MessageMention.objects.filter(message=message, user_id__in=before - keep).delete()
    added = [person for person in people if person.pk not in before]
    MessageMention.objects.bulk_create(
        MessageMention(message=message, user=person, room_id=message.room_id, seq=message.seq)
        for person in added
    )
    return added


def forget_mentions(message: Message) -> None:
    """A deleted message mentions nobody any more."""
    MessageMention.objects.filter(message=message).delete()
    message.mentioned = ""


def notify(message: Message, people: Sequence[Any]) -> list[realtime.Publication]:
    """Tell each of `people` (mentioned by `message`) on whatever page they are: one
    rendering, to each one's group, after the commit; not those whose level for the room
    is "nothing"."""
    if not people:
        return []
    muted = set(
        ReadPosition.objects.filter(
            room_id=message.room_id, user_id__in=[p.pk for p in people], level=Level.NOTHING
        ).values_list("user_id", flat=True)
    )
    told = [person for person in people if person.pk not in muted]
    if not told:
        return []
    html = services.render_fragment("mention-notification", message=message)
    return [realtime.publish_on_commit(services.user_group(p.pk), html) for p in told]


def activity_tick() -> float:
    """A room's activity leaves a process at most once per this many seconds."""
    return float(settings.CHAT_ACTIVITY_TICK)


@dataclass
class AuthorActivity:
    """One author's messages in one room during one tick: what a page needs to count
    them (room.html#room-activity)."""

    author: str  # username
    seq: int  # of the last of them
    count: int = 0
    mentions: list[str] = field(default_factory=list)  # a username per message naming it


@dataclass
class _RoomTick:
    slug: str
    sent_at: float  # (the event loop's clock) the last push
    pending: dict[str, AuthorActivity] = field(default_factory=dict)  # by author
    due: asyncio.TimerHandle | None = None  # the flush of `pending`


class ActivityCoalescer:
    """The activity of this process's rooms, one push per room per tick (issue 16).

    A page listing a room is sent its activity: one fragment per message cost every
    listener a frame per message (1,000 room-list pages: the room's p99 went from 4 to
    748 ms, bench/RESULTS.md). Here the first message after a quiet tick leaves at once
    (an idle room's count moves without delay), and the rest of the tick's messages leave
    together at its end, as one fragment rendered once: a frame per listener per tick
    however fast the room talks. The fragment keeps each author's count and the mentions,
    so that static/js/chat.js still counts each viewer's unread and mentions exactly.
    """

    def __init__(self) -> None:
        self.rooms: dict[int, _RoomTick] = {}
        self.tasks: set[asyncio.Task[bool]] = set()  # (the loop keeps weak references)

    def add(self, room_id: int, slug: str, activity: AuthorActivity) -> "asyncio.Task[bool] | None":
        """Send `activity` now (returns the publication's task) or with the tick (None)."""
        loop = asyncio.get_running_loop()
        now, tick = loop.time(), activity_tick()
        room = self.rooms.get(room_id)
        if room is None or (room.due is None and now - room.sent_at >= tick):
            self.rooms[room_id] = _RoomTick(slug, now)
            return self._send(room_id, slug, [activity])
        same = room.pending.get(activity.author)
        if same is None:
            room.pending[activity.author] = activity
        else:
            same.seq = max(same.seq, activity.seq)
            same.count += activity.count
            same.mentions += activity.mentions
        if room.due is None:
            room.due = loop.call_at(room.sent_at + tick, self._flush, room_id)
        return None

    def send_pending(self, room_id: int) -> "asyncio.Task[bool] | None":
        """Send what the room's tick holds now (its publication's task; None: nothing)."""
        room = self.rooms.get(room_id)
        if room is None or room.due is None:
            return None
        room.due.cancel()
        return self._flush(room_id)

    def _flush(self, room_id: int) -> "asyncio.Task[bool] | None":
        room = self.rooms[room_id]
        pending, room.pending, room.due = room.pending, {}, None
        room.sent_at = asyncio.get_running_loop().time()
        task = self._send(room_id, room.slug, sorted(pending.values(), key=lambda a: a.seq))
        # (Rooms quiet for a tick are forgotten: their next message leaves at once.)
        cutoff = room.sent_at - activity_tick()
        for quiet in [r for r, t in self.rooms.items() if t.due is None and t.sent_at < cutoff]:
            del self.rooms[quiet]
        return task

    def _send(
        self, room_id: int, slug: str, activity: list[AuthorActivity]
    ) -> "asyncio.Task[bool] | None":
        try:
            html = services.render_fragment("room-activity", slug=slug, activity=activity)
        except Exception:
            log.exception("could not render the activity of %s", slug)
            return None
        task = asyncio.get_running_loop().create_task(
            realtime.publish(services.activity_group(room_id), html), name="activity"
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


# (Weak: a sync caller with no loop of its own runs each publication in a loop of its own.)
_coalescers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ActivityCoalescer]" = (
    weakref.WeakKeyDictionary()
)


def activities() -> ActivityCoalescer:
    """This event loop's coalescer."""
    loop = asyncio.get_running_loop()
    coalescer = _coalescers.get(loop)
    if coalescer is None:
        coalescer = _coalescers[loop] = ActivityCoalescer()
    return coalescer


async def _coalesce(room_id: int, slug: str, activity: AuthorActivity) -> bool:
    """Whether the layer took it, when it left at once (a sync caller without a loop of
    its own runs this in a loop that ends with it: it always leaves at once, and must be
    sent before that loop ends); True when it waits for the tick."""
    sent = activities().add(room_id, slug, activity)
    return await sent if sent is not None else True


def announce(message: Message) -> realtime.Publication:
    """The room's activity, for every page that lists the room: its unread and mention
    counts move on in each viewer's page (static/js/chat.js). Handed, after the commit,
    to the event loop's ActivityCoalescer: one rendering per room per tick, for every
    page. No seq: it is not a change of the pages' own room (HubSocket.caught_up_to).
    The publication is done when the activity left (False: the layer failed), or once
    it is queued for the tick."""
    activity = AuthorActivity(
        author=message.author.username,
        seq=message.seq,
        count=1,
        mentions=message.mentioned.split() if message.mentioned else [],
    )
    room_id, slug = message.room_id, message.room.slug
    publication = realtime.Publication()
    transaction.on_commit(lambda: publication.start(_coalesce(room_id, slug, activity)))
    return publication


# Levels -------------------------------------------------------------------------------------


def set_level(user: Any, room: Room, level: str) -> ReadPosition:
    """Store how loudly `room` may call `user` (a position is made if they had none, at
    the room's end)."""
    if level not in Level.values:
        raise ValueError(f"not a level: {level!r}")
    position, created = ReadPosition.objects.get_or_create(
        user_id=user.pk,
        room_id=room.pk,
        defaults={"seq": services.room_cursor(room), "level": level},
    )
    if not created and position.level != level:
        position.level = level
        position.save(update_fields=["level"])
    return position


# The mentions page --------------------------------------------------------------------------


@dataclass(frozen=True)
class MentionsPage:
    """The user's mentions, newest first; `older` the id to page on from (?before=)."""

    mentions: list[MessageMention]
    older: int | None


def mentions_page(user: Any, before: int | None = None) -> MentionsPage:
    """A page of the messages that mention `user`, newest first (a keyset on (user,
    message)), in rooms they may still enter, deleted ones left out."""
    rows = (
        MessageMention.objects.filter(
            user_id=user.pk, room__in=Room.objects.filter(services._visible_to(user))
        )
        .select_related("message__author", "message__room")
        .order_by("-message_id")
    )
    if before is not None:
        rows = rows.filter(message_id__lt=before)
    page = list(rows[: MENTIONS_PAGE + 1])
    more = len(page) > MENTIONS_PAGE
    page = page[:MENTIONS_PAGE]
    return MentionsPage(page, page[-1].message_id if more else None)
