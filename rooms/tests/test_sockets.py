"""The channel-layer watchdog's judgement: when a failed check means an outage."""

import pytest
from channels.layers import get_channel_layer

from rooms.sockets import LayerHealth, LayerProbe


def test_an_error_is_an_outage_at_once_and_the_next_good_check_resyncs() -> None:
    health = LayerHealth()
    health.failed(ConnectionRefusedError("redis down"))
    assert not health.healthy
    assert health.passed() is True  # back: the sockets must catch up
    assert health.healthy
    assert health.passed() is False  # and only once


def test_a_slow_check_under_load_is_not_an_outage() -> None:
    health = LayerHealth()
    for _ in range(LayerHealth.TIMEOUTS_FOR_OUTAGE - 1):
        health.timed_out(TimeoutError())
    assert health.healthy
    assert health.passed() is False  # nothing was lost: no reconnect storm
    # A good check starts the count again.
    for _ in range(LayerHealth.TIMEOUTS_FOR_OUTAGE - 1):
        health.timed_out(TimeoutError())
    assert health.healthy


def test_a_layer_that_keeps_timing_out_is_down() -> None:
    health = LayerHealth()
    for _ in range(LayerHealth.TIMEOUTS_FOR_OUTAGE):
        health.timed_out(TimeoutError())
    assert not health.healthy
    assert health.passed() is True


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
    assert channel not in get_channel_layer().channels  # nothing left unread
