"""The channel layer as the transport uses it, and the embedded default's layer.

`channel_layer()` is the configured layer, typed by what realtime/ calls on it
(`ChannelLayer`). `HubInMemoryChannelLayer` is the embedded default's: channels' in-memory
layer, sized for a hub.

Each process receives every event through one channel (realtime/hub.py). The in-memory
layer caps every channel at 100 queued messages and, when one is full, drops what
`group_send` sends to it without a word: 200 messages sent at once to 200 rooms reached
100. Here the hub's channel holds HUB_CAPACITY, and a message the layer drops anyway
(a full channel, or one left unread past the expiry, which also takes the channel out
of every group) counts as a layer failure: the watchdog then has every socket reconnect
and catch up (realtime/sockets.py), so a drop costs a resync, never a silent gap.
"""

import time
from typing import Any, Protocol, cast

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.core.exceptions import ImproperlyConfigured

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
