"""Attention over the sockets (issue 13, rooms/attention.py): a room's activity reaches the
pages that list it, rendered once per message; a mention reaches every page of the person
mentioned and nobody else; what a room socket delivers is read, written in batches."""

import pytest
from channels.db import database_sync_to_async

from rooms import attention, services
from rooms.models import Message, ReadPosition, Room
from rooms.tests import fragments

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


async def frames_until(socket, *wanted: str) -> str:
    """What `socket` is sent until every one of `wanted` (substrings) has come, joined
    (pushes through different groups may come in either order, or in one frame)."""
    seen = ""
    while not all(text in seen for text in wanted):
        seen += await socket.receive()
    return seen


def activity_in(html: str) -> list[dict[str, str | None]]:
    return [
        element.attrs
        for element in fragments.parse(html).iter()
        if "data-room-activity" in element.attrs
    ]


def notifications_in(html: str) -> list[fragments.Element]:
    return fragments.parse(html).find_all(class_="notification--mention")


# A room's activity ----------------------------------------------------------------------------


async def test_the_activity_reaches_the_pages_listing_the_room_rendered_once(
    connect, gather, alice, bob, carol, lobby, other_room, renders
):
    (alice_socket,) = await gather("lobby", alice)
    # Sidebars of other rooms: bob's three pages list lobby (and their own room, which
    # they skip), carol's lists only its own room.
    bob_pages = [await connect(bob, "other", query="rooms=lobby,other")]
    await bob_pages[0].expect_presence("bob", "joined")
    bob_pages += [await connect(bob, "other", query="rooms=lobby") for _ in range(2)]
    await db(Room.objects.create)(slug="third")
    carol_page = await connect(carol, "third", query="rooms=third")
    await carol_page.expect_presence("carol", "joined")

    await alice_socket.send("hello @bob")
    await alice_socket.receive_sent()
    message = await db(Message.objects.get)()

    for socket in bob_pages:
        html = await frames_until(socket, "data-room-activity")
        (activity,) = activity_in(html)
        assert activity["data-room"] == "lobby"
        assert activity["data-seq"] == str(message.seq)
        assert activity["data-author"] == "alice"
        assert activity["data-mentions"] == "bob"
    assert renders["room-activity"] == 1  # once, for every page that got it
    assert renders["message-oob"] == 1
    await carol_page.assert_quiet()


async def test_the_room_pages_own_room_and_rooms_it_may_not_enter_are_not_followed(
    connect, alice, bob, carol, lobby, secret
):
    # carol may not enter secret; her page asks for it anyway, and for junk.
    carol_page = await connect(carol, "lobby", query="rooms=secret,lobby,NOT-A-SLUG,,missing")
    groups = await db(attention.page_groups)(carol, carol_page.communicator.scope)
    assert groups == [services.activity_group(lobby.pk)]
    await carol_page.expect_presence("carol", "joined")

    await db(services.post_message)(secret, alice, "members only")
    await db(services.post_message)(lobby, bob, "in lobby")
    html = await carol_page.receive()
    # Only lobby's message itself: not its activity (her page's own room), nothing of secret.
    assert [m.attrs["data-author"] for m in fragments.messages_in(html)] == ["bob"]
    assert activity_in(html) == []
    await carol_page.assert_quiet()


async def test_a_page_follows_at_most_a_hundred_rooms(alice):
    slugs = ",".join(f"room-{n:03d}" for n in range(150))
    await db(Room.objects.bulk_create)([Room(slug=f"room-{n:03d}") for n in range(150)])
    scope = {"query_string": f"rooms={slugs}".encode()}
    assert len(await db(attention.page_groups)(alice, scope)) == attention.MAX_PAGE_ROOMS


# Mentions ------------------------------------------------------------------------------------


async def test_a_mention_reaches_every_page_of_the_mentioned_and_nobody_else(
    connect, gather, alice, bob, carol, lobby, other_room, renders
):
    alice_socket, carol_in_lobby = await gather("lobby", alice, carol)
    bob_in_lobby = await connect(bob, "lobby")
    for socket in (alice_socket, carol_in_lobby, bob_in_lobby):
        await socket.expect_presence("bob", "joined")
    bob_elsewhere = await connect(bob, "other")
    await bob_elsewhere.expect_presence("bob", "joined")
    carol_elsewhere = await connect(carol, "other")
    for socket in (bob_elsewhere, carol_elsewhere):
        await socket.expect_presence("carol", "joined")

    await alice_socket.send("@bob, look")
    await alice_socket.receive_sent()
    message = await db(Message.objects.get)()

    # In the room, bob's page gets the message itself too, marked as mentioning him.
    in_room = await frames_until(bob_in_lobby, "notification--mention", "data-mentions")
    (article,) = fragments.messages_in(in_room)
    assert article.attrs["data-mentions"] == "bob"
    elsewhere = await frames_until(bob_elsewhere, "notification--mention")
    for html in (in_room, elsewhere):
        (notification,) = notifications_in(html)
        assert "alice mentioned you in #lobby" in notification.text
        link = notification.one("a")
        assert link.attrs["href"] == f"/rooms/lobby/messages/{message.pk}/#message-{message.pk}"
    assert renders["mention-notification"] == 1
    # carol sees the message in lobby and nothing else; alice is not told of her own.
    assert fragments.messages_in(await carol_in_lobby.receive())[0].attrs["data-author"] == "alice"
    await bob_in_lobby.assert_quiet()
    await bob_elsewhere.assert_quiet()
    await carol_in_lobby.assert_quiet()
    await carol_elsewhere.assert_quiet()
    await alice_socket.assert_quiet()


async def test_at_level_nothing_a_mention_is_not_notified(connect, gather, alice, bob, lobby):
    await db(attention.set_level)(bob, lobby, ReadPosition.Level.NOTHING)
    (alice_socket,) = await gather("lobby", alice)
    bob_socket = await connect(bob, "lobby")
    await alice_socket.expect_presence("bob", "joined")
    await bob_socket.expect_presence("bob", "joined")

    await alice_socket.send("@bob are you there?")
    await alice_socket.receive_sent()
    html = await bob_socket.receive()
    assert fragments.messages_in(html)[0].attrs["data-mentions"] == "bob"  # still marked
    assert notifications_in(html) == []
    await bob_socket.assert_quiet()


# Read positions from sockets ----------------------------------------------------------------


async def position(user, room) -> int | None:
    row = await db(ReadPosition.objects.filter(user=user, room=room).first)()
    return None if row is None else row.seq


async def test_a_room_socket_reads_what_it_delivers_in_batches_not_per_frame(
    connect, gather, alice, bob, lobby, other_room, settings
):
    settings.CHAT_READ_FLUSH_SECONDS = 3600  # only the explicit flushes below write
    (alice_socket,) = await gather("lobby", alice)
    bob_reading = await connect(bob, "lobby", query="read=1")
    await alice_socket.expect_presence("bob", "joined")
    await bob_reading.expect_presence("bob", "joined")
    # bob's room list elsewhere: his other pages learn that he read lobby.
    bob_listing = await connect(bob, "other", query="rooms=lobby")
    await bob_listing.expect_presence("bob", "joined")
    assert await position(bob, lobby) is None  # the catch-up was noted, not written

    for n in range(3):
        await alice_socket.send(f"message {n}")
        await alice_socket.receive_sent()
        await frames_until(bob_reading, f"message {n}")
        await frames_until(bob_listing, "data-room-activity")
    assert await position(bob, lobby) is None  # three deliveries, no write

    await attention.reads().flush()
    cursor = await db(services.room_cursor)(lobby)
    assert await position(bob, lobby) == cursor
    html = await frames_until(bob_listing, "data-room-read")
    read = [e.attrs for e in fragments.parse(html).iter() if "data-room-read" in e.attrs]
    assert read == [{"data-room-read": None, "data-room": "lobby"}]
    # alice's socket did not say read=1: her position is not hers to move from here.
    assert await position(alice, lobby) is None

    # What arrives later is written when the socket closes.
    await alice_socket.send("last one")
    await alice_socket.receive_sent()
    await frames_until(bob_reading, "last one")
    await bob_reading.disconnect()
    assert await position(bob, lobby) == await db(services.room_cursor)(lobby)


async def test_an_older_page_socket_reads_nothing(connect, alice, bob, lobby, settings):
    for n in range(3):
        await db(services.post_message)(lobby, alice, f"old {n}")
    # Without read=1 (an older page or a permalink): the gap before it stays unread.
    bob_page = await connect(bob, "lobby", after=1)
    assert len(bob_page.catch_up) == 1
    await db(services.post_message)(lobby, alice, "new")
    await frames_until(bob_page, "new")
    await attention.reads().flush()
    await bob_page.disconnect()
    assert await position(bob, lobby) is None


# The user socket of every other page (rooms/consumers.py UserConsumer) --------------------


async def test_the_room_list_follows_the_rooms_it_lists_and_hears_mentions(
    connect, gather, alice, bob, carol, lobby, renders
):
    (alice_socket,) = await gather("lobby", alice)
    bobs_rooms = await connect(bob, path="/ws/me/", query="rooms=lobby")
    carols_rooms = await connect(carol, path="/ws/me/", query="rooms=lobby")
    carols_settings = await connect(carol, path="/ws/me/")  # a page that lists no room

    await alice_socket.send("@bob see this")
    await alice_socket.receive_sent()

    bobs = await frames_until(bobs_rooms, "data-room-activity", "notification--mention")
    carols = await frames_until(carols_rooms, "data-room-activity")
    assert [a["data-mentions"] for a in activity_in(bobs) + activity_in(carols)] == ["bob"] * 2
    (notification,) = notifications_in(bobs)
    assert "alice mentioned you in #lobby" in notification.text
    assert notifications_in(carols) == []
    assert (renders["room-activity"], renders["mention-notification"]) == (1, 1)
    for socket in (bobs_rooms, carols_rooms, carols_settings, alice_socket):
        await socket.assert_quiet()


async def test_a_rooms_activity_is_coalesced_per_tick_and_still_counts_every_message(
    connect, alice, bob, carol, lobby, renders, settings
):
    # A long tick, so that the burst surely falls in one (no timing is asserted).
    settings.CHAT_ACTIVITY_TICK = 2.0
    bobs_rooms = await connect(bob, path="/ws/me/", query="rooms=lobby")
    await db(services.post_message)(lobby, alice, "first: leaves at once")
    (first,) = activity_in(await frames_until(bobs_rooms, "data-room-activity"))
    assert (first["data-author"], first["data-count"], first["data-mentions"]) == ("alice", "1", "")

    # The rest of the tick: one fragment, an author each, with their counts and mentions.
    for n in range(3):
        await db(services.post_message)(lobby, alice, f"alice {n}")
    await db(services.post_message)(lobby, carol, "@bob one")
    await db(services.post_message)(lobby, carol, "@bob @alice two")
    html = await frames_until(bobs_rooms, "data-room-activity")
    by_author = {str(a["data-author"]): a for a in activity_in(html)}
    assert sorted(by_author) == ["alice", "carol"]
    assert (by_author["alice"]["data-count"], by_author["alice"]["data-mentions"]) == ("3", "")
    carols = by_author["carol"]
    mentions = str(carols["data-mentions"]).split()
    assert (carols["data-count"], mentions) == ("2", ["bob", "alice", "bob"])
    message = await db(Message.objects.get)(body="@bob @alice two")
    assert carols["data-seq"] == str(message.seq)
    assert renders["room-activity"] == 2  # six messages, two ticks: once each
    assert renders["message-oob"] == 6
    await bobs_rooms.assert_quiet()


async def test_a_read_does_not_overtake_the_activity_held_for_the_tick(
    connect, alice, bob, lobby, settings
):
    settings.CHAT_ACTIVITY_TICK = 60.0  # held until something sends it
    bobs_rooms = await connect(bob, path="/ws/me/", query="rooms=lobby")
    await db(services.post_message)(lobby, alice, "first: leaves at once")
    await frames_until(bobs_rooms, "data-room-activity")
    await db(services.post_message)(lobby, alice, "held for the tick")
    await bobs_rooms.assert_quiet()

    # bob reads the room (its page): his room list is told, after the held activity.
    await db(attention.mark_read)(bob, lobby, await db(services.room_cursor)(lobby))
    html = await frames_until(bobs_rooms, "data-room-read")
    (held,) = activity_in(html)
    assert (held["data-author"], held["data-count"]) == ("alice", "1")
    assert html.index("data-room-activity") < html.index("data-room-read")
