"""The channel layer as the transport uses it, the embedded default's layer, and Redis'.

`channel_layer()` is the configured layer, typed by what realtime/ calls on it
(`ChannelLayer`). `HubInMemoryChannelLayer` is the embedded default's: channels' in-memory
layer, sized for a hub. `HubRedisPubSubChannelLayer` is channels-redis' pub/sub layer,
subscribing many groups in one command. `JobsRedisChannelLayer` is channels-redis' core
layer for jobs that wait in Redis for one worker (the thumbnails'), its reads outlasting
its blocking pops.

Each process receives every event through one channel (realtime/hub.py). The in-memory
layer caps every channel at 100 queued messages and, when one is full, drops what
`group_send` sends to it without a word: 200 messages sent at once to 200 rooms reached
100. Here the hub's channel holds HUB_CAPACITY, and a message the layer drops anyway
(a full channel, or one left unread past the expiry, which also takes the channel out
of every group) counts as a layer failure: the watchdog then has every socket reconnect
and catch up (realtime/sockets.py), so a drop costs a resync, never a silent gap.
"""

import asyncio
import time
from typing import Any, Protocol, cast

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer, RedisSingleShardConnection
from channels_redis.utils import decode_hosts
from django.core.exceptions import ImproperlyConfigured

from realtime import upstream

HUB_CAPACITY = 100_000
HUB_PREFIX = "fanout."


class ChannelLayer(Protocol):
    """What realtime/ calls on a channel layer. Channels' in-memory layer and channels-redis'
    layers all have it; channels' BaseChannelLayer (as typeshed declares it) lacks the
    `prefix` of `new_channel`, which every one of them takes."""

    async def new_channel(self, prefix: str = ...) -> str: ...
    async def send(self, channel: str, message: dict[str, Any]) -> None: ...
    async def receive(self, channel: str) -> dict[str, Any]: ...
    async def group_add(self, group: str, channel: str) -> None: ...
    async def group_discard(self, group: str, channel: str) -> None: ...
    async def group_send(self, group: str, message: dict[str, Any]) -> None: ...


def channel_layer() -> ChannelLayer:
    """The default channel layer (CHANNEL_LAYERS), looked up on each call: tests swap it."""
    layer = get_channel_layer()
    if layer is None:  # channels returns None when CHANNEL_LAYERS names no "default"
        raise ImproperlyConfigured("CHANNEL_LAYERS has no 'default' layer: the chat needs one")
    # The layers we configure are ChannelLayers (see the class); channels' base class is not.
    return cast(ChannelLayer, layer)


class HubInMemoryChannelLayer(InMemoryChannelLayer):
    def __init__(self, hub_capacity: int = HUB_CAPACITY, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hub_capacity = hub_capacity
        # Expiry is counted in seconds (a message's minute, a membership's day): checked
        # at most this often, and never less often than four times an expiry.
        self.clean_every = min(1.0, self.expiry / 4, self.group_expiry / 4)
        self._next_clean = 0.0

    # InMemoryChannelLayer's private hook (channels/layers.py), which typeshed's stub omits.
    def _clean_expired(self) -> None:
        # Upstream runs it on every receive and group_send, and it walks every channel and
        # every member of every group: with a group per user and per session, O(N) for N
        # sockets, several times per message (1.7% of the event loop's samples at N =
        # 100 under py-spy: bench/RESULTS.md, "Issue 16: CPU per delivery").
        now = time.monotonic()
        if now < self._next_clean:
            return
        self._next_clean = now + self.clean_every
        super()._clean_expired()  # type: ignore[misc]  # in channels, not the stub

    def get_capacity(self, channel: str) -> int:
        return self.hub_capacity if channel.startswith(HUB_PREFIX) else self.capacity

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        try:
            await super().send(channel, message)
        except ChannelFull as error:
            from realtime import sockets  # (not at the top: sockets imports this module)

            sockets.layer_health.failed(error)
            raise

    # InMemoryChannelLayer's private hook (channels/layers.py), which typeshed's stub omits.
    def _remove_from_groups(self, channel: str) -> None:
        # Called when a message expired unread: it is lost, and so are the channel's groups.
        from realtime import sockets

        sockets.layer_health.failed(RuntimeError(f"a message to {channel} expired unread"))
        super()._remove_from_groups(channel)  # type: ignore[misc]  # in channels, not the stub


# What HubRedisPubSubChannelLayer was written and tested against (realtime/upstream.py).
REDIS_TESTED_VERSIONS = {"channels-redis": "4.3.0"}


class HubRedisPubSubChannelLayer(RedisPubSubChannelLayer):  # type: ignore[misc]  # (untyped upstream)
    """channels-redis' pub/sub layer, whose shards subscribe in batches (`BatchedShard`).

    Every socket joins groups of its own (its user's, its session's), and each group is a
    Redis SUBSCRIBE. Upstream sends one per group under the shard's lock, which its
    publishes also hold across a round trip: in a connect storm the subscriptions queue
    behind each other one event-loop turn apiece, and a socket waited 0.8 s on average to
    join its groups (1,000 connects, against 6 ms on the in-memory layer; bench/RESULTS.md).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        upstream.require_tested(
            "realtime/layers.py HubRedisPubSubChannelLayer", REDIS_TESTED_VERSIONS
        )
        super().__init__(*args, **kwargs)

    def _get_layer(self) -> Any:
        # (Upstream makes a layer per event loop, with its shards, on the loop's first call;
        # their connections are opened later, on first use.)
        layer = super()._get_layer()
        if not all(isinstance(shard, BatchedShard) for shard in layer._shards):
            layer._shards = [BatchedShard(shard.host, layer) for shard in layer._shards]
        return layer


class JobsRedisChannelLayer(RedisChannelLayer):  # type: ignore[misc]  # (untyped upstream)
    """channels-redis' core layer, whose socket reads wait longer than its blocking pops.

    A worker's `receive` is a BZPOPMIN that Redis answers after `brpop_timeout` (5 s) when
    no job comes, and redis-py 8 gives up on any read after 5 s (its default socket
    timeout; it had none before). So a Redis that answers a moment late, on a busy
    machine, raised redis.TimeoutError out of `receive` and `runworker` exited, leaving
    every later image without a thumbnail. A host's own "socket_timeout" is kept.
    """

    READ_MARGIN_SECONDS = 10  # how late Redis may answer before it counts as gone

    def __init__(self, hosts: Any = None, **kwargs: Any) -> None:
        read_timeout = self.brpop_timeout + self.READ_MARGIN_SECONDS
        hosts = [{"socket_timeout": read_timeout, **host} for host in decode_hosts(hosts)]
        super().__init__(hosts, **kwargs)


class BatchedShard(RedisSingleShardConnection):  # type: ignore[misc]  # (untyped upstream)
    """A shard whose `subscribe` sends, in one SUBSCRIBE, every channel asked for while the
    previous one was being sent. As upstream's, it returns once the command is sent.

    Relies on RedisSingleShardConnection's `_lock`, `_subscribed_to`, `_pubsub`,
    `_ensure_redis` and `_ensure_receiver`, and on RedisPubSubChannelLayer's `_get_layer`
    and its loop layer's `_shards` (channels_redis/pubsub.py), as of REDIS_TESTED_VERSIONS.
    """

    def __init__(self, host: Any, channel_layer: Any) -> None:
        super().__init__(host, channel_layer)
        self._asked: dict[str, list[asyncio.Future[None]]] = {}
        self._sending: asyncio.Task[None] | None = None

    async def subscribe(self, channel: str) -> None:
        # (Always through the lock, even when already subscribed: an unsubscribe waiting
        # for it goes first, as upstream orders them.)
        future = asyncio.get_running_loop().create_future()
        self._asked.setdefault(channel, []).append(future)
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._send_subscriptions())
        await future

    async def _send_subscriptions(self) -> None:
        while self._asked:
            asked, self._asked = self._asked, {}
            try:
                async with self._lock:
                    new = [channel for channel in asked if channel not in self._subscribed_to]
                    if new:
                        self._ensure_redis()
                        self._ensure_receiver()
                        await self._pubsub.subscribe(*new)
                        self._subscribed_to.update(new)
            except Exception as error:
                for futures in asked.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(error)
                continue
            for futures in asked.values():
                for future in futures:
                    if not future.done():
                        future.set_result(None)
