"""Presence: who is online, the grace before a leave counts, and the ticks that batch
announcements (rooms/presence.py)."""

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async as db
from django.utils import timezone

from rooms import presence, services
from rooms.models import Connection, Room
from rooms.presence import Change
from rooms.tests import fragments

pytestmark = pytest.mark.django_db

LONG_AGO = timedelta(hours=1)


@pytest.fixture
def room() -> Room:
    return Room.objects.create(slug="general")


@pytest.fixture
def grace(settings) -> None:
    """A leave counts after a minute (the suites' default is at once)."""
    settings.CHAT_PRESENCE_LEAVE_GRACE = 60


def age(socket_id: str) -> None:
    """Make a socket's row look like its process stopped heartbeating an hour ago."""
    Connection.objects.filter(socket_id=socket_id).update(seen_at=timezone.now() - LONG_AGO)


def departed_long_ago(socket_id: str) -> None:
    """Make a departed socket's grace period over."""
    Connection.objects.filter(socket_id=socket_id).update(departed_at=timezone.now() - LONG_AGO)


def online(room: Room) -> list[str]:
    return [user.username for user in presence.online_users(room)]


# Arriving and departing -----------------------------------------------------------------


def test_the_first_socket_brings_a_user_online_and_the_second_does_not(room, alice) -> None:
    assert presence.arrive(room, alice, "tab-1") is True
    assert presence.arrive(room, alice, "tab-2") is False
    assert Connection.objects.filter(user=alice, server=presence.SERVER_ID).count() == 2
    assert online(room) == ["alice"] and presence.online_count(room) == 1


def test_being_online_in_one_room_does_not_count_in_another(room, alice) -> None:
    other = Room.objects.create(slug="other")
    presence.arrive(room, alice, "tab-1")
    assert presence.arrive(other, alice, "tab-2") is True


def test_only_the_last_socket_to_close_may_take_a_user_offline(room, alice) -> None:
    presence.arrive(room, alice, "tab-1")
    presence.arrive(room, alice, "tab-2")
    assert presence.depart("tab-1") is False
    assert presence.depart("tab-2") is True
    assert presence.depart("tab-2") is False  # (a socket departs once)


def test_a_departed_user_stays_online_for_the_grace_then_settles_as_left(room, alice, bob, grace):
    presence.arrive(room, alice, "tab-1")
    presence.arrive(room, bob, "bobs")
    presence.depart("tab-1")

    assert online(room) == ["alice", "bob"]  # within the grace
    assert presence.settle(room.pk, alice.pk) == []  # too early: nothing changes
    assert Connection.objects.filter(socket_id="tab-1").exists()

    departed_long_ago("tab-1")
    assert online(room) == ["bob"]
    assert presence.settle(room.pk, alice.pk) == [Change(room, alice, "left")]
    assert not Connection.objects.filter(user=alice).exists()
    assert presence.settle(room.pk, alice.pk) == []  # settled once


def test_coming_back_within_the_grace_is_neither_a_join_nor_a_leave(room, alice, grace):
    presence.arrive(room, alice, "tab-1")
    presence.depart("tab-1")
    assert presence.arrive(room, alice, "tab-1-reloaded") is False
    departed_long_ago("tab-1")
    assert presence.settle(room.pk, alice.pk) == []
    assert list(Connection.objects.values_list("socket_id", flat=True)) == ["tab-1-reloaded"]


def test_departing_an_unknown_socket_changes_nothing(room, alice) -> None:
    presence.arrive(room, alice, "tab-1")
    assert presence.depart("never-seen") is False
    assert Connection.objects.filter(departed_at=None).count() == 1


def test_a_stale_socket_does_not_keep_a_user_online(room, alice) -> None:
    presence.arrive(room, alice, "tab-1")
    age("tab-1")
    assert online(room) == []
    assert presence.arrive(room, alice, "tab-2") is True


# The heartbeat and shutdown -------------------------------------------------------------


def test_heartbeat_refreshes_this_process_rows_and_reaps_dead_ones(room, alice, bob) -> None:
    presence.arrive(room, alice, "mine")
    Connection.objects.create(
        socket_id="dead-process", room=room, user=bob, server="gone:1",
        seen_at=timezone.now() - LONG_AGO,
    )  # fmt: skip
    age("mine")  # ours is old too, but this process is alive: the heartbeat renews it

    assert presence.heartbeat() == [Change(room, bob, "left")]
    assert list(Connection.objects.values_list("socket_id", flat=True)) == ["mine"]
    assert Connection.objects.get().seen_at > timezone.now() - timedelta(minutes=1)


def test_heartbeat_settles_a_departure_nobody_settled(room, alice, grace) -> None:
    # (The process that was to settle it stopped within the grace.)
    presence.arrive(room, alice, "tab-1")
    presence.depart("tab-1")
    departed_long_ago("tab-1")
    assert presence.heartbeat() == [Change(room, alice, "left")]
    assert not Connection.objects.exists()


def test_heartbeat_reports_no_departure_for_a_user_still_online_elsewhere(room, alice) -> None:
    presence.arrive(room, alice, "mine")
    Connection.objects.create(
        socket_id="dead-process", room=room, user=alice, server="gone:1",
        seen_at=timezone.now() - LONG_AGO,
    )  # fmt: skip
    assert presence.heartbeat() == []
    assert Connection.objects.count() == 1


def test_forget_server_drops_only_this_process_rows_and_says_who_is_gone(room, alice, bob):
    carol_room = Room.objects.create(slug="carols")
    presence.arrive(room, alice, "mine")
    presence.arrive(carol_room, bob, "mine-too")
    Connection.objects.create(
        socket_id="theirs", room=carol_room, user=bob, server="other:1", seen_at=timezone.now()
    )
    assert presence.forget_server() == [Change(room, alice, "left")]  # bob is still there
    assert list(Connection.objects.values_list("socket_id", flat=True)) == ["theirs"]


# What is announced ----------------------------------------------------------------------


def test_a_join_adds_the_entry_once_and_a_line_and_counts(room, alice, bob) -> None:
    presence.arrive(room, alice, "tab-1")
    presence.arrive(room, bob, "tab-2")

    update = fragments.presence_update(presence.render_changes(room, [Change(room, bob, "joined")]))

    assert update.lines == ["bob joined"]
    assert update.deleted == [f"online-user-{bob.pk}"]  # no duplicate entry if already shown
    assert update.appended_usernames == ["bob"]
    assert update.appended[0].id == f"online-user-{bob.pk}"
    assert update.count == "2"


def test_a_leave_removes_the_entry_and_counts_who_is_left(room, alice, bob) -> None:
    presence.arrive(room, alice, "tab-1")
    update = fragments.presence_update(presence.render_changes(room, [Change(room, bob, "left")]))
    assert update.lines == ["bob left"]
    assert update.deleted == [f"online-user-{bob.pk}"]
    assert update.appended == []
    assert update.count == "1"


def test_a_crowd_arriving_in_one_tick_is_three_names_and_a_summary(room, make_user) -> None:
    people = [make_user(f"user{i:02}") for i in range(10)]
    html = presence.render_changes(room, [Change(room, p, "joined") for p in people])
    update = fragments.presence_update(html)
    assert update.lines == ["user00 joined", "user01 joined", "user02 joined", "7 others joined"]
    assert update.appended_usernames == [p.username for p in people]


@pytest.mark.django_db(transaction=True)
async def test_an_announcer_sends_one_fragment_per_room_per_tick(settings, alice, bob, carol):
    settings.CHAT_PRESENCE_TICK = 0.05
    room = await db(Room.objects.create)(slug="busy")
    sent: list[tuple[str, str]] = []

    class Recording(presence.Announcer):
        async def send(self, group: str, html: str) -> None:
            sent.append((group, html))

    announcer = Recording()
    for person in (alice, bob, carol):
        announcer.add(Change(room, person, "joined"))
    announcer.add(Change(room, carol, "left"))  # joined and left within the tick: nothing
    await presence.drain()

    assert len(sent) == 1
    assert fragments.presence_update(sent[0][1]).lines == ["alice joined", "bob joined"]


# Sockets: the grace and the tick at work --------------------------------------------------


async def test_a_reconnect_loop_shows_nothing_and_a_real_leave_shows_once(
    settings, gather, connect, alice, bob, lobby
):
    settings.CHAT_PRESENCE_LEAVE_GRACE = 0.5
    settings.CHAT_PRESENCE_TICK = 0.02
    (bob_socket,) = await gather("lobby", bob)
    first = await connect(alice, "lobby")
    await bob_socket.expect_presence("alice", "joined")

    await first.disconnect()
    for _ in range(30):  # a client reconnecting in a loop, as fast as it can
        loop_socket = await connect(alice, "lobby")
        await loop_socket.disconnect()

    # Nothing for bob until the grace has passed, then exactly one line.
    update = fragments.presence_update(await bob_socket.receive(timeout=5))
    assert update.lines == ["alice left"]
    assert update.count == "1"
    await asyncio.sleep(0.7)
    assert bob_socket.communicator.output_queue.empty()


def test_the_kept_entries_render_the_online_list_as_its_loop_does(room, alice, make_user):
    people = [alice, make_user("<b>bob & co</b>")]
    for person in people:
        presence.arrive(room, person, f"socket-{person.pk}")
    online = presence.online_users(room)
    looped = services.render_fragment("online-users", online_users=online)
    kept = services.render_fragment(
        "online-users", online_users=online, online_items=presence.online_entries(online)
    )
    assert kept == looped
    assert fragments.online_usernames(kept) == ["<b>bob & co</b>", "alice"]  # escaped
    assert "<b>" not in kept
