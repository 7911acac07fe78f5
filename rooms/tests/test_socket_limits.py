"""What one socket, and one user's sockets, may cost.

The consumer's part: a frame budget per socket (a flood is closed with 1008 before
anything is decoded or rendered for it) and a cap on each user's sockets in a process
(the next one is accepted, then closed with 1008). Through the whole ASGI stack, as in
test_consumers.py. The transport's part (frames queued in Daphne, bytes a client does not
read) is in realtime/tests/test_limits.py, and all of it against a real Daphne
in e2e/test_abuse.py.
"""

import pytest
from channels.db import database_sync_to_async

from realtime import sockets
from rooms import services
from rooms.models import Message, Room
from rooms.tests import fragments

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async

NOT_JSON = "That message could not be read (it was not JSON)."
TOO_FAST = "You are sending messages too fast. Wait a moment, then send again."


class Clock:
    """A clock the test moves by hand, so that no outcome depends on the machine's speed."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# The frame budget ------------------------------------------------------------------------


def test_a_frame_budget_allows_a_burst_then_its_sustained_rate() -> None:
    clock = Clock()
    budget = sockets.FrameBudget(burst=3, per_second=2, clock=clock)
    assert [budget.spend() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one frame's worth
    assert [budget.spend() for _ in range(2)] == [True, False]
    clock.now += 60  # a long pause refills the burst, no more
    assert [budget.spend() for _ in range(4)] == [True, True, True, False]


async def test_a_socket_past_its_frame_budget_is_closed_with_1008_without_a_render(
    gather, alice, bob, lobby, settings
):
    settings.CHAT_SOCKET_FRAME_BURST = 3
    settings.CHAT_SOCKET_FRAMES_PER_SECOND = 0  # no refill while the test runs
    alice_socket, bob_socket = await gather("lobby", alice, bob)

    for _ in range(3):  # within the budget: each frame is answered
        await alice_socket.send_text("not json")
        assert fragments.composer_errors(await alice_socket.receive()) == [NOT_JSON]
    await alice_socket.send_text("not json")
    await alice_socket.send("nor this")

    # The next thing the socket gets is the close: no composer for the refused frame.
    assert await alice_socket.receive_close() == 1008
    assert await db(Message.objects.count)() == 0
    # Only her socket: bob's is as it was (his budget is his own).
    await bob_socket.send("still here")
    await bob_socket.receive_sent()


async def test_a_flood_of_messages_renders_at_most_its_budget_of_rate_limit_errors(
    gather, alice, bob, lobby, settings, monkeypatch
):
    settings.CHAT_SOCKET_FRAME_BURST = 6
    settings.CHAT_SOCKET_FRAMES_PER_SECOND = 0
    monkeypatch.setattr(services.rate_limiter, "burst", 2)
    monkeypatch.setattr(services.rate_limiter, "per_second", 0)
    alice_socket, bob_socket = await gather("lobby", alice, bob)

    for n in range(50):
        await alice_socket.send(f"flood {n}")

    replies = []
    while (output := await alice_socket.receive_output())["type"] == "websocket.send":
        replies.append(output["text"])
    assert output == {"type": "websocket.close", "code": 1008}
    errors = [e for reply in replies for e in fragments.composer_errors(reply)]
    assert errors == [TOO_FAST] * 4  # 6 frames handled: 2 posted, 4 refused as too fast
    bodies = await db(lambda: list(Message.objects.values_list("body", flat=True)))()
    assert bodies == ["flood 0", "flood 1"]
    assert [fragments.messages_in(await bob_socket.receive()) != [] for _ in range(2)] == [
        True,
        True,
    ]


# Sockets per user -------------------------------------------------------------------------


async def served(socket) -> None:
    """The socket is open and its frames are handled: a frame that is not JSON is
    answered with the composer's error (presence lines that come first are skipped)."""
    await socket.send_text("not json")
    while not fragments.is_composer(html := await socket.receive()):
        pass
    assert fragments.composer_errors(html) == [NOT_JSON], html


async def shown(socket, body: str) -> None:
    """Read until a message with `body` is pushed to `socket`."""
    while not any(
        m.one(class_="message-body").text == body
        for m in fragments.messages_in(await socket.receive())
    ):
        pass


def test_user_sockets_are_counted_per_user_up_to_the_cap() -> None:
    registry = sockets.UserSockets()
    tabs = [object() for _ in range(3)]
    assert [registry.admit(tab, user_id=1, limit=2) for tab in tabs] == [True, True, False]
    assert registry.admit(object(), user_id=2, limit=2)  # someone else's count
    assert registry.admit(tabs[0], user_id=1, limit=2)  # admitted already: no second place
    assert registry.count(1) == 2
    registry.release(tabs[2])  # never admitted: nothing to free
    assert registry.count(1) == 2
    registry.release(tabs[0])
    registry.release(tabs[0])  # twice is once
    assert registry.count(1) == 1
    assert registry.admit(tabs[2], user_id=1, limit=2)


async def test_a_socket_past_the_users_cap_is_accepted_then_closed_with_1008(
    connect, login, alice, bob, lobby, settings
):
    settings.CHAT_MAX_SOCKETS_PER_USER = 2
    browser = await db(login)(alice)  # one browser, many tabs: one session
    first = await connect(alice, client=browser)
    second = await connect(alice, client=browser)
    third = await connect(alice, client=browser)

    # Accepted, so that htmx sees a close it does not retry (a refused handshake is 1006).
    assert third.accepted
    assert await third.receive_close() == 1008
    assert sockets.user_sockets.count(alice.pk) == 2
    # The two within the cap work, and other users are not affected.
    bob_socket = await connect(bob)
    for socket in (first, second, bob_socket):
        await served(socket)
    await first.send("from the first tab")
    for socket in (first, second, bob_socket):
        await shown(socket, "from the first tab")

    # A closed tab frees its place.
    await second.disconnect()
    assert sockets.user_sockets.count(alice.pk) == 1
    again = await connect(alice, client=browser)
    await served(again)


async def test_a_socket_refused_for_another_reason_frees_its_place(connect, alice, settings):
    settings.CHAT_MAX_SOCKETS_PER_USER = 1
    nowhere = await connect(alice, "no-such-room")
    assert await nowhere.receive_close() == 4404
    await nowhere.disconnect()
    assert sockets.user_sockets.count(alice.pk) == 0
    await db(Room.objects.create)(slug="lobby", owner=alice)
    await served(await connect(alice, "lobby"))
