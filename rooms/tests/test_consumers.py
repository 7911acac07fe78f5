"""The room socket, end to end through the ASGI stack: origin check, session, consumer,
services, templates and the in-memory channel layer, with a real database."""

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from realtime import sockets
from rooms import presence
from rooms.models import Connection, Message, PrivateMessage
from rooms.tests import fragments

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


async def stored() -> tuple[int, int]:
    return await db(Message.objects.count)(), await db(PrivateMessage.objects.count)()


# Messages ------------------------------------------------------------------------------


async def test_two_users_in_a_room_see_each_others_messages_as_html(gather, alice, bob, lobby):
    alice_socket, bob_socket = await gather("lobby", alice, bob)

    await alice_socket.send("hello bob")
    _, pushed = await alice_socket.receive_sent()
    message = await db(Message.objects.get)()
    assert fragments.is_message_fragment(pushed)
    assert f'id="message-{message.pk}"' in pushed
    article = fragments.messages_in(pushed)[0]
    assert article.attrs["data-author"] == "alice"
    assert article.one(class_="message-body").text == "hello bob"
    assert await bob_socket.receive() == pushed  # rendered once, the same HTML for everyone

    await bob_socket.send("hi alice")
    _, pushed_by_bob = await bob_socket.receive_sent()
    assert "hi alice" in pushed_by_bob
    assert await alice_socket.receive() == pushed_by_bob
    assert [m.body async for m in Message.objects.all()] == ["hello bob", "hi alice"]


async def test_the_senders_composer_is_reset_out_of_band(gather, alice, lobby):
    (alice_socket,) = await gather("lobby", alice)

    await alice_socket.send("hello")
    reply, pushed = await alice_socket.receive_frames(2)

    # The reply comes first (the broadcast is handled once the send is done), and is the
    # composer alone, empty and without errors, swapped in place of the page's by its id.
    assert reply.lstrip().startswith('<form id="composer"')
    assert fragments.is_composer(reply)
    assert fragments.composer_value(reply) == ""
    assert fragments.composer_errors(reply) == []
    assert fragments.is_message_fragment(pushed)


TOKEN = "0123456789abcdef" * 2


async def test_a_send_repeated_after_a_reconnect_is_stored_once_and_answered_as_sent(
    gather, connect, alice, bob, lobby
):
    """The answer to a send was lost (the socket dropped): the page still holds the text
    and its send id, and sends them again through its next socket."""
    alice_socket, bob_socket = await gather("lobby", alice, bob)
    await alice_socket.send("only once", token=TOKEN)
    composer, pushed = await alice_socket.receive_sent()
    assert fragments.composer_token(composer) == ""  # (the page makes the next one)
    assert await bob_socket.receive() == pushed
    alice_again = await connect(alice, "lobby")  # (already online: nothing announced)

    await alice_again.send("only once", token=TOKEN)

    reply = await alice_again.receive()
    assert fragments.is_composer(reply) and fragments.composer_value(reply) == ""
    assert fragments.composer_errors(reply) == []
    assert [m.body async for m in Message.objects.all()] == ["only once"]
    await bob_socket.assert_quiet()
    await alice_again.assert_quiet()


async def test_a_malformed_send_id_keeps_the_text_and_stores_nothing(gather, alice, lobby):
    (alice_socket,) = await gather("lobby", alice)
    await alice_socket.send("hello", token='"><img src=x hx-get="/x">')
    reply = await alice_socket.receive()
    assert fragments.composer_errors(reply) == [
        "This composer's send id is not valid: reload the page."
    ]
    assert fragments.composer_value(reply) == "hello"
    assert fragments.composer_token(reply) == '"><img src=x hx-get="/x">'  # (escaped)
    assert "<img" not in reply
    assert await stored() == (0, 0)


async def test_no_handler_pays_channels_connection_cleanup_hop(
    gather, alice, bob, lobby, monkeypatch
):
    """channels runs close_old_connections in the database thread before every handler;
    ours reach the database only through database_sync_to_async, which does it there
    itself, so the hop is skipped: on connect, on a frame, on a group event."""
    from channels.db import aclose_old_connections

    hops = []

    async def counted() -> None:
        hops.append(1)
        await aclose_old_connections()

    # (What channels' AsyncConsumer.dispatch calls, counted; it still runs.)
    monkeypatch.setattr("channels.consumer.aclose_old_connections", counted)
    alice_socket, bob_socket = await gather("lobby", alice, bob)
    await alice_socket.send("hello")
    await alice_socket.receive_sent()
    assert "hello" in await bob_socket.receive()
    assert hops == []


async def test_messages_stay_in_their_room(gather, connect, alice, bob, lobby, other_room):
    (alice_socket,) = await gather("lobby", alice)
    (bob_elsewhere,) = await gather("other", bob)

    await alice_socket.send("lobby only")
    await alice_socket.receive_sent()

    await bob_elsewhere.assert_quiet()


# Presence ------------------------------------------------------------------------------


async def test_joins_and_leaves_are_announced_with_the_online_list(
    gather, connect, alice, bob, lobby
):
    (alice_socket,) = await gather("lobby", alice)

    bob_socket = await connect(bob, "lobby")
    await bob_socket.expect_presence("bob", "joined")
    joined = fragments.presence_update(await alice_socket.expect_presence("bob", "joined"))
    assert joined.appended_usernames == ["bob"]
    assert joined.appended[0].id == f"online-user-{bob.pk}"
    assert joined.count == "2"

    await bob_socket.disconnect()
    left = fragments.presence_update(await alice_socket.expect_presence("bob", "left"))
    assert left.deleted == [f"online-user-{bob.pk}"]
    assert left.appended == []
    assert left.count == "1"
    assert await db(Connection.objects.filter(user=bob).exists)() is False


async def test_the_first_socket_hears_its_own_join(connect, alice, lobby):
    socket = await connect(alice, "lobby")
    update = fragments.presence_update(await socket.expect_presence("alice", "joined"))
    assert update.appended_usernames == ["alice"]
    assert update.count == "1"


async def test_a_user_with_two_tabs_stays_online_until_the_last_one_closes(
    gather, connect, alice, bob, lobby
):
    (bob_socket,) = await gather("lobby", bob)
    first_tab = await connect(alice, "lobby")
    await first_tab.expect_presence("alice", "joined")
    await bob_socket.expect_presence("alice", "joined")

    second_tab = await connect(alice, "lobby")
    await second_tab.ping()  # its handshake is complete: it would have joined by now
    await bob_socket.assert_quiet()  # no second "alice joined"

    await first_tab.disconnect()
    await bob_socket.assert_quiet()  # no "alice left" while a tab is open
    online = await db(presence.online_users)(lobby)
    assert [user.username for user in online] == ["alice", "bob"]

    await second_tab.disconnect()
    left = fragments.presence_update(await bob_socket.expect_presence("alice", "left"))
    assert left.count == "1"
    assert [user.username for user in await db(presence.online_users)(lobby)] == ["bob"]


async def test_a_socket_closed_by_the_server_still_leaves_the_room(
    gather, connect, alice, bob, lobby
):
    alice_socket, bob_socket = await gather("lobby", alice, bob)
    await alice_socket.send_bytes(b"\x00")
    assert await alice_socket.receive_close() == 1003
    await alice_socket.disconnect(1003)  # the browser's side of the close
    await bob_socket.expect_presence("alice", "left")


# Private messages ----------------------------------------------------------------------


async def test_a_private_message_reaches_only_the_recipient_everywhere_and_the_sender(
    gather, connect, alice, bob, carol, lobby, other_room
):
    alice_socket, bob_socket, carol_socket = await gather("lobby", alice, bob, carol)
    (bob_elsewhere,) = await gather("other", bob)

    await alice_socket.send("/pm bob meet at <noon>")

    _, for_alice = await alice_socket.receive_sent()
    pm = await db(PrivateMessage.objects.select_related("sender", "recipient").get)()
    assert (pm.sender, pm.recipient, pm.body) == (alice, bob, "meet at <noon>")
    for html in (for_alice, await bob_socket.receive(), await bob_elsewhere.receive()):
        # The same rendering for both; the recipient's copy is followed by what is theirs
        # alone (their unread count, a notification: test_user_channel.py).
        assert html.startswith(for_alice)
        (article,) = fragments.private_messages_in(html)
        assert article.id == f"pm-{pm.pk}"
        assert article.attrs["data-sender"] == "alice"
        assert article.attrs["data-recipient"] == "bob"
        assert article.one(class_="message-body").text == "meet at <noon>"
    # The sender's copy carries the "delivered" mark (shown to the sender by the page CSS).
    assert parse_delivered(for_alice) == "✓ delivered"
    await carol_socket.assert_quiet()
    assert await db(Message.objects.count)() == 0


def parse_delivered(html: str) -> str:
    return fragments.parse(html).one(class_="pm-delivered").text


async def test_a_private_message_to_an_unknown_user_is_refused_to_the_sender_only(
    gather, alice, bob, lobby
):
    alice_socket, bob_socket = await gather("lobby", alice, bob)

    await alice_socket.send("/pm nobody hello")

    reply = await alice_socket.receive()
    assert fragments.composer_errors(reply) == [
        "There is no user named “nobody”: the private message was not sent."
    ]
    assert fragments.composer_value(reply) == "/pm nobody hello"  # kept, to fix and resend
    assert await stored() == (0, 0)
    await bob_socket.assert_quiet()


# Access --------------------------------------------------------------------------------


async def test_an_anonymous_socket_is_closed_with_4401(gather, connect, alice, lobby):
    (alice_socket,) = await gather("lobby", alice)

    anonymous = await connect(None, "lobby")

    assert anonymous.accepted  # accepted then closed: htmx does not retry a 4401
    assert await anonymous.receive_close() == 4401
    await alice_socket.assert_quiet()
    assert await db(Connection.objects.count)() == 1


@pytest.mark.parametrize("origin", [b"https://evil.example", b"null", None])
async def test_a_socket_from_another_origin_is_refused(connect, alice, lobby, origin):
    socket = await connect(alice, "lobby", origin=origin)
    assert not socket.accepted
    assert await db(Connection.objects.count)() == 0


# Channel-layer outages ----------------------------------------------------------------


async def test_after_a_channel_layer_outage_every_socket_is_told_to_reconnect(
    gather, alice, bob, lobby
):
    # What the layer watchdog does when the layer comes back: close with 1012, which htmx
    # retries, and the reconnect (?after=) fetches what was missed.
    alice_socket, bob_socket = await gather("lobby", alice, bob)

    assert await sockets.close_all() == 2

    assert await alice_socket.receive_close() == 1012
    assert await bob_socket.receive_close() == 1012


# Logging out ---------------------------------------------------------------------------


async def test_logging_out_closes_that_sessions_sockets_with_4401(
    gather, connect, login, alice, bob, lobby
):
    (bob_socket,) = await gather("lobby", bob)
    alices_browser = await sync_to_async(login)(alice)
    socket = await connect(alice, "lobby", client=alices_browser)
    await socket.expect_presence("alice", "joined")
    await bob_socket.expect_presence("alice", "joined")
    other_device = await connect(alice, "lobby")  # another session of alice's
    await other_device.ping()

    response = await sync_to_async(alices_browser.post)("/accounts/logout/")

    assert response.status_code == 302
    assert await socket.receive_close() == 4401
    await other_device.assert_quiet()  # other sessions stay open
    await other_device.send("still here")
    await other_device.receive_sent()
