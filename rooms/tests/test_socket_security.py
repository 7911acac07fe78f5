"""What the room socket does with hostile or broken input.

Each refusal is checked three ways: the exact answer (an error in the composer, or a
close code), nothing stored, and nothing sent to anyone else in the room.
"""

import json

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from rooms import services
from rooms.consumers import MAX_FRAME_BYTES
from rooms.models import Connection, Message, PrivateMessage, Room
from rooms.tests import fragments

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async

EMPTY = "Write something first: an empty message was not sent."
TOO_LONG = "That message is too long: the limit is 4,000 characters (it has 4001)."
NOT_JSON = "That message could not be read (it was not JSON)."
NOT_OBJECT = "That message could not be read (expected a JSON object)."
NOT_TEXT = "That message could not be read (“body” must be text)."
NO_BODY = "That message had no text (the “body” field is missing)."
TOO_FAST = "You are sending messages too fast. Wait a moment, then send again."


@pytest.fixture
async def pair(gather, alice, bob, lobby):
    """alice and bob in the lobby, nothing pending on either socket."""
    return await gather("lobby", alice, bob)


async def stored() -> tuple[int, int]:
    return await db(Message.objects.count)(), await db(PrivateMessage.objects.count)()


def frame(body: object) -> str:
    return json.dumps({"body": body, "HEADERS": {"HX-Request": "true"}})


# Bad frames: an error in the sender's composer, nothing else ----------------------------


@pytest.mark.parametrize(
    ("text", "error"),
    [
        pytest.param(frame(""), EMPTY, id="empty"),
        pytest.param(frame("   \n\t "), EMPTY, id="whitespace-only"),
        pytest.param(frame("x" * 4001), TOO_LONG, id="over-4000"),
        pytest.param("hello", NOT_JSON, id="not-json"),
        pytest.param("", NOT_JSON, id="empty-frame"),
        pytest.param('{"body": "unterminated', NOT_JSON, id="truncated-json"),
        pytest.param("[1]", NOT_OBJECT, id="json-array"),
        pytest.param('"x"', NOT_OBJECT, id="json-string"),
        pytest.param("3", NOT_OBJECT, id="json-number"),
        pytest.param("null", NOT_OBJECT, id="json-null"),
        pytest.param('{"body": 5}', NOT_TEXT, id="body-number"),
        pytest.param('{"body": ["a"]}', NOT_TEXT, id="body-list"),
        pytest.param('{"body": {"text": "a"}}', NOT_TEXT, id="body-object"),
        pytest.param('{"body": false}', NOT_TEXT, id="body-bool"),
        pytest.param('{"body": null}', NO_BODY, id="body-null"),
        pytest.param('{"message": "hi"}', NO_BODY, id="body-missing"),
        pytest.param(frame("a\x00b"), "Null characters are not allowed.", id="nul-character"),
    ],
)
async def test_a_bad_frame_gets_an_error_in_the_composer_and_nothing_else(pair, text, error):
    alice_socket, bob_socket = pair

    await alice_socket.send_text(text)

    reply = await alice_socket.receive()
    assert fragments.is_composer(reply)
    assert fragments.composer_errors(reply) == [error]
    assert await stored() == (0, 0)
    await bob_socket.assert_quiet()
    # The socket is still open and usable.
    await alice_socket.send("fine now")
    await alice_socket.receive_sent()


async def test_deeply_nested_json_is_refused_without_crashing_the_socket(pair):
    alice_socket, bob_socket = pair

    await alice_socket.send_text("[" * 20_000 + "]" * 20_000)

    reply = await alice_socket.receive()
    assert fragments.composer_errors(reply) == [
        "That message could not be read (it was nested too deeply)."
    ]
    assert await stored() == (0, 0)
    await bob_socket.assert_quiet()


async def test_a_body_with_an_unpaired_surrogate_is_refused_without_crashing(pair):
    alice_socket, bob_socket = pair

    await alice_socket.send_text('{"body": "half a pair: \\ud83d"}')

    reply = await alice_socket.receive()
    assert fragments.composer_errors(reply) == [
        "That message could not be read (it was not valid text)."
    ]
    assert await stored() == (0, 0)
    await bob_socket.assert_quiet()


async def test_a_too_long_message_is_kept_in_the_composer_escaped(pair):
    alice_socket, _ = pair
    text = '"><img src=x onerror=alert(1)>' + "x" * 4000

    await alice_socket.send(text)

    reply = await alice_socket.receive()
    assert fragments.composer_errors(reply) == [
        "That message is too long: the limit is 4,000 characters (it has 4030)."
    ]
    assert fragments.composer_value(reply) == text
    assert "<img" not in reply
    assert fragments.parse(reply).find_all("img") == []


# Frames that close the socket -----------------------------------------------------------


async def test_a_binary_frame_closes_the_socket_with_1003(pair):
    alice_socket, bob_socket = pair

    await alice_socket.send_bytes(json.dumps({"body": "hi"}).encode())

    assert await alice_socket.receive_close() == 1003
    assert await stored() == (0, 0)
    await bob_socket.assert_quiet()


async def test_a_frame_over_64_kib_closes_the_socket_with_1009(pair):
    alice_socket, bob_socket = pair

    await alice_socket.send_text(frame("x" * MAX_FRAME_BYTES))

    assert await alice_socket.receive_close() == 1009
    assert await stored() == (0, 0)
    await bob_socket.assert_quiet()


async def test_a_frame_of_exactly_64_kib_is_read_and_refused_as_too_long(pair):
    alice_socket, _ = pair
    envelope = len(frame(""))
    text = frame("x" * (MAX_FRAME_BYTES - envelope))
    assert len(text) == MAX_FRAME_BYTES

    await alice_socket.send_text(text)

    reply = await alice_socket.receive()
    assert fragments.composer_errors(reply)[0].startswith("That message is too long")


# Private messages -----------------------------------------------------------------------


async def test_a_pm_to_an_unknown_user_stores_nothing_and_tells_only_the_sender(pair):
    alice_socket, bob_socket = pair

    await alice_socket.send("/pm <img src=x> hi")

    reply = await alice_socket.receive()
    assert fragments.composer_errors(reply) == [
        "There is no user named “<img”: the private message was not sent."
    ]
    assert "<img" not in reply
    assert await stored() == (0, 0)
    await bob_socket.assert_quiet()


# Rooms one may not enter ----------------------------------------------------------------


@pytest.mark.parametrize("slug", ["nowhere", "Lobby", "bad_slug", "-x", "x" * 51, "a.b"])
async def test_a_socket_to_an_unknown_or_invalid_room_is_closed_with_4404(
    connect, alice, lobby, slug
):
    socket = await connect(alice, slug)
    assert socket.accepted
    assert await socket.receive_close() == 4404
    assert [slug async for slug in Room.objects.values_list("slug", flat=True)] == ["lobby"]


@pytest.fixture
def staff(make_user):
    return make_user("sam", is_staff=True)


@pytest.mark.parametrize(("slug", "member_names"), [("secret", ["alice", "bob"]), ("ops", ["sam"])])
async def test_a_forbidden_room_is_closed_to_outsiders_everywhere_and_tells_its_members_nothing(
    gather, connect, login, alice, bob, carol, staff, secret, ops, slug, member_names
):
    users = {"alice": alice, "bob": bob, "sam": staff}
    members = await gather(slug, *(users[name] for name in member_names))
    carol_client = await sync_to_async(login)(carol)

    socket = await connect(carol, slug, client=carol_client)
    assert await socket.receive_close() == 4404
    page = await sync_to_async(carol_client.get)(f"/rooms/{slug}/")
    assert page.status_code == 404
    post = await sync_to_async(carol_client.post)(f"/rooms/{slug}/messages/", {"body": "hi"})
    assert post.status_code == 404

    assert await stored() == (0, 0)
    assert not await db(Connection.objects.filter(user=carol).exists)()
    for member in members:
        await member.assert_quiet()


@pytest.mark.parametrize(
    ("user", "slug", "code"), [(None, "lobby", 4401), ("alice", "nowhere", 4404)]
)
async def test_a_frame_racing_a_refused_handshake_is_ignored(
    connect, alice, lobby, user, slug, code
):
    # Daphne delivers frames until the client's close comes back, and htmx flushes what
    # it queued while offline as soon as a socket opens: such a frame must go nowhere.
    socket = await connect(alice if user else None, slug)
    assert await socket.receive_close() == code

    await socket.send("queued by htmx while offline")
    # In no group, so no sentinel can reach it: what it sent is known once it has ended.
    await socket.assert_nothing_more()  # (and re-raises whatever the consumer raised)

    assert await stored() == (0, 0)


async def test_a_member_removed_while_connected_is_closed_with_4403_on_their_next_send(
    gather, alice, bob, secret
):
    alice_socket, bob_socket = await gather("secret", alice, bob)
    # Removed behind the socket's back, so that no access check reaches it (a bulk
    # delete sends no signal): the send itself is authorized against the rows.
    await db(Room.members.through.objects.filter(room=secret, user=bob).delete)()

    await bob_socket.send("am I still here?")

    assert await bob_socket.receive_close() == 4403
    assert await stored() == (0, 0)
    await alice_socket.assert_quiet()


async def test_removing_a_member_closes_their_socket_in_that_room_at_once(
    gather, alice, bob, secret
):
    alice_socket, bob_socket = await gather("secret", alice, bob)
    await db(Room.objects.create)(slug="lobby")
    (bob_in_lobby,) = await gather("lobby", bob)

    await db(services.remove_member)(secret, alice, bob)

    assert await bob_socket.receive_close() == 4403
    await bob_in_lobby.assert_quiet()  # other rooms are unaffected
    await bob_socket.disconnect(4403)
    await alice_socket.expect_presence("bob", "left")


# Flooding -------------------------------------------------------------------------------


async def test_a_burst_of_ten_is_accepted_and_the_eleventh_is_refused_as_too_fast(
    pair, monkeypatch
):
    alice_socket, bob_socket = pair
    # No refill during the test, so the outcome does not depend on the machine's speed.
    monkeypatch.setattr(services.rate_limiter, "per_second", 0)

    for i in range(10):
        await alice_socket.send(f"message {i}")
        await alice_socket.receive_sent()
        assert f"message {i}" in await bob_socket.receive()

    await alice_socket.send("one too many")

    reply = await alice_socket.receive()
    assert fragments.composer_errors(reply) == [TOO_FAST]
    assert fragments.composer_value(reply) == "one too many"
    assert await stored() == (10, 0)
    await bob_socket.assert_quiet()


async def test_the_rate_limit_is_per_user(pair, monkeypatch):
    alice_socket, bob_socket = pair
    monkeypatch.setattr(services.rate_limiter, "burst", 1)
    monkeypatch.setattr(services.rate_limiter, "per_second", 0)

    await alice_socket.send("mine")
    await alice_socket.receive_sent()
    await bob_socket.receive()
    await alice_socket.send("mine again")
    assert fragments.composer_errors(await alice_socket.receive()) == [TOO_FAST]

    await bob_socket.send("and mine")

    await bob_socket.receive_sent()


# Escaping -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '<div id="online-users" hx-swap-oob="true">x</div>',
        "<img src=x onerror=alert(1)>",
        "<script>alert(1)</script>",
        '</p></article><div id="composer" hx-swap-oob="true">',
        "{{ request }} {% csrf_token %}",
    ],
)
async def test_user_text_is_pushed_escaped_and_cannot_swap_anything(pair, text):
    alice_socket, bob_socket = pair

    await alice_socket.send(text)

    pushed = await bob_socket.receive()
    assert '<div id="online-users"' not in pushed
    assert "<img" not in pushed and "<script" not in pushed
    document = fragments.parse(pushed)
    # One element to swap, the log; and inside it, the text exactly as typed.
    assert [(e.tag, e.id) for e in document.top_level] == [("div", "chat-live")]
    message_id = fragments.messages_in(pushed)[0].attrs["data-message-id"]
    assert [e.id for e in document.iter() if e.id] == [
        "chat-live",
        f"message-{message_id}",
        f"reactions-{message_id}",
        f"message-panel-{message_id}",
    ]
    assert fragments.messages_in(pushed)[0].one(class_="message-body").text == " ".join(
        text.split()
    )


async def test_private_message_text_is_escaped_too(pair):
    alice_socket, bob_socket = pair
    await alice_socket.send("/pm bob <img src=x onerror=alert(1)>")
    pushed = await bob_socket.receive()
    assert "<img" not in pushed
    assert "&lt;img src=x onerror=alert(1)&gt;" in pushed
