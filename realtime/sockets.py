"""The sockets this process holds, what each may cost, and the channel-layer watchdog.

Each user holds at most CHAT_MAX_SOCKETS_PER_USER sockets here (`user_sockets`), and
each socket may send frames within a budget (`FrameBudget`); rooms/consumers.py closes
with 1008 past either. The transport's own limits (frames queued, bytes unsent) are in
realtime/limits.py.

When the channel layer (Redis) goes away, sockets can stay open yet miss what others
post meanwhile: the messages are stored, but their live copies were never delivered.
So each process checks the layer every CHAT_LAYER_CHECK_SECONDS, and when it comes
back after an outage, closes its sockets with 1012 ("service restart"). htmx
reconnects, asks for everything after the newest message it shows, and gets exactly
what it missed.
"""

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from django.conf import settings

from realtime.layers import ChannelLayer, channel_layer

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


class UserSockets:
    """How many sockets each user holds in this process, so that no user holds more than
    CHAT_MAX_SOCKETS_PER_USER (without it, one user could open 2,000).

    A socket counts from its handshake (`admit`) until its consumer ends (`release`),
    however it ends; `admit` checks and counts with no await in between, so a hundred
    handshakes at once cannot all slip under the cap.
    """

    def __init__(self) -> None:
        self._owners: dict[object, int] = {}  # socket -> user id
        self._counts: Counter[int] = Counter()

    def admit(self, socket: object, user_id: int, limit: int) -> bool:
        """Count `socket` for `user_id` unless the user already holds `limit` sockets."""
        if socket in self._owners:
            return True
        if self._counts[user_id] >= limit:
            return False
        self._owners[socket] = user_id
        self._counts[user_id] += 1
        return True

    def release(self, socket: object) -> None:
        """Stop counting `socket` (a no-op for one never admitted)."""
        user_id = self._owners.pop(socket, None)
        if user_id is None:
            return
        self._counts[user_id] -= 1
        if self._counts[user_id] <= 0:
            del self._counts[user_id]

    def count(self, user_id: int) -> int:
        return self._counts[user_id]

    def clear(self) -> None:
        self._owners.clear()
        self._counts.clear()


user_sockets = UserSockets()


class FrameBudget:
    """One socket's allowance of incoming frames: a token bucket of `burst` frames,
    refilled at `per_second`. A composer sends one frame per message, so a person never
    comes near it; a client past it is flooding, and is closed (rooms/consumers.py)."""

    def __init__(
        self, burst: float, per_second: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst = burst
        self.per_second = per_second
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def spend(self) -> bool:
        """Take one frame from the budget; False (and nothing taken) when it is spent."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.per_second)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class Backlogged(TimeoutError):
    """The layer took the probe, but this process has not read it back in time: the
    process is behind on its own deliveries (a connect storm), the layer is not lost."""


class LayerProbe:
    """A round trip through the channel layer on one channel of this process's own.

    One channel, reused, and a receive that a timeout does not cancel. The Redis pub/sub
    layer keeps every channel it was asked to receive on subscribed (so a fresh channel
    per check would leak subscriptions), and it unsubscribes one whose receive is
    cancelled. Subscribing again then waits behind every connecting socket's own
    subscriptions: during a connect storm, that alone made every check time out.
    """

    def __init__(self) -> None:
        self._layer: ChannelLayer | None = None
        self._channel = ""
        self._receiving: asyncio.Future[dict[str, Any]] | None = None
        self._sent = 0
        self._lock = asyncio.Lock()

    async def ping(self, timeout: float = 3) -> None:
        """Return once a probe sent now came back. TimeoutError if the layer did not take
        it in time; Backlogged if it did, but the probe has not been read back yet."""
        async with self._lock:
            sent = False
            try:
                async with asyncio.timeout(timeout):
                    layer = await self._send()
                    sent = True
                    await self._receive(layer)
            except TimeoutError as error:
                # The receive goes on: a late probe is read by the next ping.
                if sent:
                    raise Backlogged() from error
                raise
            except BaseException:
                self._forget()
                raise

    async def _send(self) -> ChannelLayer:
        layer = channel_layer()
        if layer is not self._layer:  # (tests swap layers)
            self._forget()
            self._layer = layer
        if not self._channel:
            self._channel = await layer.new_channel("probe.")
        self._sent += 1
        await layer.send(self._channel, {"type": "probe", "n": self._sent})
        return layer

    async def _receive(self, layer: ChannelLayer) -> None:
        while True:
            if self._receiving is None:
                self._receiving = asyncio.ensure_future(layer.receive(self._channel))
            message = await asyncio.shield(self._receiving)
            self._receiving = None
            if message.get("n") == self._sent:
                return  # (earlier ones came late, after their ping gave up)

    def _forget(self) -> None:
        """After a failure: a new channel next time (a failed receive unsubscribed it)."""
        if self._receiving is not None:
            self._receiving.cancel()
        self._layer, self._channel, self._receiving = None, "", None


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

    def __init__(self) -> None:
        self.healthy = True
        self.reason = ""

    def failed(self, error: BaseException) -> None:
        if self.healthy:
            log.error("channel layer unavailable (%r): live delivery paused", error)
            self.reason = f"{type(error).__name__}: {error}"[:200]
        self.healthy = False
        # The watchdog resyncs once the layer passes a check again. (Outside an event loop
        # there is no socket to resync: the next one to connect starts it.)
        with contextlib.suppress(RuntimeError):
            ensure_watchdog()

    def passed(self) -> bool:
        """Record a good check; True when it ends an outage (the sockets must resync)."""
        came_back, self.healthy, self.reason = not self.healthy, True, ""
        return came_back


layer_health = LayerHealth()


async def check_layer(timeout: float = 3) -> None:
    """One check of the watchdog: after an outage, the first good one resyncs.

    A check that only times out is no outage. During a connect storm this process's
    event loop runs seconds behind, the probe with it, and closing every socket then
    turned a busy minute into a reconnect storm (measured: bench/RESULTS.md). Live
    messages are lost only when the layer's connection breaks, and that is an error.
    """
    try:
        await probe().ping(timeout)
    except TimeoutError:
        log.warning("channel layer check took over %s s: this process is behind", timeout)
    except Exception as error:
        layer_health.failed(error)
    else:
        if layer_health.passed():
            closed = await close_all(CLOSE_SERVICE_RESTART)
            log.warning("channel layer is back: closed %d sockets so they catch up", closed)


async def _watch_layer() -> None:
    while True:
        await asyncio.sleep(settings.CHAT_LAYER_CHECK_SECONDS)
        await check_layer()
