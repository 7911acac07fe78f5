"""realtime/layers.py HubRedisPubSubChannelLayer, on a real Redis of this module's own."""

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from e2e import servers
from realtime.layers import HubRedisPubSubChannelLayer


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    try:
        servers.redis_server_binary()
    except FileNotFoundError as error:
        if servers.IN_CI:
            pytest.fail(f"{error} (required in CI)")
        pytest.skip(str(error))
    with servers.redis() as server:
        yield f"redis://127.0.0.1:{server.port}/0"


def subscribe_commands(url: str) -> int:
    """How many SUBSCRIBE commands the Redis at `url` has run."""
    stats = redis.Redis.from_url(url).info("commandstats")
    return int(stats.get("cmdstat_subscribe", {}).get("calls", 0))


@pytest.fixture
async def layer(redis_url: str) -> AsyncIterator[HubRedisPubSubChannelLayer]:
    layer = HubRedisPubSubChannelLayer(hosts=[redis_url])
    yield layer
    await layer.flush()


async def test_groups_joined_at_once_are_subscribed_in_a_few_commands_and_all_deliver(
    layer, redis_url
):
    channel = await layer.new_channel()
    before = subscribe_commands(redis_url)
    await asyncio.gather(*(layer.group_add(f"storm.{i}", channel) for i in range(500)))
    commands = subscribe_commands(redis_url) - before
    assert 1 <= commands <= 10, f"{commands} SUBSCRIBE commands for 500 groups"
    for i in (0, 137, 499):
        await layer.group_send(f"storm.{i}", {"type": "chat.event", "i": i})
        message = await asyncio.wait_for(layer.receive(channel), 5)
        assert message["i"] == i


async def test_a_group_left_and_joined_at_once_stays_subscribed(layer):
    """The last member leaving (an unsubscribe) while another joins (a subscribe): they
    are sent in that order, so the group still delivers to the one who joined."""
    leaving, joining = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("turnover", leaving)
    await asyncio.gather(
        layer.group_discard("turnover", leaving), layer.group_add("turnover", joining)
    )
    await layer.group_send("turnover", {"type": "chat.event", "text": "still here"})
    message = await asyncio.wait_for(layer.receive(joining), 5)
    assert message["text"] == "still here"


async def test_subscribing_on_a_redis_that_is_down_raises_for_everyone_asking():
    """(A new channel is a subscription too: each of these is refused, none hangs.)"""
    layer = HubRedisPubSubChannelLayer(hosts=["redis://127.0.0.1:1/0"])  # nothing listens
    results = await asyncio.wait_for(
        asyncio.gather(*(layer.new_channel() for _ in range(5)), return_exceptions=True), 10
    )
    assert all(isinstance(r, redis.ConnectionError) for r in results), results
    await layer.flush()
