"""The sockets this process holds, and the channel-layer watchdog that looks after them.

When the channel layer (Redis) goes away, sockets can stay open yet miss what others
post meanwhile: the messages are stored, but their live copies were never delivered.
So each process checks the layer every CHAT_LAYER_CHECK_SECONDS, and when it comes
back after an outage, closes its sockets with 1012 ("service restart"). htmx
reconnects, asks for everything after the newest message it shows, and gets exactly
what it missed.
"""

import asyncio
import logging
from typing import Protocol

from channels.layers import get_channel_layer
from django.conf import settings

log = logging.getLogger(__name__)

CLOSE_SERVICE_RESTART = 1012


class ClosableSocket(Protocol):
    async def close(self, code: int | None = None, reason: str | None = None) -> None: ...


open_sockets: set[ClosableSocket] = set()


async def close_all(code: int = CLOSE_SERVICE_RESTART) -> int:
    """Close every socket of this process; htmx comes back after 1012."""
    sockets = list(open_sockets)
    await asyncio.gather(*(socket.close(code) for socket in sockets), return_exceptions=True)
    return len(sockets)


class LayerProbe:
    """A round trip through the channel layer on one channel of this process's own.

    One channel, reused: the Redis pub/sub layer keeps every channel it was asked to
    receive on subscribed, so a fresh channel per check would leak subscriptions.
    """

    def __init__(self) -> None:
        self._channel: str | None = None
        self._lock = asyncio.Lock()

    async def ping(self, timeout: float = 3) -> None:
        async with self._lock:
            layer = get_channel_layer()
            try:
                if self._channel is None:
                    self._channel = await asyncio.wait_for(layer.new_channel("probe."), timeout)
                await asyncio.wait_for(layer.send(self._channel, {"type": "probe"}), timeout)
                await asyncio.wait_for(layer.receive(self._channel), timeout)
            except BaseException:
                # A cancelled receive unsubscribes the channel: start afresh next time.
                self._channel = None
                raise


_probes: dict[asyncio.AbstractEventLoop, LayerProbe] = {}
_watchdogs: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}


def probe() -> LayerProbe:
    loop = asyncio.get_running_loop()
    if loop not in _probes:
        _probes[loop] = LayerProbe()
    return _probes[loop]


def ensure_watchdog() -> None:
    loop = asyncio.get_running_loop()
    task = _watchdogs.get(loop)
    if task is None or task.done():
        _watchdogs[loop] = loop.create_task(_watch_layer(), name="channel-layer-watchdog")


class LayerHealth:
    """What this process knows of the layer: a failed check or a failed broadcast marks
    it unhealthy, and the first good check after that resyncs the sockets. A broadcast
    failing between two checks counts too, so an outage shorter than the check
    interval still leaves no gap."""

    healthy = True

    def failed(self, error: BaseException) -> None:
        if self.healthy:
            log.error("channel layer unavailable (%s): live delivery paused", error)
        self.healthy = False


layer_health = LayerHealth()


async def _watch_layer() -> None:
    while True:
        await asyncio.sleep(settings.CHAT_LAYER_CHECK_SECONDS)
        try:
            await probe().ping()
        except Exception as error:
            layer_health.failed(error)
            continue
        if not layer_health.healthy:
            layer_health.healthy = True
            closed = await close_all(CLOSE_SERVICE_RESTART)
            log.warning("channel layer is back: closed %d sockets so they catch up", closed)
