"""realtime/layers.py's Redis layers, on a real Redis of this module's own."""

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from channels_redis.core import RedisChannelLayer

from e2e import servers
from realtime.layers import HubRedisPubSubChannelLayer, JobsRedisChannelLayer


@pytest.fixture(scope="module")
def redis_server() -> Iterator[servers.RedisProcess]:
    try:
        servers.redis_server_binary()
    except FileNotFoundError as error:
        if servers.IN_CI:
            pytest.fail(f"{error} (required in CI)")
        pytest.skip(str(error))
    with servers.redis() as server:
        yield server


@pytest.fixture(scope="module")
def redis_url(redis_server: servers.RedisProcess) -> str:
    return redis_server.url


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


# Jobs: a worker's receive across a Redis that answers late ------------------------------


async def receive_across_a_stall(layer: Any, redis_server: servers.RedisProcess) -> Any:
    """A worker waits for a job; Redis stops for 2 s around the moment its empty poll is
    due to be answered (as on a busy machine); then a job is sent. Returns what the worker
    received."""
    waiting = asyncio.create_task(layer.receive("thumbnails"))
    await asyncio.sleep(layer.brpop_timeout - 0.5)  # its BZPOPMIN is blocked in Redis
    os.kill(redis_server.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(2)
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
    await layer.send("thumbnails", {"type": "thumbnail.make", "attachment": 7})
    try:
        return await asyncio.wait_for(waiting, 10)
    finally:
        await layer.flush()


async def test_a_workers_receive_outlasts_a_redis_that_answers_late(redis_server):
    layer = JobsRedisChannelLayer(hosts=[redis_server.url])
    message = await receive_across_a_stall(layer, redis_server)
    assert message == {"type": "thumbnail.make", "attachment": 7}


async def test_upstreams_receive_dies_on_that_stall(redis_server):
    """What the jobs layer is for: with redis-py 8's default read timeout (5 s) as long
    as the poll (5 s), the late answer is a TimeoutError out of `receive`, which ends
    `runworker`. (If redis-py stops timing reads out by default, this fails, and the
    jobs layer is no longer needed.)"""
    layer = RedisChannelLayer(hosts=[redis_server.url])
    with pytest.raises(redis.TimeoutError):
        await receive_across_a_stall(layer, redis_server)


def test_a_hosts_own_read_timeout_is_kept(redis_url):
    layer = JobsRedisChannelLayer(hosts=[redis_url, {"address": redis_url, "socket_timeout": 60}])
    assert [host.get("socket_timeout") for host in layer.hosts] == [15, 60]
    assert layer.hosts[0]["address"] == redis_url
