"""The embedded default's channel layer: channels' in-memory layer, sized for a hub.

Each process receives every event through one channel (realtime/hub.py). The in-memory
layer caps every channel at 100 queued messages and, when one is full, drops what
`group_send` sends to it without a word: 200 messages sent at once to 200 rooms reached
100. Here the hub's channel holds HUB_CAPACITY, and a message the layer drops anyway
(a full channel, or one left unread past the expiry, which also takes the channel out
of every group) counts as a layer failure: the watchdog then has every socket reconnect
and catch up (realtime/sockets.py), so a drop costs a resync, never a silent gap.
"""

from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

from realtime import sockets

HUB_CAPACITY = 100_000
HUB_PREFIX = "fanout."


class HubInMemoryChannelLayer(InMemoryChannelLayer):
    def __init__(self, hub_capacity: int = HUB_CAPACITY, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hub_capacity = hub_capacity

    def get_capacity(self, channel: str) -> int:
        return self.hub_capacity if channel.startswith(HUB_PREFIX) else self.capacity

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        try:
            await super().send(channel, message)
        except ChannelFull as error:
            sockets.layer_health.failed(error)
            raise

    def _remove_from_groups(self, channel: str) -> None:
        # Called when a message expired unread: it is lost, and so are the channel's groups.
        sockets.layer_health.failed(RuntimeError(f"a message to {channel} expired unread"))
        super()._remove_from_groups(channel)
