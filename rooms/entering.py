"""Room sockets coming in, together: a few database calls per burst, not a few per socket.

A room socket's connect asks the database twice: may this user enter the room (`admit`),
and, once its groups are joined, its presence row, how far behind its page is and who
is online (`arrive`). Asked socket by socket, every connect took its own trips to the
database thread (which every socket shares) and the online list was read and rendered
for each: O(N) per connect, so a storm of N connects cost O(N^2) (py-spy, 1,000 connects:
64% of the server's samples in that one render, bench/RESULTS.md). Both are asked in
batches (realtime/batches.py): one query for the rooms of the sockets that ask together,
one transaction for their presence rows, one cursor and one online list per room,
rendered once and sent to every socket of the batch in that room.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async

from realtime import batches
from rooms import attention, presence, services
from rooms.models import Room

log = logging.getLogger(__name__)

# Admission -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Admission:
    slug: str
    user: Any
    scope: Mapping[str, Any]


@dataclass(frozen=True)
class Admitted:
    room: Room
    listed: list[str]  # the activity groups of the rooms its page lists (attention.py)


def admit_many(asked: list[Admission]) -> list[Admitted | None]:
    """For each socket, its room and the activity groups its page lists; None where the
    user may not enter (services.find_room's rules: no such room, or not theirs to see)."""
    slugs = {a.slug for a in asked if services.is_room_name(a.slug)}
    rooms = {room.slug: room for room in Room.objects.filter(slug__in=slugs)}
    admitted: list[Admitted | None] = []
    for admission in asked:
        room = rooms.get(admission.slug)
        if room is None or not services.can_enter(room, admission.user):
            admitted.append(None)
            continue
        # (Most pages list no rooms: no query then.)
        listed = (
            attention.page_groups(admission.user, admission.scope)
            if b"rooms=" in admission.scope.get("query_string", b"")
            else []
        )
        admitted.append(Admitted(room, listed))
    return admitted


async def admit(slug: str, user: Any, scope: Mapping[str, Any]) -> Admitted | None:
    """The room at `slug` if `user` may enter it (with the groups its page lists)."""
    return await batches.ask(admit_many, Admission(slug, user, scope))


# Arrival -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    room: Room
    user: Any
    socket_id: str
    after: int  # the page's cursor (?after=)
    have: frozenset[int]  # what it holds past it (?have=)


@dataclass(frozen=True)
class Arrived:
    first: bool  # it brings its user online in the room
    state: services.CatchUp  # how far behind the page is
    settled: str  # the cursor and the online list (room.html#caught-up)


# While sockets keep arriving, their batches start at most this often: each batch reads
# and renders the online list of each of its rooms once, and in a storm over many rooms
# the batches were ~10 sockets over ~10 rooms, a read per socket (a quarter of the
# new server's CPU in the 10,000-page reconnect storm, py-spy). A lone socket is not
# kept waiting: the first batch of a quiet spell starts at once; one that follows another
# closely waits for the next batch, a quarter of a second (as a presence tick), or longer
# when batches get dear (ARRIVALS_SHARE).
# (Measured, 10,000-page storm in-memory: 0.1 s settled in 26-34 s, 0.25 s in 25.8 s.)
ARRIVALS_EVERY = 0.25
# And they take at most this share of the database thread: a batch that worked 0.1 s (ten
# rooms' lists, on a slow machine) is followed by the next 0.5 s later, not 0.25 s. A
# storm that saturates the server then reads each list less often, instead of spending
# ever more of its time on lists that the next batch reads again. (Measured, 2026-11-27,
# bench/RESULTS.md: the 10,000-page restart storm in-memory 13-31% sooner; in a storm of
# 1,000 connects, the catch-up's p99 0.8 to 1.2 s, the last one no later.)
ARRIVALS_SHARE = 0.2


def arrive_many(asked: list[Arrival]) -> list[Arrived]:
    """Record the sockets' presence, then read each room's cursor and online list once.

    Presence first, so that the online list includes them. Called once their groups are
    joined: whatever happens after the read reaches them live.
    """
    firsts = presence.arrive_many([presence.Arrival(a.room, a.user, a.socket_id) for a in asked])
    rooms = {a.room.pk: a.room for a in asked}
    cursors = {pk: services.room_cursor(room) for pk, room in rooms.items()}
    settled = {}
    for pk, room in rooms.items():
        # (The list's first CHAT_ONLINE_LIST_LIMIT: every connect is sent it, see OnlineList.)
        online = presence.online_list(room)
        settled[pk] = services.render_fragment(
            "caught-up",
            room=room,
            cursor=cursors[pk],
            online_items=presence.online_entries(online.users),
            **online.context(),
        )
    return [
        Arrived(first, _catch_up_state(a, cursors[a.room.pk]), settled[a.room.pk])
        for a, first in zip(asked, firsts, strict=True)
    ]


async def arrive(arrival: Arrival) -> Arrived:
    """Record `arrival`'s presence (announcing its user if they came online) and read how
    far behind its page is, with every socket arriving meanwhile."""
    arrived = await batches.ask(arrive_many, arrival, every=ARRIVALS_EVERY, share=ARRIVALS_SHARE)
    if arrived.first:
        presence.announce([presence.Change(arrival.room, arrival.user, "joined")])
    return arrived


# Catch-ups -----------------------------------------------------------------------------

# What a catch-up sends is decided by the room, the page's cursor and what it holds past
# it, and the room's cursor when read: every change to a message (an edit, a deletion, a
# reaction) takes a new room sequence number, so two pages with the same four are sent the
# same frames. After a restart every page comes back from about the same cursor; rendered
# per socket, a thousand pages cost a thousand renders of each missed message (the
# rule is one render per event). The latest pages are kept, a few, and shared.
CATCH_UP_PAGES_KEPT = 32
# How far behind a page is (two counts, ~1.4 ms) is decided by the same four: after a
# restart, 10,000 pages coming back from a few cursors each asked it afresh (a seventh of
# the new server's CPU in that storm, py-spy).
CATCH_UP_STATES_KEPT = 256

CatchUpKey = tuple[int, int, tuple[int, ...], int, services.CatchUpPosition | None]
CatchUpPage = tuple[list[tuple[str, int]], services.CatchUpPosition | None]
_catch_up_pages: dict[CatchUpKey, CatchUpPage] = {}
StateKey = tuple[int, int, tuple[int, ...], int]
_catch_up_states: dict[StateKey, services.CatchUp] = {}


def _keep(kept: dict[Any, Any], key: Any, value: Any, limit: int) -> None:
    while len(kept) >= limit:
        del kept[next(iter(kept))]  # the oldest
    kept[key] = value


def _catch_up_state(arrival: Arrival, cursor: int) -> services.CatchUp:
    """services.catch_up for `arrival`, reckoned once for every page in the same place."""
    key = (arrival.room.pk, arrival.after, tuple(sorted(arrival.have)), cursor)
    state = _catch_up_states.get(key)
    if state is None:
        state = services.catch_up(arrival.room, arrival.after, arrival.have, cursor=cursor)
        _keep(_catch_up_states, key, state, CATCH_UP_STATES_KEPT)
    return state


def _catch_up_key(
    room: Room, state: services.CatchUp, position: services.CatchUpPosition | None
) -> CatchUpKey:
    return (room.pk, state.after, tuple(sorted(state.held)), state.cursor, position)


def _catch_up_page(
    room: Room, state: services.CatchUp, position: services.CatchUpPosition | None
) -> CatchUpPage:
    key = _catch_up_key(room, state, position)
    page = _catch_up_pages.get(key)
    if page is None:
        page = services.catch_up_frames(room, state, position)
        _keep(_catch_up_pages, key, page, CATCH_UP_PAGES_KEPT)
    return page


async def catch_up_frames(
    room: Room, state: services.CatchUp, position: services.CatchUpPosition | None
) -> CatchUpPage:
    """services.catch_up_frames, rendered once for every page in the same place."""
    page = _catch_up_pages.get(_catch_up_key(room, state, position))
    if page is not None:
        return page  # (no trip to the database thread)
    return await database_sync_to_async(_catch_up_page)(room, state, position)


def reset() -> None:
    """Forget the loop-bound state (tests: each has its own event loop)."""
    batches.reset()
    _catch_up_pages.clear()
    _catch_up_states.clear()
    services.rendered_messages.clear()  # (its keys are this test database's ids)
