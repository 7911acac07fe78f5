"""The negative tests' own helper, ChatSocket.assert_quiet (conftest.py): it must fail
when a stray frame is on its way, however late that frame comes."""

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async

import realtime
from realtime import hub, sockets
from rooms import services

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


def stray(text: str) -> dict[str, str]:
    return {"type": "hub.html", "html": f"<p>{text}</p>"}


def consumer_of(user: Any) -> Any:
    here: list[Any] = list(sockets.open_sockets)  # RoomConsumers, each with its user
    (consumer,) = [s for s in here if s.user.pk == user.pk]
    return consumer


async def test_a_quiet_socket_passes_and_so_do_the_others_in_its_groups(gather, alice, bob, lobby):
    alice_socket, bob_socket = await gather("lobby", alice, bob)

    await bob_socket.assert_quiet()

    # alice got the room's sentinel too, and read it: her next frame is the next event.
    await realtime.publish(services.room_group(lobby.pk), "<p>next</p>")
    assert await alice_socket.receive() == "<p>next</p>"
    assert await bob_socket.receive() == "<p>next</p>"


@pytest.mark.parametrize("through", ["room", "user", "session"])
async def test_a_stray_frame_sent_before_fails_it(gather, alice, bob, lobby, through):
    _, bob_socket = await gather("lobby", alice, bob)
    room, user, session = await bob_socket.groups()
    group = {"room": room, "user": user, "session": session}[through]

    await hub.group_send(group, stray("leaked"))

    with pytest.raises(AssertionError, match="leaked"):
        await bob_socket.assert_quiet()


async def test_a_stray_frame_that_comes_late_fails_it(gather, alice, bob, lobby):
    # The stray is held back, as the consumer holds group events while it handles a
    # frame, and comes only later: a time window would be over before it came.
    _, bob_socket = await gather("lobby", alice, bob)
    bobs_consumer = consumer_of(bob)
    hub.hold(bobs_consumer)
    await realtime.publish(services.room_group(lobby.pk), "<p>late</p>")
    loop = asyncio.get_running_loop()
    loop.call_later(0.5, lambda: asyncio.ensure_future(hub.release(bobs_consumer)))

    with pytest.raises(AssertionError, match="late"):
        await bob_socket.assert_quiet()


async def test_a_stray_close_fails_it(gather, alice, bob, lobby):
    _, bob_socket = await gather("lobby", alice, bob)
    _, user, _ = await bob_socket.groups()

    await hub.group_send(user, {"type": "socket.close", "code": 4401})

    with pytest.raises(AssertionError, match="expected a text frame"):
        await bob_socket.assert_quiet()


async def test_another_socket_in_the_group_with_a_stray_fails_it(gather, alice, bob, lobby):
    alice_socket, bob_socket = await gather("lobby", alice, bob)
    _, alices, _ = await alice_socket.groups()

    await hub.group_send(alices, stray("for alice"))

    with pytest.raises(AssertionError, match="for alice"):
        await bob_socket.assert_quiet()


async def test_a_refused_socket_that_answered_fails_assert_nothing_more(connect, alice, lobby):
    socket = await connect(alice, "nowhere")
    assert await socket.receive_close() == 4404
    # What the consumer would send if it answered the frame (it does not): the same
    # queue a reply would land in.
    await socket.communicator.output_queue.put({"type": "websocket.send", "text": "answer"})

    with pytest.raises(AssertionError, match="answer"):
        await socket.assert_nothing_more()
