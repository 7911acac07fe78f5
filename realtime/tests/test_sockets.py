"""The channel-layer watchdog: when a check means an outage, and the probe it uses."""

import asyncio

import pytest

from conftest import memory_layer
from realtime import sockets
from realtime.layers import channel_layer
from realtime.sockets import Backlogged, LayerProbe
from rooms.tests.test_services import LAYER_DOWN


class ClosedSocket:
    def __init__(self) -> None:
        self.codes: list[int | None] = []

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        self.codes.append(code)
        sockets.open_sockets.discard(self)


async def test_a_check_that_fails_is_an_outage_and_the_next_good_one_resyncs(settings) -> None:
    sockets.layer_health.healthy = True
    good_layers = settings.CHANNEL_LAYERS
    settings.CHANNEL_LAYERS = LAYER_DOWN
    await sockets.check_layer(timeout=2)
    assert not sockets.layer_health.healthy

    settings.CHANNEL_LAYERS = good_layers
    socket = ClosedSocket()
    sockets.open_sockets.add(socket)
    await sockets.check_layer()
    assert sockets.layer_health.healthy
    assert socket.codes == [1012]  # back: it reconnects and catches up
    await sockets.check_layer()
    assert socket.codes == [1012]  # and only once


async def test_a_slow_check_is_no_outage() -> None:
    # A connect storm can put this process's loop seconds behind: closing every socket
    # then would start a reconnect storm.
    sockets.layer_health.healthy = True
    socket = ClosedSocket()
    sockets.open_sockets.add(socket)
    await sockets.check_layer(timeout=0)
    assert sockets.layer_health.healthy
    await sockets.check_layer()
    assert socket.codes == []
    sockets.open_sockets.discard(socket)


async def test_the_probe_keeps_its_channel_through_a_timeout() -> None:
    # On the Redis pub/sub layer a cancelled receive unsubscribes the channel, and
    # subscribing again queues behind every connecting socket: a slow check must not
    # cost the next one its channel.
    probe = LayerProbe()
    await probe.ping()
    channel = probe._channel
    with pytest.raises(TimeoutError):
        await probe.ping(timeout=0)
    await probe.ping()  # reads the late probe first, then its own
    assert probe._channel == channel
    assert channel not in memory_layer().channels  # nothing left unread


async def test_a_probe_the_layer_took_but_this_process_has_not_read_back_is_a_backlog() -> None:
    probe = LayerProbe()
    await probe.ping()
    # Someone else reads the channel first: the probe was taken, and never comes back.
    thief = asyncio.ensure_future(channel_layer().receive(probe._channel))
    await asyncio.sleep(0)
    with pytest.raises(Backlogged):
        await probe.ping(timeout=0.2)
    assert (await thief)["type"] == "probe"
