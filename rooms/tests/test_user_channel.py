"""The user's own socket on every page (/ws/me/, UserConsumer), live private messages,
the unread count of private messages, and typing in rooms: through the whole ASGI stack
with the in-memory layer and a real database, as test_consumers.py."""

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.management import CommandError, call_command
from django.utils import timezone

from conftest import HTMX_HEADERS
from rooms import services
from rooms.models import Message, PrivateMessage, Room
from rooms.tests import fragments

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async
User = get_user_model()
ME = "/ws/me/"


async def user_socket(connect: Any, user: Any, *, with_: str | None = None, **options: Any) -> Any:
    """The socket of a page that is no room's: the room list, or (`with_`) the page of
    the conversation with that person."""
    query = f"with={with_}" if with_ else ""
    return await connect(user, path=ME, query=query, **options)


def unread_of(html: str) -> str | None:
    """The count a frame sets in the top bar (#pm-unread's data-unread), if it sets one."""
    count = fragments.parse(html).by_id("pm-unread")
    return None if count is None else count.attr("data-unread")


def notifications_in(html: str) -> list[fragments.Element]:
    return fragments.parse(html).find_all(class_="notification")


def pm_composer(html: str) -> fragments.Element | None:
    tops = fragments.parse(html).top_level
    return tops[0] if len(tops) == 1 and tops[0].id == "pm-composer" else None


async def receive_until(socket: Any, text: str) -> str:
    """The frames a socket is sent, joined, up to the one that holds `text` (what comes
    together may come in one frame or several)."""
    seen = ""
    while text not in seen:
        seen += await socket.receive()
    return seen


async def send_typing(socket: Any) -> None:
    """What the room page sends as someone types (room.html#typing-signal)."""
    headers = {**HTMX_HEADERS, "HX-Trigger": "typing-signal", "HX-Target": "typing-signal"}
    await socket.send_text(json.dumps({"typing": "1", "HEADERS": headers}))


# The user socket --------------------------------------------------------------------------


async def test_a_user_socket_starts_with_the_unread_count(connect, alice, bob):
    await db(PrivateMessage.objects.create)(sender=bob, recipient=alice, body="one")
    await db(PrivateMessage.objects.create)(sender=bob, recipient=alice, body="two")
    await db(PrivateMessage.objects.create)(
        sender=bob, recipient=alice, body="read", read_at=timezone.now()
    )

    socket = await user_socket(connect, alice)

    assert unread_of(socket.settled) == "2"
    await socket.assert_quiet()


async def test_an_anonymous_user_socket_is_closed_with_4401(connect):
    anonymous = await connect(None, path=ME)
    assert anonymous.accepted  # accepted then closed: htmx does not retry a 4401
    assert await anonymous.receive_close() == 4401
    await anonymous.assert_nothing_more()


async def test_a_user_socket_closes_when_its_session_logs_out(connect, login, alice):
    browser = await sync_to_async(login)(alice)
    socket = await user_socket(connect, alice, client=browser)
    other_browser = await user_socket(connect, alice)

    response = await sync_to_async(browser.post)("/accounts/logout/")
    assert response.status_code == 302

    assert await socket.receive_close() == 4401
    await other_browser.assert_quiet()  # another session of hers: still signed in


async def test_a_user_socket_closes_when_its_session_is_deleted(connect, login, alice):
    browser = await sync_to_async(login)(alice)
    socket = await user_socket(connect, alice, client=browser)

    await db(Session.objects.filter(session_key=browser.session.session_key).delete)()

    assert await socket.receive_close() == 4401


async def test_a_user_socket_closes_when_its_user_is_deactivated(connect, alice, bob):
    alices = await user_socket(connect, alice)
    alices_conversation = await user_socket(connect, alice, with_="bob")
    bobs = await user_socket(connect, bob)

    alice.is_active = False
    await db(alice.save)()

    assert await alices.receive_close() == 4401
    assert await alices_conversation.receive_close() == 4401
    await bobs.assert_quiet()


async def test_a_conversation_with_nobody_is_refused_with_4404(connect, alice):
    socket = await user_socket(connect, alice, with_="nobody")
    assert await socket.receive_close() == 4404


@pytest.mark.parametrize(
    "frame, code",
    [({"text": json.dumps({"body": "hi"})}, 1003), ({"bytes": b"\x00"}, 1003)],
    ids=["text", "binary"],
)
async def test_a_page_without_a_composer_sends_nothing(connect, alice, frame, code):
    socket = await user_socket(connect, alice)
    await socket.communicator.send_input({"type": "websocket.receive", **frame})
    assert await socket.receive_close() == code


async def test_a_binary_or_oversized_frame_closes_a_conversation_socket(connect, alice, bob):
    binary = await user_socket(connect, alice, with_="bob")
    await binary.send_bytes(b"\x00")
    assert await binary.receive_close() == 1003

    oversized = await user_socket(connect, alice, with_="bob")
    await oversized.send("x" * (64 * 1024))
    assert await oversized.receive_close() == 1009
    assert await db(PrivateMessage.objects.count)() == 0


# Private messages reach every page --------------------------------------------------------


async def test_a_private_message_reaches_every_page_of_both_and_nobody_else(
    gather, connect, alice, bob, carol, lobby
):
    alice_in_lobby, bob_in_lobby, carol_in_lobby = await gather("lobby", alice, bob, carol)
    alices_rooms = await user_socket(connect, alice)  # the room list
    bobs_rooms = await user_socket(connect, bob)
    bobs_conversation = await user_socket(connect, bob, with_="alice")
    bob_with_carol = await user_socket(connect, bob, with_="carol")
    carols_rooms = await user_socket(connect, carol)

    await alice_in_lobby.send("/pm bob meet at <noon>")

    _, for_alice = await alice_in_lobby.receive_sent()
    pm = await db(PrivateMessage.objects.get)()
    assert await alices_rooms.receive() == for_alice
    (article,) = fragments.private_messages_in(for_alice)
    assert article.id == f"pm-{pm.pk}"
    assert article.one(class_="message-body").text == "meet at <noon>"
    # One wrapper for every kind of page: a room's log, or the pair's conversation.
    (wrapper,) = fragments.parse(for_alice).top_level
    pair = services.conversation_key(alice.pk, bob.pk)
    assert wrapper.attrs["hx-swap-oob"] == f"beforeend:#chat-live,#conversation-{pair}"
    assert "data-oob-optional" in wrapper.attrs
    for bobs in (bob_in_lobby, bobs_rooms, bobs_conversation, bob_with_carol):
        assert (await bobs.receive()).startswith(for_alice), bobs
    # bob's conversation page with alice was showing it: read there, and every page of
    # his hears that nothing is unread any more.
    for bobs in (bob_in_lobby, bobs_rooms, bobs_conversation, bob_with_carol):
        assert unread_of(await bobs.receive()) == "0"
    assert (await db(PrivateMessage.objects.get)()).read_at is not None
    await carol_in_lobby.assert_quiet()
    await carols_rooms.assert_quiet()
    for socket in (alice_in_lobby, alices_rooms, bob_in_lobby, bobs_rooms, bobs_conversation):
        await socket.assert_quiet()


async def test_the_unread_count_and_the_notification_reach_only_the_recipient(
    connect, alice, bob, carol
):
    alices = await user_socket(connect, alice)
    bobs = await user_socket(connect, bob)
    bob_elsewhere = await user_socket(connect, bob)
    carols = await user_socket(connect, carol)
    await db(PrivateMessage.objects.create)(sender=carol, recipient=bob, body="earlier")

    await db(services.send_private_message)(alice, bob, "are you there?")

    for_alice = await alices.receive()
    assert unread_of(for_alice) is None and notifications_in(for_alice) == []
    for socket in (bobs, bob_elsewhere):
        html = await socket.receive()
        assert unread_of(html) == "2"  # carol's and alice's
        (notification,) = notifications_in(html)
        assert notification.attrs["data-from"] == "alice"
        assert notification.one("a").attrs["href"] == "/messages/alice/"
        assert "are you there?" in notification.text
    await carols.assert_quiet()
    await alices.assert_quiet()
    await bobs.assert_quiet()
    assert await db(services.unread_private_messages)(bob.pk) == 2


async def test_a_message_to_oneself_is_no_news(connect, alice):
    alices = await user_socket(connect, alice)

    await db(services.send_private_message)(alice, alice, "note to self")

    html = await alices.receive()
    assert len(fragments.private_messages_in(html)) == 1
    assert unread_of(html) is None and notifications_in(html) == []
    await alices.assert_quiet()


# The conversation page ------------------------------------------------------------------


async def test_the_conversation_composer_sends_over_the_socket(connect, alice, bob):
    alices_conversation = await user_socket(connect, alice, with_="bob")
    bobs_conversation = await user_socket(connect, bob, with_="alice")

    await alices_conversation.send("hello <bob>")

    reply, pushed = await alices_conversation.receive_frames(2)
    composer = pm_composer(reply)
    assert composer is not None and composer.attrs["action"] == "/messages/bob/"
    assert fragments.composer_value(reply) == "" and fragments.composer_errors(reply) == []
    pm = await db(PrivateMessage.objects.select_related("sender", "recipient").get)()
    assert (pm.sender, pm.recipient, pm.body) == (alice, bob, "hello <bob>")
    assert fragments.private_messages_in(pushed)[0].id == f"pm-{pm.pk}"
    assert (await bobs_conversation.receive()).startswith(pushed)
    assert unread_of(await bobs_conversation.receive()) == "0"  # read where it arrived


async def test_a_conversation_message_sent_again_with_its_id_is_stored_once(connect, alice, bob):
    token = "f" * 32
    alices_conversation = await user_socket(connect, alice, with_="bob")
    await alices_conversation.send("once", token=token)
    reply, _ = await alices_conversation.receive_frames(2)
    assert fragments.composer_token(reply) == ""  # (the page makes the next one)
    alices_again = await user_socket(connect, alice, with_="bob")
    bobs = await user_socket(connect, bob)

    await alices_again.send("once", token=token)

    reply = await alices_again.receive()
    assert pm_composer(reply) is not None and fragments.composer_value(reply) == ""
    assert [pm.body async for pm in PrivateMessage.objects.all()] == ["once"]
    await bobs.assert_quiet()


@pytest.mark.parametrize(
    "body, error",
    [
        ("   ", "Write something first: an empty message was not sent."),
        ("x" * 4001, "That message is too long: the limit is 4,000 characters (it has 4001)."),
    ],
    ids=["empty", "too long"],
)
async def test_a_refused_conversation_message_keeps_the_text_and_says_why(
    connect, alice, bob, body, error
):
    alices_conversation = await user_socket(connect, alice, with_="bob")
    bobs = await user_socket(connect, bob)

    await alices_conversation.send(body)

    reply = await alices_conversation.receive()
    assert pm_composer(reply) is not None
    assert fragments.composer_errors(reply) == [error]
    assert await db(PrivateMessage.objects.count)() == 0
    await bobs.assert_quiet()


async def test_a_conversation_frame_that_is_not_json_is_answered_in_the_composer(
    connect, alice, bob
):
    socket = await user_socket(connect, alice, with_="bob")
    await socket.send_text("ping")
    reply = await socket.receive()
    assert pm_composer(reply) is not None
    assert fragments.composer_errors(reply) == ["That message could not be read (it was not JSON)."]


async def test_the_conversation_composer_is_rate_limited(connect, alice, bob, monkeypatch):
    monkeypatch.setattr(services.rate_limiter, "burst", 1)
    monkeypatch.setattr(services.rate_limiter, "per_second", 0)
    socket = await user_socket(connect, alice, with_="bob")

    await socket.send("first")
    await socket.receive_frames(2)
    await socket.send("second")

    reply = await socket.receive()
    assert fragments.composer_errors(reply) == [services.TOO_FAST]
    assert fragments.composer_value(reply) == "second"
    assert await db(PrivateMessage.objects.count)() == 1


async def test_a_conversation_with_someone_deactivated_since_refuses_to_send(connect, alice, bob):
    socket = await user_socket(connect, alice, with_="bob")
    await db(User.objects.filter(pk=bob.pk).update)(is_active=False)  # (no signal)

    await socket.send("anyone?")

    assert fragments.composer_errors(await socket.receive()) == [
        "bob can no longer receive private messages."
    ]
    assert await db(PrivateMessage.objects.count)() == 0


async def test_a_send_from_a_session_that_ended_silently_closes_with_4401(connect, alice, bob):
    socket = await user_socket(connect, alice, with_="bob")
    # A bulk update sends no signal: the send itself is refused.
    await db(User.objects.filter(pk=alice.pk).update)(is_active=False)

    await socket.send("one last word")

    assert await socket.receive_close() == 4401
    assert await db(PrivateMessage.objects.count)() == 0


async def test_only_messages_of_the_open_conversation_are_read_as_they_arrive(
    connect, alice, bob, carol
):
    bob_with_alice = await user_socket(connect, bob, with_="alice")

    await db(services.send_private_message)(carol, bob, "from carol")

    html = await bob_with_alice.receive()
    assert unread_of(html) == "1"  # shown, but not in this conversation: still unread
    await bob_with_alice.assert_quiet()
    assert await db(services.unread_private_messages)(bob.pk) == 1


# Unread private messages: counted and read ------------------------------------------------


def test_reading_a_conversation_marks_only_what_that_person_sent(
    alice, bob, carol, django_assert_num_queries
):
    PrivateMessage.objects.create(sender=bob, recipient=alice, body="1")
    PrivateMessage.objects.create(sender=bob, recipient=alice, body="2")
    PrivateMessage.objects.create(sender=carol, recipient=alice, body="3")
    PrivateMessage.objects.create(sender=alice, recipient=bob, body="4")

    with django_assert_num_queries(1):
        assert services.unread_private_messages(alice.pk) == 3
    assert services.read_private_messages(alice.pk, bob.pk) == 2
    assert services.unread_private_messages(alice.pk) == 1
    assert services.unread_private_messages(bob.pk) == 1
    assert services.read_private_messages(alice.pk, bob.pk) == 0


def test_the_top_bar_counts_unread_private_messages_and_the_conversation_reads_them(
    login, alice, bob
):
    PrivateMessage.objects.create(sender=bob, recipient=alice, body="1")
    PrivateMessage.objects.create(sender=bob, recipient=alice, body="2")
    client = login(alice)

    rooms = fragments.parse(client.get("/rooms/").content.decode())
    count = rooms.one_by_id("pm-unread")
    assert count.attrs["data-unread"] == "2" and count.text.split() == ["2", "unread"]
    # An older page of the conversation is not its newest: nothing read yet.
    pm = PrivateMessage.objects.last()
    assert pm is not None
    client.get(f"/messages/bob/{pm.pk}/")
    assert services.unread_private_messages(alice.pk) == 2

    conversation = fragments.parse(client.get("/messages/bob/").content.decode())
    count = conversation.one_by_id("pm-unread")
    assert count.attrs["data-unread"] == "0" and count.text == ""
    assert services.unread_private_messages(alice.pk) == 0


def test_every_signed_in_page_but_a_rooms_has_the_user_socket(login, alice, bob, lobby):
    client = login(alice)
    PrivateMessage.objects.create(sender=bob, recipient=alice, body="hi")
    for path, conversation in [
        ("/rooms/", None),
        ("/messages/", None),
        ("/messages/bob/", "bob"),
        ("/accounts/settings/", None),
    ]:
        document = fragments.parse(client.get(path).content.decode())
        (body,) = document.find_all("body")
        url = urlsplit(body.attrs["ws-connect"])
        assert url.path == "/ws/me/", path
        assert parse_qs(url.query).get("with") == ([conversation] if conversation else None)
        assert body.attrs["hx-ext"] == "ws,oob-optional"
        region = document.one_by_id("notifications")
        assert (region.attrs["role"], region.attrs["aria-live"]) == ("status", "polite")
    room = fragments.parse(client.get("/rooms/lobby/").content.decode())
    (socket,) = [element for element in room.iter() if "ws-connect" in element.attrs]
    assert socket.attr("ws-connect").startswith("/ws/rooms/lobby/?")  # its room's, alone
    assert room.by_id("notifications") is not None


def test_the_conversation_page_lives_and_hides_notifications_from_its_person(login, alice, bob):
    client = login(alice)
    document = fragments.parse(client.get("/messages/bob/").content.decode())
    pair = services.conversation_key(alice.pk, bob.pk)
    log = document.one_by_id("pm-log")
    assert document.one_by_id(f"conversation-{pair}") in log.iter()
    composer = document.one_by_id("pm-composer")
    assert "ws-send" in composer.attrs and composer.attrs["action"] == "/messages/bob/"
    (style,) = document.find_all("style")
    assert '.notification[data-from="bob"] { display: none; }' in style.text


# Typing ---------------------------------------------------------------------------------


async def test_typing_shows_on_the_rooms_pages_and_is_not_stored(gather, alice, bob, lobby):
    alice_socket, bob_socket = await gather("lobby", alice, bob)
    seq = (await db(Room.objects.get)(pk=lobby.pk)).last_seq

    await send_typing(alice_socket)

    html = await bob_socket.receive()
    assert await alice_socket.receive() == html  # one rendering; her page hides her own
    notice = fragments.parse(html).one(class_="typing-notice")
    assert notice.text == "alice is typing…"
    assert notice.attrs["data-author"] == "alice"
    # It replaces alice's line if there is one (deleted, then appended again), and lands in
    # a region that is not announced.
    tops = fragments.parse(html).top_level
    assert [t.attrs.get("hx-swap-oob") for t in tops] == ["delete", "beforeend:#typing"]
    assert tops[0].id == notice.id == f"typing-{alice.pk}"
    assert (await db(Room.objects.get)(pk=lobby.pk)).last_seq == seq  # no sequence number
    assert await db(Message.objects.count)() == 0


async def test_typing_is_sent_at_most_once_per_interval(gather, alice, bob, lobby):
    alice_socket, bob_socket = await gather("lobby", alice, bob)

    await send_typing(alice_socket)
    await send_typing(alice_socket)  # within 3 s of the first
    await alice_socket.send("sent")  # handled after both: its push comes after theirs

    seen = await receive_until(bob_socket, "message-body")
    assert seen.count("alice is typing…") == 1
    assert (await receive_until(alice_socket, "message-body")).count("alice is typing…") == 1
    await bob_socket.assert_quiet()

    await send_typing(bob_socket)  # someone else's interval is their own
    assert "bob is typing…" in await receive_until(alice_socket, "bob is typing…")


@pytest.mark.parametrize("limit, shown", [(2, True), (1, False)])
async def test_typing_is_dropped_in_a_room_with_more_people_online_than_the_limit(
    gather, alice, bob, lobby, settings, limit, shown
):
    settings.CHAT_TYPING_MAX_ONLINE = limit  # two are online
    alice_socket, bob_socket = await gather("lobby", alice, bob)

    await send_typing(alice_socket)
    await alice_socket.send("sent")

    seen = await receive_until(bob_socket, "message-body")
    assert ("alice is typing…" in seen) is shown
    await receive_until(alice_socket, "message-body")
    await bob_socket.assert_quiet()


# manage.py say ----------------------------------------------------------------------------


async def test_say_posts_into_the_room_live_as_a_user(gather, alice, bob, lobby, capsys):
    alice_socket, bob_socket = await gather("lobby", alice, bob)

    await sync_to_async(call_command)("say", "lobby", "hello <all>", "--as", "bob")

    html = await alice_socket.receive()
    assert await bob_socket.receive() == html
    (article,) = fragments.messages_in(html)
    assert article.attrs["data-author"] == "bob"
    assert article.one(class_="message-body").text == "hello <all>"
    message = await db(Message.objects.get)()
    assert (message.author_id, message.room_id, message.body) == (bob.pk, lobby.pk, "hello <all>")
    assert f"Posted message {message.pk} in #lobby as bob" in capsys.readouterr().out


async def test_say_posts_as_a_system_user_by_default(gather, alice, lobby):
    (alice_socket,) = await gather("lobby", alice)

    await sync_to_async(call_command)("say", "lobby", "maintenance at noon")
    await sync_to_async(call_command)("say", "lobby", "and again")

    first, second = await alice_socket.receive(), await alice_socket.receive()
    assert [fragments.messages_in(h)[0].attrs["data-author"] for h in (first, second)] == [
        "system",
        "system",
    ]
    system = await db(User.objects.get)(username="system")
    assert not system.is_active and not system.has_usable_password()
    assert await db(User.objects.filter(username="system").count)() == 1


def test_say_refuses_an_unknown_room_or_user(alice, lobby, secret):
    with pytest.raises(CommandError, match="No room named #nowhere"):
        call_command("say", "nowhere", "hi")
    with pytest.raises(CommandError, match="No user named “nobody”"):
        call_command("say", "lobby", "hi", "--as", "nobody")
    with pytest.raises(CommandError, match="carol may not enter #secret"):
        User.objects.create_user("carol")
        call_command("say", "secret", "hi", "--as", "carol")
    with pytest.raises(CommandError, match="empty"):
        call_command("say", "lobby", "   ")
    assert not Message.objects.exists()


def test_say_will_not_speak_as_a_person_named_system(make_user, lobby):
    make_user("system")
    with pytest.raises(CommandError, match="--as"):
        call_command("say", "lobby", "hi")
    assert not Message.objects.exists()
