"""The chat's domain operations: who may enter a room, posting, private messages.

Views and consumers both call these, so a message posted by a plain HTML form and one
sent over a WebSocket take the same path: validate, store, render once, broadcast.
"""

import hashlib
import logging
import re
import threading
import time
import weakref
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from importlib import import_module
from typing import Any, cast

from django.conf import settings
from django.contrib.auth import (
    get_user_model,
    load_backend,
)
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AbstractUser, AnonymousUser
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.core.paginator import Page, Paginator
from django.db import IntegrityError, connections, router, transaction
from django.db.models import (
    BooleanField,
    Case,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    When,
)
from django.db.models.manager import BaseManager
from django.template.loader import render_to_string
from django.utils import timezone, translation

import realtime
from realtime.auth import session_claims, session_users, vouches_for
from rooms.forms import ComposerForm
from rooms.models import (
    ROOM_SLUG_PATTERN,
    Message,
    PrivateMessage,
    Reaction,
    Room,
    validate_room_slug,
)

log = logging.getLogger(__name__)

# Whoever a request or a socket carries: a user of the project's (Django's own) user
# model, or nobody.
User = AbstractUser | AnonymousUser
ROOM_TEMPLATE = "rooms/room.html"
ROOM_SLUG = re.compile(ROOM_SLUG_PATTERN)


# Access ---------------------------------------------------------------------------


def can_enter(room: Room, user: User, *, is_member: bool | None = None) -> bool:
    """`is_member`: whether the user is in the room's members, when the caller already
    knows (sockets_access reads them for many at once); asked otherwise."""
    if not user.is_authenticated or not user.is_active:
        return False
    if room.visibility == Room.Visibility.STAFF:
        return user.is_staff
    if room.visibility == Room.Visibility.PRIVATE:
        if room.owner_id == user.pk:
            return True
        return room.members.filter(pk=user.pk).exists() if is_member is None else is_member
    return True


# What an open socket may still do. Decided afresh on every send and whenever something
# it depends on changes (rooms/signals.py), from the rows as they are now: the user,
# their session and the room can all change while a socket stays open for days.


@dataclass(frozen=True)
class Allowed:
    room: Room  # fresh rows: what a send posts into, and as whom
    user: Any


@dataclass(frozen=True)
class Unauthenticated:
    """The session ended or no longer vouches for its user: the socket closes with 4401."""

    reason: str


@dataclass(frozen=True)
class Forbidden:
    """Still signed in, but no longer allowed in the room: the socket closes with 4403."""

    reason: str


SocketAccess = Allowed | Unauthenticated | Forbidden
Denied = Unauthenticated | Forbidden


SocketKey = tuple[int, int, str | None]  # an open socket's room id, user id, session key


def socket_access(room_id: int, user_id: int, session_key: str | None) -> SocketAccess:
    """May the socket that user `user_id` opened in room `room_id` with the session
    `session_key` still receive and send there?

    As an HTTP request would be decided now: the session still exists and is signed in
    as this user (session_users), and the room still lets them in (can_enter).

    Asked on every send, so the usual answer takes one query (`_allowed_in_one_query`);
    anything else (a refusal, with its reason) is decided by sockets_access.
    """
    if session_key and (allowed := _allowed_in_one_query(room_id, user_id, session_key)):
        return allowed
    (access,) = sockets_access([(room_id, user_id, session_key)])
    return access


@dataclass(frozen=True)
class _Columns:
    """One model's columns in socket_access's one query, and how the ORM converts them."""

    model: Any
    fields: list[Any]
    converters: list[tuple[Any, list[Any]]]  # per field: its Col, the ORM's converters

    @classmethod
    def of(cls, model: Any, alias: str, fields: Sequence[Any], connection: Any) -> "_Columns":
        converters = []
        for model_field in fields:
            column = model_field.get_col(alias)
            found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            converters.append((column, found))
        return cls(model, list(fields), converters)

    def values(self, row: Sequence[Any], connection: Any) -> list[Any]:
        """These columns of `row`, as the ORM would convert them."""
        values = []
        for value, (column, converters) in zip(row, self.converters, strict=True):
            for converter in converters:
                value = converter(value, column, connection)
            values.append(value)
        return values

    def instance(self, db: str, values: list[Any]) -> Any:
        return self.model.from_db(db, [model_field.attname for model_field in self.fields], values)


class _AccessQuery:
    """socket_access's one query, for one database connection: the room's row, the
    user's, the session's data and expiry, and whether the user is in the room's
    members, from one statement (one snapshot), read into model instances with the
    converters the ORM applies. Its three queries by the ORM cost about 1 ms per send,
    mostly building their SQL (bench/RESULTS.md, "Issue 16: CPU per delivery")."""

    def __init__(self, connection: Any) -> None:
        quote = connection.ops.quote_name
        user_model = get_user_model()
        session_model = import_module(settings.SESSION_ENGINE).SessionStore.get_model_class()
        through = Room.members.through._meta
        self.db = connection.alias
        self.room = _Columns.of(Room, "r", Room._meta.concrete_fields, connection)
        self.user = _Columns.of(user_model, "u", user_model._meta.concrete_fields, connection)
        session_fields = [session_model._meta.get_field(n) for n in ("session_data", "expire_date")]
        self.session = _Columns.of(session_model, "s", session_fields, connection)
        select = ", ".join(
            f"{alias}.{quote(model_field.column)}"
            for alias, columns in (("r", self.room), ("u", self.user), ("s", self.session))
            for model_field in columns.fields
        )
        room_pk, user_pk = Room._meta.pk.column, user_model._meta.pk.column
        member_room = through.get_field("room").column
        member_user = through.get_field("user").column
        self.sql = (
            f"SELECT {select}, EXISTS (SELECT 1 FROM {quote(through.db_table)} m"
            f" WHERE m.{quote(member_room)} = r.{quote(room_pk)}"
            f" AND m.{quote(member_user)} = u.{quote(user_pk)})"
            f" FROM {quote(Room._meta.db_table)} r"
            f" LEFT JOIN {quote(user_model._meta.db_table)} u ON u.{quote(user_pk)} = %s"
            f" LEFT JOIN {quote(session_model._meta.db_table)} s"
            f" ON s.{quote(session_model._meta.pk.column)} = %s"
            f" WHERE r.{quote(room_pk)} = %s"
        )
        self.user_at = len(self.room.fields)  # where each model's columns start in a row
        self.session_at = self.user_at + len(self.user.fields)
        self.user_pk_at = self.user.fields.index(user_model._meta.pk)


_access_queries: "weakref.WeakKeyDictionary[Any, _AccessQuery]" = weakref.WeakKeyDictionary()


def _plain_manager(model: Any) -> bool:
    """Its default manager reads every row (the one query reads the tables themselves)."""
    return type(model._default_manager).get_queryset is BaseManager.get_queryset


def _allowed_in_one_query(room_id: int, user_id: int, session_key: str) -> Allowed | None:
    """socket_access's Allowed, decided in one query as sockets_access decides it; None
    whenever it would not be Allowed, or this setup is not the usual one (another
    session engine or user backend, managers that filter): sockets_access decides then."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    if not issubclass(store, DatabaseSessionStore):
        return None
    models = (Room, get_user_model(), store.get_model_class())
    databases = {router.db_for_read(model) for model in models}
    if len(databases) != 1 or not all(_plain_manager(model) for model in models):
        return None
    connection = connections[databases.pop()]
    query = _access_queries.get(connection)
    if query is None:
        query = _access_queries[connection] = _AccessQuery(connection)
    with connection.cursor() as cursor:
        cursor.execute(query.sql, [user_id, session_key, room_id])
        row = cursor.fetchone()
    if row is None:
        return None  # no such room
    user_values = query.user.values(row[query.user_at : query.session_at], connection)
    session_data, expire_date = query.session.values(row[query.session_at : -1], connection)
    if user_values[query.user_pk_at] is None or session_data is None:
        return None  # the user or the session is gone
    if expire_date <= timezone.now():
        return None  # the session expired
    claims = session_claims(store().decode(session_data))
    if claims is None or claims[0] != user_id:
        return None
    backend = load_backend(claims[1])
    if type(backend).get_user is not ModelBackend.get_user:
        return None
    user = query.user.instance(query.db, user_values)
    if not cast(ModelBackend, backend).user_can_authenticate(user):
        return None
    if not user.is_active or not vouches_for(user, claims[2]):
        return None
    room = query.room.instance(query.db, query.room.values(row[: query.user_at], connection))
    members = {(room.pk, user.pk)} if row[-1] else set()
    access = _access(room, user_id, user, members)
    return access if isinstance(access, Allowed) else None


def sockets_access(sockets: Sequence[SocketKey]) -> list[SocketAccess]:
    """socket_access for many sockets at once (every socket of a room whose visibility
    changed, in one process): the same decision, in at most four queries however many
    sockets there are."""
    users = session_users({session_key for _, _, session_key in sockets})
    rooms = Room.objects.in_bulk({room_id for room_id, _, _ in sockets})
    private = [room.pk for room in rooms.values() if room.visibility == Room.Visibility.PRIVATE]
    members: set[tuple[int, Any]] = set()
    if private:
        members = set(
            Room.members.through.objects.filter(
                room_id__in=private, user_id__in={user.pk for user in users.values()}
            ).values_list("room_id", "user_id")
        )
    return [
        _access(rooms.get(room_id), user_id, users.get(session_key or ""), members)
        for room_id, user_id, session_key in sockets
    ]


def _access(
    room: Room | None, user_id: int, user: Any | None, members: set[tuple[int, Any]]
) -> SocketAccess:
    if user is None:
        return Unauthenticated("the session ended or no longer vouches for its user")
    if user.pk != user_id:
        return Unauthenticated("the session is signed in as someone else now")
    if room is None:
        return Forbidden("the room is gone")
    if not can_enter(room, user, is_member=(room.pk, user.pk) in members):
        return Forbidden(f"{user} may no longer enter {room}")
    return Allowed(room, user)


UserSocketKey = tuple[int, str | None]  # a user socket's user id and session key


@dataclass(frozen=True)
class SignedIn:
    """A socket that is no room's (the user socket of every other page) may stay open:
    its session still vouches for its user."""

    user: Any


def user_sockets_access(sockets: Sequence[UserSocketKey]) -> list[SignedIn | Unauthenticated]:
    """For sockets that are in no room: whether each one's session is still signed in
    as its user (session_users), in two queries however many there are."""
    users = session_users({session_key for _, session_key in sockets})
    decisions: list[SignedIn | Unauthenticated] = []
    for user_id, session_key in sockets:
        user = users.get(session_key or "")
        if user is None:
            decisions.append(Unauthenticated("the session ended or no longer vouches for its user"))
        elif user.pk != user_id:
            decisions.append(Unauthenticated("the session is signed in as someone else now"))
        else:
            decisions.append(SignedIn(user))
    return decisions


def is_room_name(slug: str) -> bool:
    """Whether `slug` could name a room (whether or not one exists)."""
    return ROOM_SLUG.fullmatch(slug) is not None


def find_room(slug: str, user: User) -> Room:
    """The room at `slug` if `user` may be in it. Never creates one.

    Raises Room.DoesNotExist alike for an invalid name, a missing room and one the user
    may not enter, so that private and staff rooms do not reveal they exist.
    """
    room = Room.objects.filter(slug=slug).first() if is_room_name(slug) else None
    if room is None or not can_enter(room, user):
        raise Room.DoesNotExist(f"no room {slug!r} that {user} may enter")
    return room


class RoomNotCreated(Exception):
    """Why create_room refused; its text is shown to the user as it is."""

    status = 400


class RoomNameInvalid(RoomNotCreated):
    pass


class RoomNameTaken(RoomNotCreated):
    # One message for every taken name, whoever may see the room: saying more (e.g.
    # "it is private") would reveal a room the user may not know of.
    status = 409

    def __init__(self, name: str) -> None:
        super().__init__(
            f"There is already a room named #{name}: choose another name for a new room."
        )


class RoomLimitReached(RoomNotCreated):
    status = 429


def create_room(name: str, owner: Any, *, private: bool) -> Room:
    """A new room named `name`, owned by `owner`: public, or members only (`private`).

    Raises RoomNameInvalid, RoomNameTaken (whatever the existing room's visibility) or
    RoomLimitReached (more than CHAT_ROOMS_PER_USER_PER_DAY in the last 24 hours; staff
    are exempt). An existing room is never returned instead.
    """
    if not is_room_name(name):
        raise RoomNameInvalid(validate_room_slug.message)
    if Room.objects.filter(slug=name).exists():
        raise RoomNameTaken(name)
    visibility = Room.Visibility.PRIVATE if private else Room.Visibility.PUBLIC
    try:
        with transaction.atomic():
            if not owner.is_staff:
                _check_daily_room_limit(owner)
            room = Room.objects.create(slug=name, owner=owner, visibility=visibility)
    except IntegrityError:  # someone took the name since the check above
        if Room.objects.filter(slug=name).exists():
            raise RoomNameTaken(name) from None
        raise
    log.info("%s created %s room %s", owner, visibility, room)
    return room


def _check_daily_room_limit(owner: Any) -> None:
    # Serialised per user: PostgreSQL locks the user's row until the room is stored;
    # SQLite's IMMEDIATE transactions hold the write lock from the start anyway.
    list(get_user_model().objects.select_for_update().filter(pk=owner.pk).values_list("pk"))
    limit = settings.CHAT_ROOMS_PER_USER_PER_DAY
    since = timezone.now() - timedelta(days=1)
    recent = list(
        Room.objects.filter(owner=owner, created_at__gte=since)
        .order_by("-created_at")
        .values_list("created_at", flat=True)[:limit]
    )
    if len(recent) >= limit:
        free_at = timezone.localtime(recent[-1] + timedelta(days=1))
        raise RoomLimitReached(
            f"You have created {limit} rooms in the last 24 hours, the most allowed: "
            f"you can create another after {free_at:%Y-%m-%d %H:%M} {free_at:%Z}."
        )


def open_room_by_name(name: str, user: Any, *, private: bool) -> Room:
    """What the room list's form does: open the room called `name`, creating it when
    there is none. A members-only request always creates: an existing room, even one of
    the user's own, is never taken for a new private one (RoomNameTaken instead)."""
    if not private:
        try:
            return find_room(name, user)
        except Room.DoesNotExist:
            pass
    return create_room(name, user, private=private)


def _is_member(user: AbstractUser) -> Exists:
    return Exists(Room.members.through.objects.filter(room_id=OuterRef("pk"), user_id=user.pk))


def _visible_to(user: AbstractUser) -> Q:
    visible = Q(visibility=Room.Visibility.PUBLIC) | Q(
        Q(owner_id=user.pk) | _is_member(user), visibility=Room.Visibility.PRIVATE
    )
    if user.is_staff:
        visible |= Q(visibility=Room.Visibility.STAFF)
    return visible


def _is_in(user: AbstractUser) -> Q:
    """A user is "in" a room they own, are a member of, or have posted in."""
    return (
        Q(owner_id=user.pk)
        | _is_member(user)
        | Exists(Message.objects.filter(room_id=OuterRef("pk"), author_id=user.pk))
    )


def visible_rooms(user: User) -> QuerySet[Room]:
    """Rooms the user may enter, the ones they are in first (`is_in`), then by name;
    each annotated with `online`: users connected now, and with what is unread there
    for the user (`unread`, `mentions`, `read_seq`, `level`: attention.annotate_unread).

    No joins and no grouping over the outer query: every annotation is a subquery per
    room, so a page of it costs one query however many rooms there are.
    """
    from rooms import attention, presence  # (both render through this module)

    if isinstance(user, AnonymousUser):
        return Room.objects.none()  # (rooms are listed to signed-in users only)
    rooms = (
        Room.objects.filter(_visible_to(user))
        .annotate(
            # CASE, not the bare condition: "owner_id = me" is NULL for an ownerless
            # room, and PostgreSQL sorts NULL before true in descending order.
            is_in=Case(When(_is_in(user), then=True), default=False, output_field=BooleanField()),
            online=presence.online_count_per_room(),
        )
        .order_by(F("is_in").desc(), "slug")
    )
    return attention.annotate_unread(rooms, user)


def rooms_user_is_in(user: User, limit: int) -> list[Room]:
    """The first `limit` rooms the user is in, by name (the room page's sidebar)."""
    if isinstance(user, AnonymousUser):
        return []
    return list(visible_rooms(user).filter(_is_in(user))[:limit])


def room_list_page(user: User, number: str | int | None) -> Page[Room]:
    """One page of visible_rooms; raises InvalidPage for a page that is not there."""
    paginator = Paginator(visible_rooms(user), settings.CHAT_ROOMS_PAGE_SIZE)
    return paginator.page(number or 1)


# Reading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RoomView:
    """What a page shows of a room: its newest messages, and the cursor it catches up
    from (every change up to `cursor` is in `messages` or older than them)."""

    cursor: int
    messages: list[Message]
    older: Message | None = None  # the oldest shown, when the room has older ones


def room_cursor(room: Room) -> int:
    """The room's sequence as committed now: every change up to it can be read."""
    return Room.objects.filter(pk=room.pk).values_list("last_seq", flat=True).get()


@dataclass(frozen=True)
class ReactionSummary:
    """One reaction on a message: who gave it, in the order they did."""

    emoji: str
    usernames: list[str]

    @property
    def count(self) -> int:
        return len(self.usernames)

    @property
    def who(self) -> str:
        """Who reacted, for the hover text and screen readers ("ann, bob and 3 others")."""
        names = self.usernames
        if len(names) > 3:
            others = len(names) - 3
            return f"{', '.join(names[:3])} and {others} other{'' if others == 1 else 's'}"
        if len(names) == 1:
            return names[0]
        return f"{', '.join(names[:-1])} and {names[-1]}"


def attach_reactions(messages: Sequence[Message]) -> None:
    """Give each message its `reaction_summary` (what its partial shows), in one query."""
    by_message: defaultdict[int, dict[str, list[str]]] = defaultdict(dict)
    ids = [message.pk for message in messages if message.deleted_at is None]
    if ids:
        rows = (
            Reaction.objects.filter(message_id__in=ids)
            .order_by("id")
            .values_list("message_id", "emoji", "user__username")
        )
        for message_id, emoji, username in rows:
            by_message[message_id].setdefault(emoji, []).append(username)
    for message in messages:
        reactions = by_message.get(message.pk, {})
        message.reaction_summary = [ReactionSummary(e, names) for e, names in reactions.items()]


def _shown(room: Room) -> QuerySet[Message]:
    """The room's messages a page shows (not deleted), with what their partial reads."""
    return room.messages.filter(deleted_at__isnull=True).select_related(
        "author", "reply_to__author", "attachment"
    )


def recent_messages(room: Room) -> RoomView:
    # The cursor first: a message stored between the two queries is then newer than
    # the cursor, and the socket's catch-up brings it.
    cursor = room_cursor(room)
    page, more = _before(room, cursor + 1, settings.CHAT_HISTORY_LENGTH)
    return RoomView(cursor, page, older=page[0] if more and page else None)


def find_message(room: Room, message_id: int) -> Message:
    """Message `message_id` of this room as a page shows it; Message.DoesNotExist for one
    that is not there, is another room's, or was deleted."""
    message = _shown(room).get(pk=message_id)
    attach_reactions([message])
    return message


# A page of older history, and how many messages a permalink shows on each side.
HISTORY_PAGE = 50
AROUND_MESSAGE = 25


@dataclass(frozen=True)
class HistoryPage:
    """A stretch of a room's log, oldest first: `older` is the oldest message shown when
    there are older ones (a page before it follows), `newer` the newest shown when there
    are newer ones than the page shows; `focus` is the message a permalink is about, and
    `latest` whether these are the room's newest (the room page itself)."""

    messages: list[Message]
    older: Message | None = None
    newer: Message | None = None
    focus: Message | None = None
    latest: bool = False


def _seq_of(room: Room, message_id: int) -> int:
    """The seq of message `message_id` of this room; Message.DoesNotExist for one that
    is not there (or is another room's)."""
    return room.messages.filter(pk=message_id).values_list("seq", flat=True).get()


def _before(room: Room, seq: int, count: int) -> tuple[list[Message], bool]:
    # Keyset paging on the (room, seq) unique index: one more than asked, to learn
    # whether there are older ones, and never an OFFSET however deep the page.
    rows = list(_shown(room).filter(seq__lt=seq).order_by("-seq")[: count + 1])
    page = list(reversed(rows[:count]))
    attach_reactions(page)
    return page, len(rows) > count


def messages_before(room: Room, message_id: int) -> HistoryPage:
    """The HISTORY_PAGE messages before message `message_id` of this room (what
    `?before=` shows). Raises Message.DoesNotExist for a message not in the room."""
    page, more = _before(room, _seq_of(room, message_id), HISTORY_PAGE)
    return HistoryPage(
        page, older=page[0] if more and page else None, newer=page[-1] if page else None
    )


def messages_around(room: Room, message_id: int) -> HistoryPage:
    """Message `message_id` of this room with up to AROUND_MESSAGE messages on each side
    (a permalink). Raises Message.DoesNotExist for a message not in the room."""
    focus = _shown(room).get(pk=message_id)
    before, more_before = _before(room, focus.seq, AROUND_MESSAGE)
    after = list(_shown(room).filter(seq__gt=focus.seq).order_by("seq")[: AROUND_MESSAGE + 1])
    more_after = len(after) > AROUND_MESSAGE
    shown = [*before, focus, *after[:AROUND_MESSAGE]]
    attach_reactions([focus, *after])
    return HistoryPage(
        shown,
        older=shown[0] if more_before else None,
        newer=shown[-1] if more_after else None,
        focus=focus,
    )


@dataclass(frozen=True)
class DayTranscript:
    """One day of a room, oldest first, with the nearest days before and after it that
    had messages (None where there is none)."""

    day: date
    messages: list[Message]
    previous_day: date | None
    next_day: date | None


def day_bounds(day: date, zone: tzinfo = UTC) -> tuple[datetime, datetime]:
    """The instants `day` starts and ends in `zone` (the end excluded): 23 or 25 hours
    apart on a day the clocks change."""
    start = datetime.combine(day, datetime.min.time(), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    return start, end


def day_transcript(room: Room, day: date, zone: tzinfo = UTC) -> DayTranscript:
    """Every message of `room` on `day` in `zone`, by seq, and the neighbouring days that
    had messages: three range queries on the (room, created_at) index."""
    start, end = day_bounds(day, zone)
    messages = list(_shown(room).filter(created_at__gte=start, created_at__lt=end).order_by("seq"))
    attach_reactions(messages)
    before = (
        room.messages.filter(created_at__lt=start)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    after = (
        room.messages.filter(created_at__gte=end)
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    return DayTranscript(
        day,
        messages,
        before.astimezone(zone).date() if before else None,
        after.astimezone(zone).date() if after else None,
    )


@dataclass(frozen=True)
class CatchUp:
    """Where a socket's catch-up ends: `cursor` is the room's sequence when it was read
    (every change up to it is committed), `missed` how many messages the page lacks or
    shows in an older state (each is sent once, as it is now), and `held` the message ids
    of what the page has past its own cursor, by seq: the catch-up puts what came before
    each of them before it, in order."""

    after: int
    cursor: int
    missed: int
    held: dict[int, int] = field(default_factory=dict)

    @property
    def too_long(self) -> bool:
        return self.missed > settings.CHAT_CATCHUP_LIMIT


@dataclass(frozen=True)
class CatchUpPosition:
    """How far a catch-up has gone: first the messages new to the page, by seq; then the
    changes to messages it had (edits, deletions, reactions), by changed_seq."""

    changes: bool
    after: int


def catch_up(
    room: Room, after: int, have: frozenset[int] = frozenset(), *, cursor: int | None = None
) -> CatchUp:
    """How far a page that has everything up to `after` (plus the `have` above it) is
    behind. A cursor past the room's end (a bad client) counts as the end. (`cursor`: the
    room's, when the caller just read it for many sockets: rooms/entering.py.)"""
    if cursor is None:
        cursor = room_cursor(room)
    after = min(after, cursor)
    have = frozenset(seq for seq in have if after < seq <= cursor)
    held = dict(room.messages.filter(seq__in=have).values_list("seq", "pk")) if have else {}
    state = CatchUp(after, cursor, 0, held)
    if after == cursor:
        return state  # (every connect of an open page: no query more)
    missed = _new_to(room, state).count() + _changed_for(room, state).count()
    return CatchUp(after, cursor, missed, held)


def _new_to(room: Room, state: CatchUp) -> QuerySet[Message]:
    """Messages the page has never seen, as they are now (deleted ones it need not see)."""
    return (
        _shown(room)
        .filter(seq__gt=state.after, seq__lte=state.cursor)
        .exclude(seq__in=list(state.held))
    )


def _changed_for(room: Room, state: CatchUp) -> QuerySet[Message]:
    """Messages the page has, changed since it saw them: those before its cursor changed
    after it, and those it holds past its cursor changed since they were posted."""
    return (
        room.messages.select_related("author", "reply_to__author", "attachment")
        .filter(changed_seq__gt=state.after, changed_seq__lte=state.cursor)
        .filter(Q(seq__lte=state.after) | Q(seq__in=list(state.held), changed_seq__gt=F("seq")))
    )


# A catch-up is read this many messages at a time, so that a long one never holds all of
# them (nor their HTML) in memory at once.
CATCH_UP_PAGE = 50
# Daphne refuses to send a message over --websocket-max-message-size (1 MiB in the
# Procfile): a long catch-up goes out in several frames, each well under it.
CATCH_UP_FRAME_CHARS = 256 * 1024


def catch_up_frames(
    room: Room, state: CatchUp, position: CatchUpPosition | None = None
) -> tuple[list[tuple[str, int]], CatchUpPosition | None]:
    """The frames of the catch-up's next page after `position` (from the start when
    None), each with how many messages it carries; and where the page after starts
    (None: the catch-up is complete).

    Each message new to the page goes where it belongs: before the first message the page
    holds past it (swapped in "beforebegin" of that message), or at the end of the log.
    Each changed one replaces the page's copy by id (pages that do not show it drop it).
    """
    position = position or CatchUpPosition(changes=False, after=state.after)
    if not position.changes:
        page = list(
            _new_to(room, state).filter(seq__gt=position.after).order_by("seq")[:CATCH_UP_PAGE]
        )
        frames = [(_render_inserts(part, state.held), len(part)) for part in _framed(page)]
        if len(page) < CATCH_UP_PAGE:
            return frames, CatchUpPosition(changes=True, after=state.after)
        return frames, CatchUpPosition(changes=False, after=page[-1].seq)
    page = list(
        _changed_for(room, state)
        .filter(changed_seq__gt=position.after)
        .order_by("changed_seq")[:CATCH_UP_PAGE]
    )
    frames = [
        (
            render_fragment(
                "catch-up-changes", rendered=rendered_messages.render(part, "message-now")
            ),
            len(part),
        )
        for part in _framed(page)
    ]
    if len(page) < CATCH_UP_PAGE:
        return frames, None
    return frames, CatchUpPosition(changes=True, after=page[-1].changed_seq)


def _render_inserts(messages: list[Message], held: dict[int, int]) -> str:
    runs: list[tuple[int | None, list[str]]] = []
    for message, html in zip(messages, rendered_messages.render(messages, "message"), strict=True):
        anchor = min((seq for seq in held if seq > message.seq), default=None)
        anchor_id = held[anchor] if anchor is not None else None
        if not runs or runs[-1][0] != anchor_id:
            runs.append((anchor_id, []))
        runs[-1][1].append(html)
    return render_fragment("catch-up", runs=runs)


# What a message's catch-up HTML depends on, beyond its id: its version (`changed_seq`:
# an edit, a deletion, a reaction and its attachment's thumbnail each take a new one,
# rooms/changes.py), the version of the message it quotes (a reply shows the original's
# text, or that it was deleted; a change to the original does not touch the reply's
# row), the names and the room's slug it shows, and the zone and language its times and
# dates are written in (UTC and the default language on a socket; a page's own render
# never comes from here).
RenderKey = tuple[Any, ...]


def _render_key(message: Message, partial: str) -> RenderKey:
    quoted = message.reply_to if message.reply_to_id is not None else None
    return (
        partial,
        message.pk,
        message.room_id,
        message.seq,
        message.changed_seq,
        message.author.username,
        message.room.slug,
        None if quoted is None else (quoted.pk, quoted.changed_seq, quoted.author.username),
        timezone.get_current_timezone_name(),
        translation.get_language(),
    )


class RenderedMessages:
    """Each message's catch-up HTML, rendered once per version and kept (the most recently
    sent `size`, per process).

    The catch-up pages shared by rooms/entering.py serve only the pages that come back
    from the same place; after a restart under load they come back over a minute while
    every room moves on, and each page's catch-up rendered the messages it missed again
    (a 10,000-page storm spent 40% of the server there: bench/RESULTS.md). Kept per
    message, a catch-up renders only what no page has been sent yet, whatever its cursor,
    and frames are assembled from the kept HTML. A change gives a message a new key, so a
    kept render is never sent stale; the old one ages out.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._kept: OrderedDict[RenderKey, str] = OrderedDict()
        # Catch-ups render on the database thread(s); the OrderedDict's moves are not
        # atomic together.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._kept)

    def render(self, messages: Sequence[Message], partial: str) -> list[str]:
        """Each message's `partial` ("message": new to the page; "message-now": changed
        since the page saw it), kept or rendered now. Only those rendered read their
        reactions (one query for them all)."""
        keys = [_render_key(message, partial) for message in messages]
        with self._lock:
            found = [self._kept.get(key) for key in keys]
            for key, html in zip(keys, found, strict=True):
                if html is not None:
                    self._kept.move_to_end(key)
        missing = [message for message, html in zip(messages, found, strict=True) if html is None]
        if not missing:
            return cast(list[str], found)
        attach_reactions(missing)
        rendered = {message.pk: render_fragment(partial, message=message) for message in missing}
        with self._lock:
            for message, key in zip(messages, keys, strict=True):
                if message.pk in rendered:
                    self._kept[key] = rendered[message.pk]
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)  # the least recently sent
        return [
            html if html is not None else rendered[message.pk]
            for message, html in zip(messages, found, strict=True)
        ]

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()


rendered_messages = RenderedMessages(settings.CHAT_RENDER_CACHE_SIZE)


def _framed(messages: list[Message]) -> list[list[Message]]:
    """Split messages into frames; escaping can make a body up to 6 times longer."""
    frames: list[list[Message]] = []
    size = 0
    for message in messages:
        cost = 6 * len(message.body) + 1024
        if not frames or size + cost > CATCH_UP_FRAME_CHARS:
            frames.append([])
            size = 0
        frames[-1].append(message)
        size += cost
    return frames


def conversation(user: User, other: User) -> QuerySet[PrivateMessage]:
    return PrivateMessage.objects.filter(
        Q(sender=user, recipient=other) | Q(sender=other, recipient=user)
    ).select_related("sender", "recipient")


@dataclass(frozen=True)
class ConversationPage:
    """A stretch of two people's private messages, oldest first, as HistoryPage is of a
    room's: `older`/`newer` the first/last shown when there is more on that side, `focus`
    a permalink's message, `latest` whether these are the newest."""

    messages: list[PrivateMessage]
    older: PrivateMessage | None = None
    newer: PrivateMessage | None = None
    focus: PrivateMessage | None = None
    latest: bool = False


def _conversation_sides(user: User, other: User) -> set[tuple[int, int]]:
    # (sender, recipient) pairs: one when someone writes to themselves.
    one, two = cast(int, user.pk), cast(int, other.pk)
    return {(one, two), (two, one)}


def _conversation_page(
    user: User, other: User, count: int, *, before: int | None = None, after: int | None = None
) -> tuple[list[PrivateMessage], bool]:
    """Up to `count` of the pair's messages nearest to `before` (older ones) or `after`
    (newer ones), oldest first, and whether there are more past them. One keyset query
    per direction of the conversation, each a range on the (sender, recipient, id)
    index with a LIMIT (an OR of the two would not stay on the index on PostgreSQL)."""
    rows: list[PrivateMessage] = []
    for sender_id, recipient_id in _conversation_sides(user, other):
        side = PrivateMessage.objects.select_related("sender", "recipient").filter(
            sender_id=sender_id, recipient_id=recipient_id
        )
        if after is not None:
            rows += side.filter(pk__gt=after).order_by("pk")[: count + 1]
        else:
            if before is not None:
                side = side.filter(pk__lt=before)
            rows += side.order_by("-pk")[: count + 1]
    newest_first = after is None
    rows.sort(key=lambda pm: pm.pk, reverse=newest_first)
    page = rows[:count]
    return (list(reversed(page)) if newest_first else page), len(rows) > count


def _private_message(user: User, other: User, pm_id: int) -> PrivateMessage:
    """Private message `pm_id` if it is between these two; PrivateMessage.DoesNotExist
    otherwise (another pair's, or none)."""
    return conversation(user, other).get(pk=pm_id)


def latest_private_messages(user: User, other: User) -> ConversationPage:
    """The newest HISTORY_PAGE messages between the two (what the conversation opens at)."""
    page, more = _conversation_page(user, other, HISTORY_PAGE)
    return ConversationPage(page, older=page[0] if more else None, latest=True)


def private_messages_before(user: User, other: User, pm_id: int) -> ConversationPage:
    """The HISTORY_PAGE messages of the pair before `pm_id` (`?before=`). Raises
    PrivateMessage.DoesNotExist for a message that is not between these two."""
    pm = _private_message(user, other, pm_id)
    page, more = _conversation_page(user, other, HISTORY_PAGE, before=pm.pk)
    return ConversationPage(
        page, older=page[0] if more and page else None, newer=page[-1] if page else None
    )


def private_messages_around(user: User, other: User, pm_id: int) -> ConversationPage:
    """Message `pm_id` with up to AROUND_MESSAGE of the pair's messages on each side (a
    permalink). Raises PrivateMessage.DoesNotExist for one not between these two."""
    focus = _private_message(user, other, pm_id)
    before, more_before = _conversation_page(user, other, AROUND_MESSAGE, before=focus.pk)
    after, more_after = _conversation_page(user, other, AROUND_MESSAGE, after=focus.pk)
    shown = [*before, focus, *after]
    return ConversationPage(
        shown,
        older=shown[0] if more_before else None,
        newer=shown[-1] if more_after else None,
        focus=focus,
    )


# Rendering and fan-out ------------------------------------------------------------


def render_fragment(partial: str, **context: Any) -> str:
    """Render one `{% partialdef %}` of the room page: the same markup the page uses."""
    return render_to_string(f"{ROOM_TEMPLATE}#{partial}", context)


def room_group(room_id: int) -> str:
    return f"room.{room_id}"


def activity_group(room_id: int) -> str:
    """The pages that list a room (the room list, other rooms' sidebars): its activity,
    for their unread counts (rooms/attention.py)."""
    return f"activity.{room_id}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def session_group(session_key: str | None) -> str:
    # Session keys are secrets; the group name (which Redis may show) carries a digest.
    return "session." + hashlib.sha256((session_key or "").encode()).hexdigest()[:32]


def close_session_sockets(session_key: str, code: int) -> None:
    """Close every socket opened with this session (on logout), wherever it is served."""
    realtime.event_on_commit(session_group(session_key), {"type": "socket.close", "code": code})


# Writing ---------------------------------------------------------------------------


@dataclass
class Posted:
    """What posting stored and rendered, and its publications: they leave once the
    transaction commits (`realtime.publish_on_commit`). A consumer awaits `sent()` to
    learn whether the layer took them (if not, the sender is shown the line at once, and
    everyone gets it when the sockets resync)."""

    html: str
    publications: list[realtime.Publication]
    private_message: PrivateMessage | None = None  # what a /pm stored

    async def sent(self) -> bool:
        return all([await publication for publication in self.publications])


def _once(
    store: Callable[[str | None], Posted], token: str, sent: QuerySet[Any], **same: Any
) -> tuple[Posted, Any | None]:
    """`store(token)` a send, once per send: its sender's rows (`sent`) hold one row per
    send id (ComposerForm.token; a unique constraint), so a send repeated is refused by
    the database and costs nothing more when it is new. Returns what was posted, and for
    a send repeated (the same `same` fields) nothing posted and the row it stored before.
    An id that stored other text is not kept: the composer's text changed after its first
    send, so this is a message of its own."""
    try:
        return store(token or None), None
    except IntegrityError:  # (also when the same send came through two sockets at once)
        earlier = sent.filter(send_token=token).first() if token else None
        if earlier is None:
            raise
    if all(getattr(earlier, name) == value for name, value in same.items()):
        log.info("%s %s sent again: stored once", type(earlier).__name__, earlier.pk)
        return Posted("", []), earlier
    return store(None), None


def post_message(
    room: Room,
    author: Any,
    body: str,
    *,
    reply_to: Message | None = None,
    attach: Callable[[Message], None] | None = None,
    token: str = "",
) -> Posted:
    """Store and publish a message (`reply_to`: the message of this room it answers):
    to the room, to the pages that list it (their unread counts), and to whoever it
    mentions (rooms/attention.py). Each rendered once. `attach` stores what the message
    carries (its file: rooms/attachments.py) in the same transaction, before it is
    rendered. A send repeated (its `token` again) stores and publishes nothing."""
    posted, _ = _once(
        lambda token: _post_message(room, author, body, reply_to, attach, token),
        token,
        Message.objects.filter(author=author),
        room_id=room.pk,
        body=body,
    )
    return posted


def _post_message(
    room: Room,
    author: Any,
    body: str,
    reply_to: Message | None,
    attach: Callable[[Message], None] | None,
    token: str | None,
) -> Posted:
    from rooms import attention

    with transaction.atomic():
        mentioned = attention.mentioned_users(room, author, body)
        message = Message.objects.create(
            room=room,
            author=author,
            body=body,
            reply_to=reply_to,
            mentioned=attention.mentioned_text(mentioned),
            send_token=token,
        )
        attention.store_mentions(message, mentioned, new=True)
        if attach is not None:
            attach(message)  # (sets message.attachment)
        else:
            # No attachment, known without asking the database when its partial looks.
            Message.attachment.related.set_cached_value(message, None)
        message.reaction_summary = []
        html = render_fragment("message-oob", message=message)
        published = realtime.publish_on_commit(room_group(room.pk), html, seq=message.seq)
        activity = attention.announce(message)
        notified = attention.notify(message, mentioned)
    log.info("message %s by %s in %s", message.pk, author, room)
    return Posted(html, [published, activity, *notified])


def send_private_message(sender: Any, recipient: Any, body: str, *, token: str = "") -> Posted:
    """Store and publish a private message, to every page of both people.

    Rendered once for both ends (the page's per-viewer CSS shows "delivered" to the
    sender and "private" to the recipient): appended to a room page's log or to the
    pair's conversation page, whichever a page is. The recipient's copy also carries
    what is theirs alone, rendered for them (one recipient per message): their unread
    count and a notification; and then a "pm.arrived" event, for a page of this
    conversation they have open to mark it read (rooms/consumers.py UserConsumer).
    A message to oneself is read when sent. A send repeated (its `token` again) stores
    and publishes nothing (what it stored before is its `private_message`).
    """
    posted, earlier = _once(
        lambda token: _send_private_message(sender, recipient, body, token),
        token,
        sender.sent_private_messages.all(),
        recipient_id=recipient.pk,
        body=body,
    )
    if earlier is not None:
        posted.private_message = earlier
    return posted


def _send_private_message(sender: Any, recipient: Any, body: str, token: str | None) -> Posted:
    to_self = sender.pk == recipient.pk
    with transaction.atomic():
        pm = PrivateMessage.objects.create(
            sender=sender,
            recipient=recipient,
            body=body,
            read_at=timezone.now() if to_self else None,
            send_token=token,
        )
        html = render_fragment(
            "private-message-oob", pm=pm, conversation=conversation_key(sender.pk, recipient.pk)
        )
        published = [realtime.publish_on_commit(user_group(sender.pk), html)]
        if not to_self:
            news = render_fragment(
                "private-message-news", pm=pm, unread=unread_private_messages(recipient.pk)
            )
            to_recipient = user_group(recipient.pk)
            published.append(realtime.publish_on_commit(to_recipient, html + news))
            arrived = {"type": PM_ARRIVED, "sender": sender.pk}
            published.append(realtime.event_on_commit(to_recipient, arrived))
    log.info("private message %s from %s to %s", pm.pk, sender, recipient)
    return Posted(html, published, private_message=pm)


# The event that follows a private message to its recipient's pages (send_private_message).
PM_ARRIVED = "pm.arrived"


def conversation_key(one: int, other: int) -> str:
    """The pair's name in element ids, the same from either end: "<lower id>-<higher id>"
    (the conversation page's log is `#conversation-<key>`)."""
    low, high = sorted((one, other))
    return f"{low}-{high}"


def unread_private_messages(user_id: int) -> int:
    """How many private messages `user_id` has not read (one query, on its own index)."""
    return PrivateMessage.objects.filter(recipient_id=user_id, read_at__isnull=True).count()


def read_private_messages(reader_id: int, sender_id: int) -> int:
    """Mark what `sender_id` sent `reader_id` as read: the reader was shown the newest of
    their conversation (its page, or a message arriving while it was open). One UPDATE,
    whatever their number; returns how many were unread. When any were, every page of
    the reader's gets their new count."""
    with transaction.atomic():
        read = PrivateMessage.objects.filter(
            recipient_id=reader_id, sender_id=sender_id, read_at__isnull=True
        ).update(read_at=timezone.now())
        if read:
            count = render_fragment(
                "pm-unread", unread=unread_private_messages(reader_id), oob=True
            )
            realtime.publish_on_commit(user_group(reader_id), count)
    return read


def sent_private_message(sender: Any, value: str | None) -> PrivateMessage | None:
    """The private message `value` (an id from a URL) if `sender` sent it, else None:
    what the room page confirms after a /pm without JavaScript (`?sent=<id>`)."""
    if not value or not value.isascii() or not value.isdigit() or len(value) > 18:
        return None
    return (
        PrivateMessage.objects.select_related("recipient")
        .filter(pk=int(value), sender_id=sender.pk)
        .first()
    )


def submit_composer(
    room: Room, user: Any, data: dict[str, Any]
) -> tuple[ComposerForm, Posted | None]:
    """Validate what the composer sent and post it: the one path for forms and sockets.

    Returns the bound form (with errors when invalid) and what was posted, if anything.
    """
    form = ComposerForm(data)
    if not form.is_valid():
        return form, None
    body, recipient = form.cleaned_data["body"], form.cleaned_data["recipient"]
    token = form.cleaned_data["token"]
    if recipient is not None:
        return form, send_private_message(user, recipient, body, token=token)
    reply_to = None
    if (reply_id := form.cleaned_data.get("reply_to")) is not None:
        reply_to = _shown(room).filter(pk=reply_id).first()
        if reply_to is None:
            form.add_error(None, REPLY_GONE)
            return form, None
    return form, post_message(room, user, body, reply_to=reply_to, token=token)


REPLY_GONE = (
    "The message you were replying to is no longer there (deleted, or not in this room): "
    "send again to post your text on its own."
)


def reply_target(room: Room, value: str | None) -> Message | None:
    """The message a composer starts a reply to (`?reply=<id>`): one shown in this room,
    else None (a reply to nothing is just a message)."""
    if not value or not value.isascii() or not value.isdigit() or len(value) > 18:
        return None
    return _shown(room).filter(pk=int(value)).first()


# Flood control --------------------------------------------------------------------


class RateLimiter:
    """A token bucket per user: a burst of `burst`, then `per_second` sustained.

    Per process: behind a balancer a user spread over n processes gets n buckets,
    which still bounds a flood to a small multiple.
    """

    def __init__(self, burst: int, per_second: float) -> None:
        self.burst = burst
        self.per_second = per_second
        self._buckets: dict[int, tuple[float, float]] = {}

    def allow(self, user_id: int) -> bool:
        now = time.monotonic()
        tokens, last = self._buckets.get(user_id, (float(self.burst), now))
        tokens = min(self.burst, tokens + (now - last) * self.per_second)
        if tokens < 1:
            self._buckets[user_id] = (tokens, now)
            return False
        self._buckets[user_id] = (tokens - 1, now)
        return True

    def reset(self) -> None:
        self._buckets.clear()


rate_limiter = RateLimiter(settings.CHAT_RATE_BURST, settings.CHAT_RATE_PER_SECOND)

TOO_FAST = "You are sending messages too fast. Wait a moment, then send again."


@dataclass(frozen=True)
class TooFast:
    """A send refused by the rate limit: what the composer says, and the HTTP status."""

    error: str = TOO_FAST
    status: int = 429


def sending_too_fast(user_id: int) -> TooFast | None:
    """Charge one message to `user_id`'s bucket: None if it may be sent, else the refusal.

    Every way of sending asks first (the socket, the room's form without JavaScript, a
    private message's form), so one bucket counts them all.
    """
    return None if rate_limiter.allow(user_id) else TooFast()


# Membership of private rooms --------------------------------------------------------


def invite(room: Room, owner: Any, user: Any) -> None:
    if room.owner_id != owner.pk:
        raise PermissionError("only the owner invites")
    room.members.add(user)
    log.info("%s invited %s to %s", owner, user, room)


def remove_member(room: Room, owner: Any, user: Any) -> None:
    """Take `user` out of a private room and close their sockets in it at once: from
    now on they receive nothing of it."""
    if room.owner_id != owner.pk:
        raise PermissionError("only the owner removes members")
    # The membership signal asks their sockets to re-check access (rooms/signals.py).
    room.members.remove(user)
    log.info("%s removed %s from %s", owner, user, room)


def conversation_partners(user: Any) -> QuerySet[Any]:
    """Everyone `user` has exchanged private messages with, most recent first, each
    annotated with that conversation's `last_body` and `last_at`."""
    latest = PrivateMessage.objects.filter(
        Q(sender=user, recipient=OuterRef("pk")) | Q(sender=OuterRef("pk"), recipient=user)
    ).order_by("-id")
    return (
        get_user_model()
        .objects.filter(
            Q(sent_private_messages__recipient=user) | Q(received_private_messages__sender=user)
        )
        .distinct()
        .annotate(
            last_body=Subquery(latest.values("body")[:1]),
            last_at=Subquery(latest.values("created_at")[:1]),
        )
        .order_by("-last_at")
    )
