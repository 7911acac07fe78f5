"""rooms/hub.py: one channel per process, a group member per process, not per socket;
events in order, held while a socket is busy, bursts joined into one frame."""

import asyncio
from typing import Any

import pytest
from django.test import RequestFactory

from conftest import memory_layer
from realtime import hub


class FakeSocket:
    def __init__(self) -> None:
        self.frames: list[str] = []
        self.events: list[list[dict[str, Any]]] = []

    async def deliver_html(self, events: list[dict[str, Any]], html: str) -> None:
        self.events.append(events)
        self.frames.append(html)


def event(html: str, seq: int | None = None) -> dict[str, Any]:
    return {"type": "hub.html", "html": html, "seq": seq}


async def test_a_room_event_reaches_every_socket_through_one_layer_member() -> None:
    layer = memory_layer()
    sockets = [FakeSocket() for _ in range(3)]
    for socket in sockets:
        await hub.join("fanout-test.1", socket)

    assert len(layer.groups["fanout-test.1"]) == 1  # one member for the process, not one per socket
    await hub.group_send("fanout-test.1", event("<p>1</p>"))
    await asyncio.sleep(0.05)
    assert [socket.frames for socket in sockets] == [["<p>1</p>"]] * 3

    for socket in sockets:
        await hub.leave("fanout-test.1", socket)
    assert "fanout-test.1" not in layer.groups  # the last socket out unsubscribes


async def test_events_keep_their_order_and_a_burst_goes_out_as_one_frame() -> None:
    layer = memory_layer()
    socket = FakeSocket()
    await hub.join("fanout-test.2", socket)
    channel = hub._here().channel.result()
    for i in range(5):  # queued before the fan-out gets to run: one burst
        await layer.send(channel, {**event(f"<p>{i}</p>", i), "group": "fanout-test.2"})
    await asyncio.sleep(0.05)

    assert "".join(socket.frames) == "".join(f"<p>{i}</p>" for i in range(5))
    assert len(socket.frames) < 5
    assert [e["seq"] for batch in socket.events for e in batch] == list(range(5))
    await hub.leave("fanout-test.2", socket)


async def test_a_held_socket_gets_its_events_on_release_in_order() -> None:
    busy, idle = FakeSocket(), FakeSocket()
    await hub.join("fanout-test.3", idle)
    hub.hold(busy)
    await hub.join("fanout-test.3", busy)
    await hub.group_send("fanout-test.3", event("<p>a</p>"))
    await asyncio.sleep(0.05)
    await hub.group_send("fanout-test.3", event("<p>b</p>"))
    await asyncio.sleep(0.05)

    assert busy.frames == []
    assert "".join(idle.frames) == "<p>a</p><p>b</p>"
    await hub.release(busy)
    assert "".join(busy.frames) == "<p>a</p><p>b</p>"

    await hub.group_send("fanout-test.3", event("<p>c</p>"))
    await asyncio.sleep(0.05)
    assert "".join(busy.frames) == "<p>a</p><p>b</p><p>c</p>"  # delivered at once again
    for socket in (busy, idle):
        await hub.leave("fanout-test.3", socket)


async def test_rooms_are_separate() -> None:
    here, there = FakeSocket(), FakeSocket()
    await hub.join("fanout-test.4", here)
    await hub.join("fanout-test.5", there)
    await hub.group_send("fanout-test.4", event("<p>4</p>"))
    await asyncio.sleep(0.05)

    assert here.frames == ["<p>4</p>"] and there.frames == []
    await hub.leave("fanout-test.4", here)
    await hub.leave("fanout-test.5", there)


async def test_a_socket_that_leaves_gets_nothing_more() -> None:
    staying, leaving = FakeSocket(), FakeSocket()
    await hub.join("fanout-test.6", staying)
    await hub.join("fanout-test.6", leaving)
    await hub.leave("fanout-test.6", leaving)
    await hub.group_send("fanout-test.6", event("<p>x</p>"))
    await asyncio.sleep(0.05)

    assert staying.frames == ["<p>x</p>"] and leaving.frames == []
    await hub.leave("fanout-test.6", staying)


async def test_a_burst_is_split_into_frames_daphne_can_send() -> None:
    layer = memory_layer()
    socket = FakeSocket()
    await hub.join("fanout-test.7", socket)
    channel = hub._here().channel.result()
    big = "x" * (hub.MAX_BATCH_CHARS // 3)
    for i in range(10):
        await layer.send(channel, {**event(big, i), "group": "fanout-test.7"})
    await asyncio.sleep(0.05)

    assert len(socket.frames) >= 4
    assert all(len(frame) <= hub.MAX_BATCH_CHARS for frame in socket.frames)
    assert [e["seq"] for batch in socket.events for e in batch] == list(range(10))
    await hub.leave("fanout-test.7", socket)


class ClosableSocket(FakeSocket):
    def __init__(self) -> None:
        super().__init__()
        self.closed: list[int] = []

    async def socket_close(self, event: dict[str, Any]) -> None:
        self.closed.append(event["code"])


async def test_one_channel_serves_every_group_and_other_events_reach_their_handler() -> None:
    layer = memory_layer()
    socket = ClosableSocket()
    await hub.join("fanout-test.room", socket)
    await hub.join("fanout-test.session", socket)
    channel = hub._here().channel.result()
    assert set(layer.groups["fanout-test.room"]) == {channel}
    assert set(layer.groups["fanout-test.session"]) == {channel}

    await hub.group_send("fanout-test.room", event("<p>hi</p>"))
    await hub.group_send("fanout-test.session", {"type": "socket.close", "code": 4401})
    await asyncio.sleep(0.05)
    assert socket.frames == ["<p>hi</p>"]
    assert socket.closed == [4401]
    for group in ("fanout-test.room", "fanout-test.session"):
        await hub.leave(group, socket)


# The hub cannot silently stop ---------------------------------------------------------


class ClosingSocket(FakeSocket):
    def __init__(self) -> None:
        super().__init__()
        self.closed_with: int | None = None

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        self.closed_with = code


def hub_layer(**config: Any) -> dict[str, Any]:
    """CHANNEL_LAYERS for the embedded default's layer with this CONFIG."""
    return {"default": {"BACKEND": "realtime.layers.HubInMemoryChannelLayer", "CONFIG": config}}


async def until(check: Any, timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def test_memberships_are_renewed_through_a_quiet_spell_longer_than_the_group_expiry(
    settings,
) -> None:
    settings.CHANNEL_LAYERS = hub_layer(group_expiry=1)
    early = FakeSocket()
    await hub.join("fanout-test.quiet", early)

    await asyncio.sleep(2.5)  # no event at all: the layer would have dropped the member

    late = FakeSocket()  # joins a group this process thinks it is in
    await hub.join("fanout-test.quiet", late)
    await hub.group_send("fanout-test.quiet", event("<p>after the weekend</p>"))
    await until(lambda: early.frames and late.frames)
    assert early.frames == late.frames == ["<p>after the weekend</p>"]


async def test_a_burst_to_many_rooms_at_once_reaches_every_room() -> None:
    rooms = [FakeSocket() for _ in range(300)]
    for number, socket in enumerate(rooms):
        await hub.join(f"fanout-test.many.{number}", socket)

    await asyncio.gather(
        *(hub.group_send(f"fanout-test.many.{n}", event(f"<p>{n}</p>")) for n in range(300))
    )

    await until(lambda: all(socket.frames for socket in rooms))
    assert [socket.frames for socket in rooms] == [[f"<p>{n}</p>"] for n in range(300)]


async def test_an_event_the_layer_drops_is_an_outage_that_resyncs(settings) -> None:
    from realtime import sockets

    settings.CHANNEL_LAYERS = hub_layer(hub_capacity=3)
    socket = ClosingSocket()
    await hub.join("fanout-test.full", socket)
    sockets.open_sockets.add(socket)
    channel = hub._here().channel.result()
    layer = memory_layer()

    # Sent at once, faster than the hub reads: its channel overflows, and channels'
    # group_send drops the rest without a word.
    await asyncio.gather(
        *(layer.group_send("fanout-test.full", event(f"<p>{n}</p>")) for n in range(10))
    )

    assert not sockets.layer_health.healthy
    await sockets.check_layer()  # the watchdog's next check
    assert socket.closed_with == 1012  # the page reconnects and catches up
    assert sockets.layer_health.healthy
    assert channel  # (the hub itself carries on)


@pytest.mark.django_db
async def test_a_fan_out_task_that_dies_is_reported_and_resyncs(settings) -> None:
    from realtime import sockets
    from realtime.views import healthz

    socket = ClosingSocket()
    await hub.join("fanout-test.crash", socket)
    sockets.open_sockets.add(socket)
    dying = hub._here()

    # An event no handler can read (say, from a process running other code) ends delivery.
    await hub.group_send("fanout-test.crash", {"type": "hub.html"})
    await until(lambda: not sockets.layer_health.healthy)

    assert all(task.done() for task in dying.tasks)
    response = await healthz(RequestFactory().get("/healthz"))
    assert response.status_code == 503
    assert b"channel layer unavailable: KeyError" in response.content

    await sockets.check_layer()
    assert socket.closed_with == 1012
    assert hub._here() is not dying  # the sockets come back to a new hub
