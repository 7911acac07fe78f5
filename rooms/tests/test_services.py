import asyncio
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import AnonymousUser
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from realtime.layers import channel_layer
from rooms import presence, services
from rooms.models import Connection, Message, PrivateMessage, Room
from rooms.services import RateLimiter
from rooms.tests import fragments
from rooms.tests.databases import concurrent_writers

pytestmark = pytest.mark.django_db

# A channel layer that is down: Redis at a port nothing listens on (refused at once).
LAYER_DOWN = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": ["redis://127.0.0.1:1"]},
    }
}


# Listening on the channel layer from synchronous tests -----------------------------------


@pytest.fixture
def listen() -> Callable[[str], str]:
    """`channel = listen(group)`: a channel in `group`, as a consumer's would be."""

    def _listen(group: str) -> str:
        layer = channel_layer()
        channel = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(group, channel)
        return channel

    return _listen


def receive(channel: str) -> dict[str, Any]:
    async def _receive() -> dict[str, Any]:
        return await asyncio.wait_for(channel_layer().receive(channel), 5)

    return async_to_sync(_receive)()


def assert_nothing_pending(channel: str) -> None:
    """The layer delivers in order: if a marker sent now is next, nothing else was queued."""
    async_to_sync(channel_layer().send)(channel, {"type": "test.marker"})
    assert receive(channel) == {"type": "test.marker"}


# Finding and creating rooms (more in test_rooms_creation.py) ----------------------------


def test_creating_a_room_makes_it_public_and_owned_by_the_user(alice) -> None:
    room = services.create_room("general", alice, private=False)
    assert (room.slug, room.visibility, room.owner) == ("general", Room.Visibility.PUBLIC, alice)
    assert services.find_room("general", alice) == room


def test_creating_a_private_room_makes_it_members_only(alice, bob) -> None:
    room = services.create_room("secret", alice, private=True)
    assert room.visibility == Room.Visibility.PRIVATE
    assert services.can_enter(room, alice)
    assert not services.can_enter(room, bob)


def test_creating_an_existing_room_is_refused_and_changes_nothing_about_it(alice, bob) -> None:
    existing = Room.objects.create(slug="general", owner=alice)
    with pytest.raises(services.RoomNameTaken):
        services.create_room("general", bob, private=True)
    assert list(Room.objects.all()) == [existing]
    assert (existing.owner, existing.visibility) == (alice, Room.Visibility.PUBLIC)


@pytest.mark.parametrize(
    "slug", ["", "General", "-x", "x-", "a_b", "a b", "../x", "x" * 51, "room.1", "é"]
)
def test_an_invalid_name_is_neither_found_nor_created(alice, slug: str) -> None:
    with pytest.raises(Room.DoesNotExist):
        services.find_room(slug, alice)
    with pytest.raises(services.RoomNameInvalid):
        services.create_room(slug, alice, private=False)
    assert not Room.objects.exists()


def test_finding_a_missing_room_is_refused_and_creates_nothing(alice) -> None:
    with pytest.raises(Room.DoesNotExist):
        services.find_room("nowhere", alice)
    assert not Room.objects.exists()


def test_a_private_room_admits_its_owner_and_members_only(alice, bob, carol) -> None:
    room = Room.objects.create(slug="secret", owner=alice, visibility=Room.Visibility.PRIVATE)
    room.members.add(bob)
    assert services.find_room("secret", alice) == room
    assert services.find_room("secret", bob) == room
    with pytest.raises(Room.DoesNotExist):
        services.find_room("secret", carol)


def test_a_staff_room_admits_staff_only(make_user) -> None:
    Room.objects.create(slug="ops", visibility=Room.Visibility.STAFF)
    staff, member = make_user("sam", is_staff=True), make_user("mo")
    assert services.find_room("ops", staff).slug == "ops"
    with pytest.raises(Room.DoesNotExist):
        services.find_room("ops", member)


def test_anonymous_and_inactive_users_may_enter_nothing(make_user) -> None:
    room = Room.objects.create(slug="general")
    assert not services.can_enter(room, AnonymousUser())
    assert not services.can_enter(room, make_user("gone", is_active=False))


def test_visible_rooms_hide_private_and_staff_rooms_from_outsiders(alice, bob, make_user) -> None:
    Room.objects.create(slug="general")
    secret = Room.objects.create(slug="secret", owner=alice, visibility=Room.Visibility.PRIVATE)
    Room.objects.create(slug="ops", visibility=Room.Visibility.STAFF)
    staff = make_user("sam", is_staff=True)
    secret.members.add(staff)
    assert {r.slug for r in services.visible_rooms(alice)} == {"general", "secret"}
    assert {r.slug for r in services.visible_rooms(bob)} == {"general"}
    assert {r.slug for r in services.visible_rooms(staff)} == {"general", "ops", "secret"}


def test_visible_rooms_are_listed_by_name(alice) -> None:
    # alice is in none of them (see test_rooms_creation.py for the rooms she is in first).
    slugs = ["kilo", "alpha", "zulu", "echo", "bravo", "yankee", "delta", "mike"]
    for slug in slugs:
        Room.objects.create(slug=slug)
    assert [r.slug for r in services.visible_rooms(alice)] == sorted(slugs)


def test_visible_rooms_count_online_users_once_each_and_ignore_stale_sockets(
    alice, bob, carol
) -> None:
    room = Room.objects.create(slug="general")
    quiet = Room.objects.create(slug="quiet")
    presence.arrive(room, alice, "tab-1")
    presence.arrive(room, alice, "tab-2")
    presence.arrive(room, bob, "tab-3")
    presence.arrive(quiet, carol, "tab-4")
    Connection.objects.filter(socket_id="tab-4").update(seen_at=timezone.now() - timedelta(hours=1))
    # `online` is an annotation of visible_rooms' query, which its QuerySet[Room] type omits.
    online = {r.slug: r.online for r in services.visible_rooms(alice)}  # type: ignore[attr-defined]
    assert online == {"general": 2, "quiet": 0}


# Reading ---------------------------------------------------------------------------------


def test_recent_messages_are_the_last_50_oldest_first_with_the_rooms_cursor(alice) -> None:
    room = Room.objects.create(slug="general")
    messages = [Message.objects.create(room=room, author=alice, body=f"m{i}") for i in range(51)]
    view = services.recent_messages(room)
    assert view.messages == messages[1:]
    assert view.cursor == 51 == messages[-1].seq


def test_each_room_numbers_its_messages_from_one(alice) -> None:
    room = Room.objects.create(slug="general")
    other = Room.objects.create(slug="other")
    first, second = (Message.objects.create(room=room, author=alice, body=t) for t in "12")
    elsewhere = Message.objects.create(room=other, author=alice, body="not here")
    assert (first.seq, second.seq, elsewhere.seq) == (1, 2, 1)
    room.refresh_from_db()
    assert room.last_seq == 2


def test_catch_up_counts_what_the_page_lacks_and_clamps_a_cursor_past_the_end(alice) -> None:
    room = Room.objects.create(slug="general")
    fourth = [Message.objects.create(room=room, author=alice, body=t) for t in "12345"][3]

    def position(after: int, have: frozenset[int] = frozenset()) -> tuple[int, int, int]:
        state = services.catch_up(room, after, have)
        return state.after, state.cursor, state.missed

    assert position(2) == (2, 5, 3)
    assert position(5) == (5, 5, 0)
    assert position(10**12) == (5, 5, 0)
    # What the page holds past its cursor is not missed, and is where missed ones go.
    state = services.catch_up(room, 2, frozenset({4, 9, 1}))
    assert (state.missed, state.held) == (2, {4: fourth.pk})


def test_a_catch_up_past_the_limit_is_too_long(alice, settings) -> None:
    settings.CHAT_CATCHUP_LIMIT = 3
    room = Room.objects.create(slug="general")
    for text in "1234":
        Message.objects.create(room=room, author=alice, body=text)
    assert services.catch_up(room, 1).too_long is False
    assert services.catch_up(room, 0).too_long is True


# Posting ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # publications leave on commit
def test_post_message_stores_then_broadcasts_the_rendered_message(alice, listen) -> None:
    room = Room.objects.create(slug="general")
    channel = listen(services.room_group(room.pk))

    posted = services.post_message(room, alice, "hello <b>world</b>")

    message = Message.objects.get()
    assert (message.room, message.author, message.body) == (room, alice, "hello <b>world</b>")
    event = receive(channel)
    assert event == {
        "type": "hub.html",
        "html": posted.html,
        "seq": message.seq,
        "group": services.room_group(room.pk),  # each process routes it by that
    }
    # The room's, and its activity for the pages that list it (rooms/attention.py).
    assert [p.future.result() for p in posted.publications] == [True, True]
    assert fragments.is_message_fragment(posted.html)
    assert fragments.message_ids(posted.html) == [message.pk]
    assert "hello &lt;b&gt;world&lt;/b&gt;" in posted.html


@pytest.mark.django_db(transaction=True)
def test_nothing_is_published_for_a_transaction_that_rolls_back(alice, listen) -> None:
    room = Room.objects.create(slug="general")
    channel = listen(services.room_group(room.pk))

    with pytest.raises(RuntimeError), transaction.atomic():
        services.post_message(room, alice, "never stored")
        raise RuntimeError("the caller's transaction fails after the post")

    assert not Message.objects.exists()
    assert_nothing_pending(channel)


@pytest.mark.django_db(transaction=True)
def test_a_publication_leaves_when_the_outer_transaction_commits_not_before(alice, listen):
    room = Room.objects.create(slug="general")
    channel = listen(services.room_group(room.pk))

    with transaction.atomic():
        posted = services.post_message(room, alice, "in a bigger transaction")
        assert_nothing_pending(channel)  # not while the row is uncommitted
        assert not posted.publications[0].future.done()

    assert receive(channel)["html"] == posted.html
    assert posted.publications[0].future.result() is True


@pytest.mark.django_db(transaction=True)  # publications leave on commit
def test_post_message_keeps_the_message_when_the_channel_layer_is_down(alice, settings) -> None:
    room = Room.objects.create(slug="general")
    settings.CHANNEL_LAYERS = LAYER_DOWN

    posted = services.post_message(room, alice, "still here")

    assert [p.future.result() for p in posted.publications] == [False, False]
    assert Message.objects.get().body == "still here"
    assert "still here" in posted.html


@pytest.mark.django_db(transaction=True)  # publications leave on commit
def test_send_private_message_reaches_both_ends_and_nobody_else(alice, bob, carol, listen) -> None:
    to_bob = listen(services.user_group(bob.pk))
    to_alice = listen(services.user_group(alice.pk))
    to_carol = listen(services.user_group(carol.pk))

    posted = services.send_private_message(alice, bob, "psst")

    pm = PrivateMessage.objects.get()
    assert (pm.sender, pm.recipient, pm.body) == (alice, bob, "psst")
    # The message, rendered once for both; the recipient's copy carries their own unread
    # count and notification after it, then the event that marks it read on a page of
    # this conversation.
    assert receive(to_alice)["html"] == posted.html
    to_bobs_pages = receive(to_bob)["html"]
    assert to_bobs_pages.startswith(posted.html)
    assert 'id="pm-unread"' in to_bobs_pages and "notification" in to_bobs_pages
    assert receive(to_bob)["type"] == services.PM_ARRIVED
    assert_nothing_pending(to_carol)
    assert_nothing_pending(to_alice)
    assert [p.future.result() for p in posted.publications] == [True, True, True]
    article = fragments.private_messages_in(posted.html)[0]
    assert (article.attrs["data-sender"], article.attrs["data-recipient"]) == ("alice", "bob")


@pytest.mark.django_db(transaction=True)  # publications leave on commit
def test_a_private_message_to_oneself_is_delivered_once(alice, listen) -> None:
    mine = listen(services.user_group(alice.pk))
    services.send_private_message(alice, alice, "note to self")
    assert receive(mine)["type"] == "hub.html"
    assert_nothing_pending(mine)


def test_submit_composer_posts_a_valid_message_to_the_room(alice) -> None:
    room = Room.objects.create(slug="general")
    form, posted = services.submit_composer(room, alice, {"body": " hi "})
    assert form.is_valid() and posted is not None
    assert Message.objects.get().body == "hi"


def test_submit_composer_sends_a_pm_command_privately(alice, bob) -> None:
    room = Room.objects.create(slug="general")
    _, posted = services.submit_composer(room, alice, {"body": "/pm bob hi"})
    assert posted is not None
    assert not Message.objects.exists()
    assert PrivateMessage.objects.get().body == "hi"


@pytest.mark.parametrize("body", ["", "   ", "x" * 4001, "/pm nobody hi", "/pm"])
def test_submit_composer_stores_nothing_when_invalid(alice, body: str) -> None:
    room = Room.objects.create(slug="general")
    form, posted = services.submit_composer(room, alice, {"body": body})
    assert posted is None and form.errors
    assert not Message.objects.exists() and not PrivateMessage.objects.exists()


# A send repeated (the composer's send id again) ------------------------------------------

TOKEN = "0123456789abcdef" * 2


@pytest.mark.django_db(transaction=True)  # publications leave on commit
def test_a_send_repeated_after_its_answer_was_lost_is_stored_and_published_once(alice, listen):
    room = Room.objects.create(slug="general")
    channel = listen(services.room_group(room.pk))
    first = services.post_message(room, alice, "only once", token=TOKEN)
    assert receive(channel)["html"] == first.html

    again = services.post_message(room, alice, "only once", token=TOKEN)

    assert (again.html, again.publications) == ("", [])
    assert_nothing_pending(channel)
    assert list(Message.objects.values_list("body", "send_token")) == [("only once", TOKEN)]


def test_a_send_id_stores_again_what_is_not_the_same_send(alice, bob) -> None:
    """The composer's text changed since its send (edited, then sent again), another room,
    another author: each is a message. Only the first keeps the id."""
    general, other = Room.objects.create(slug="general"), Room.objects.create(slug="other")
    services.post_message(general, alice, "first", token=TOKEN)
    services.post_message(general, alice, "first, edited", token=TOKEN)
    services.post_message(other, alice, "first", token=TOKEN)
    services.post_message(general, bob, "first", token=TOKEN)  # (ids are per author)
    assert list(Message.objects.values_list("author__username", "body", "send_token")) == [
        ("alice", "first", TOKEN),
        ("alice", "first, edited", None),
        ("alice", "first", None),
        ("bob", "first", TOKEN),
    ]


def test_sends_without_an_id_are_all_stored(alice) -> None:
    room = Room.objects.create(slug="general")
    for _ in range(2):
        services.post_message(room, alice, "same text", token="")
        services.submit_composer(room, alice, {"body": "same text"})
    assert Message.objects.filter(body="same text").count() == 4


def test_a_private_message_repeated_is_stored_once_and_confirmed_as_the_first(alice, bob):
    room = Room.objects.create(slug="general")
    _, first = services.submit_composer(room, alice, {"body": "/pm bob psst", "token": TOKEN})
    _, again = services.submit_composer(room, alice, {"body": "/pm bob psst", "token": TOKEN})
    assert first is not None and again is not None
    assert again.publications == []
    assert again.private_message == first.private_message == PrivateMessage.objects.get()
    services.send_private_message(alice, alice, "psst", token=TOKEN)  # another recipient
    assert PrivateMessage.objects.count() == 2


@concurrent_writers
@pytest.mark.django_db(transaction=True)
def test_the_same_send_through_two_sockets_at_once_is_stored_once(alice) -> None:
    """Both look for the id before either has committed; the second then waits on the
    first's insert, and the database's unique id per author refuses it."""
    room = Room.objects.create(slug="general")
    first_stored, first_may_commit = threading.Event(), threading.Event()
    posted: dict[str, services.Posted] = {}

    def hold(message: Message) -> None:
        Message.attachment.related.set_cached_value(message, None)
        first_stored.set()
        first_may_commit.wait(10)

    def send(name: str, **hook: Any) -> None:
        try:
            posted[name] = services.post_message(room, alice, "hi", token=TOKEN, **hook)
        finally:
            connection.close()

    first = threading.Thread(target=send, args=("first",), kwargs={"attach": hold})
    second = threading.Thread(target=send, args=("second",))
    first.start()
    assert first_stored.wait(10)
    second.start()
    second.join(0.5)
    assert second.is_alive()  # waiting on the first's uncommitted row
    first_may_commit.set()
    for thread in (first, second):
        thread.join(10)
    close_old_connections()

    assert posted["first"].publications and posted["second"].publications == []
    assert Message.objects.filter(body="hi").count() == 1


@pytest.mark.django_db(transaction=True)  # publications leave on commit
def test_logging_out_a_session_closes_its_sockets_wherever_they_are(listen) -> None:
    channel = listen(services.session_group("the-session-key"))
    services.close_session_sockets("the-session-key", 4401)
    group = services.session_group("the-session-key")
    assert receive(channel) == {"type": "socket.close", "code": 4401, "group": group}


def test_session_group_names_do_not_reveal_the_session_key() -> None:
    group = services.session_group("the-session-key")
    assert "the-session-key" not in group
    assert group != services.session_group("another-key")


# Membership ------------------------------------------------------------------------------


def test_only_the_owner_invites_and_removes(alice, bob, carol) -> None:
    room = Room.objects.create(slug="secret", owner=alice, visibility=Room.Visibility.PRIVATE)
    with pytest.raises(PermissionError):
        services.invite(room, bob, carol)
    services.invite(room, alice, bob)
    assert list(room.members.all()) == [bob]
    with pytest.raises(PermissionError):
        services.remove_member(room, carol, bob)
    assert list(room.members.all()) == [bob]


@pytest.mark.django_db(transaction=True)  # the access check leaves on commit
def test_removing_a_member_asks_their_open_sockets_to_check_access(alice, bob, listen) -> None:
    room = Room.objects.create(slug="secret", owner=alice, visibility=Room.Visibility.PRIVATE)
    room.members.add(bob)
    bobs_sockets = listen(services.user_group(bob.pk))

    services.remove_member(room, alice, bob)

    assert not services.can_enter(room, bob)
    assert receive(bobs_sockets) == {"type": "access.check", "group": services.user_group(bob.pk)}


# Flood control ---------------------------------------------------------------------------


def test_rate_limiter_allows_a_burst_then_refuses() -> None:
    limiter = RateLimiter(burst=3, per_second=0)
    assert [limiter.allow(1) for _ in range(4)] == [True, True, True, False]


def test_rate_limiter_buckets_are_per_user() -> None:
    limiter = RateLimiter(burst=1, per_second=0)
    assert limiter.allow(1) and limiter.allow(2)
    assert not limiter.allow(1)


def test_rate_limiter_refills_at_its_sustained_rate() -> None:
    # A rate so high that any time at all between calls refills a token.
    limiter = RateLimiter(burst=1, per_second=1e12)
    assert all(limiter.allow(1) for _ in range(20))


def test_rate_limiter_reset_refills_everyone() -> None:
    limiter = RateLimiter(burst=1, per_second=0)
    limiter.allow(1)
    limiter.reset()
    assert limiter.allow(1)


def test_the_shared_rate_limiter_is_configured_from_settings(settings) -> None:
    assert services.rate_limiter.burst == settings.CHAT_RATE_BURST == 10
    assert services.rate_limiter.per_second == settings.CHAT_RATE_PER_SECOND
