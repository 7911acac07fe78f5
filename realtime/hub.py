"""Group delivery within a process: one channel-layer channel per process, not per socket.

Every event a socket can get (a room's messages and presence, a user's private messages,
a session's logout) is sent to a group, as one pre-rendered string for everyone in it.
Subscribed socket by socket, each of N members cost the layer a queue, a deep copy and a
task per event, and the in-memory layer also rescans every channel on every receive: a
message in a room of N took O(N^2) work (measured: README "Performance"). So each
process has one channel, adds it to every group one of its sockets is in, and hands
each event to its sockets in that group, in order. Between processes, delivery still goes
through the layer (Redis). An event names its group (`group_send` below adds it): the
layer does not say which group an event came through.

Events that queued up while the process was busy go out together, as one frame per socket
(htmx swaps each out-of-band element of a frame in order): under load the frames, not
the events, are what cost, so a burst costs one write per socket instead of one per event.
A frame holds at most MAX_BATCH_CHARS of them: Daphne refuses to send a message over its
--websocket-max-message-size, and the consumer would crash.

While a socket handles something else (its connect with the catch-up, a frame it
received), its events wait, as they did in a channel of its own: `hold()` and
`release()` bracket each of its handlers.

A run's frame is the same for every socket, so it is encoded and framed once
(`Batch.frame`) and each socket that can takes it as bytes written to its connection at
once (`deliver_now`, realtime/writes.py), with no coroutine, ASGI message or framing of
its own; a socket that cannot (a catch-up covered part of the run, not a Daphne
connection) gets `deliver_html` as before.
"""

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Protocol

from channels.consumer import get_handler_name

from realtime import sockets, writes
from realtime.layers import channel_layer

log = logging.getLogger(__name__)

# Layers with group expiry (in-memory, core Redis: a day) drop a member added long ago;
# this process stays in a group as long as it has sockets in it, so it renews them on a
# timer (quiet or not), at most this far apart and three times per expiry.
GROUP_RENEW_SECONDS = 3600
MAX_BATCH_CHARS = 16 * 1024

Event = dict[str, Any]


@dataclass(slots=True)
class Batch:
    """A run of "hub.html" events that goes out as one frame, the same for every socket."""

    events: list[Event]
    frame: writes.Frame  # their HTML joined, framed once (lazily)
    first_seq: int | None  # the lowest `seq` among them (None: none has one)
    last_seq: int | None  # the highest

    @classmethod
    def of(cls, events: list[Event], html: str) -> "Batch":
        seqs = [seq for event in events if (seq := event.get("seq")) is not None]
        first, last = (min(seqs), max(seqs)) if seqs else (None, None)
        return cls(events, writes.Frame(html), first, last)


class GroupSocket(Protocol):
    async def deliver_html(self, events: list[Event], html: str) -> None:
        """Send `events` (all "hub.html"); `html` is their HTML joined."""

    # Optional: `def deliver_now(self, batch: Batch) -> bool`, the batch sent at once
    # (no await), or False for `deliver_html` to be awaited instead.


async def group_send(group: str, event: Event) -> None:
    """Send `event` to every socket in `group`, in every process."""
    await channel_layer().group_send(group, {**event, "group": group})


class _Inbox:
    """The one channel of an event loop (each test has its own loop) and its groups."""

    def __init__(self) -> None:
        loop = self.loop = asyncio.get_running_loop()
        self.closed = False
        self.layer = channel_layer()
        expiry = getattr(self.layer, "group_expiry", None) or GROUP_RENEW_SECONDS * 3
        self.renew_every = min(GROUP_RENEW_SECONDS, expiry / 3)
        self.members: dict[str, dict[GroupSocket, None]] = {}  # dicts: joining order
        self.subscribed: dict[str, asyncio.Future[None]] = {}
        self.subscribed_at: dict[str, float] = {}
        self.held: dict[GroupSocket, list[Event]] = {}
        self.pending: list[Event] = []
        self.wake = asyncio.Event()
        self.channel: asyncio.Future[str] = loop.create_future()
        self.tasks = [
            loop.create_task(self._receive(), name="fan-out"),
            loop.create_task(self._deliver(), name="fan-out delivery"),
            loop.create_task(self._renew_forever(), name="fan-out renewal"),
        ]
        for task in self.tasks:
            task.add_done_callback(self._stopped)

    def _stopped(self, task: "asyncio.Task[None]") -> None:
        """Its tasks run as long as the process: one that ends is a failure. Nothing this
        process's sockets should get reaches them any more, so the inbox is dropped (the
        next socket starts a new one) and the layer counts as failed: when it passes the
        next check, every socket reconnects and catches up (realtime/sockets.py)."""
        if task.cancelled() or self.closed:
            return
        error = task.exception() or RuntimeError(f"{task.get_name()} returned")
        log.error("fan-out: %s stopped: %r; resyncing every socket", task.get_name(), error)
        self.close()
        if _inboxes.get(self.loop) is self:
            del _inboxes[self.loop]
        sockets.layer_health.failed(error)

    async def join(self, group: str, socket: GroupSocket) -> None:
        channel = await asyncio.shield(self.channel)
        self.members.setdefault(group, {})[socket] = None
        now = self.loop.time()
        if group not in self.subscribed or now - self.subscribed_at[group] > self.renew_every:
            add = self.layer.group_add(group, channel)
            self.subscribed[group] = asyncio.ensure_future(add)
            self.subscribed_at[group] = now
        try:
            await asyncio.shield(self.subscribed[group])
        except Exception:
            self.subscribed.pop(group, None)  # the next socket tries again
            await self.leave(group, socket)
            raise

    async def leave(self, group: str, socket: GroupSocket) -> None:
        self.held.pop(socket, None)
        sockets = self.members.get(group, {})
        sockets.pop(socket, None)
        if sockets or group not in self.members:
            return
        # First: a socket joining meanwhile subscribes afresh.
        del self.members[group]
        self.subscribed.pop(group, None)
        self.subscribed_at.pop(group, None)
        try:
            await self.layer.group_discard(group, self.channel.result())
        except Exception:
            log.warning("fan-out: could not leave %s (channel layer down)", group)

    async def _receive(self) -> None:
        try:
            channel = await self.layer.new_channel("fanout.")
        except Exception as error:
            self.channel.set_exception(error)
            return
        self.channel.set_result(channel)
        while True:
            try:
                event = await self.layer.receive(channel)
            except Exception as error:
                # What was sent meanwhile is lost to this process: an outage, resynced.
                log.exception("fan-out: receive failed; retrying")
                sockets.layer_health.failed(error)
                await asyncio.sleep(1)
                continue
            self.pending.append(event)  # (not append(await ...): `pending` is swapped)
            self.wake.set()

    async def _renew_forever(self) -> None:
        """Renew every membership on a timer, quiet or not: a layer with group expiry
        would otherwise drop this process from a room after a quiet weekend."""
        channel = await asyncio.shield(self.channel)
        while True:
            await asyncio.sleep(self.renew_every)
            try:
                for group in list(self.members):
                    await self.layer.group_add(group, channel)
                    self.subscribed_at[group] = self.loop.time()
            except Exception as error:
                log.warning("fan-out: could not renew group memberships (channel layer down)")
                sockets.layer_health.failed(error)

    async def _deliver(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            events, self.pending = self.pending, []
            by_group: defaultdict[str, list[Event]] = defaultdict(list)
            for event in events:
                by_group[event.pop("group", "")].append(event)
            for group, group_events in by_group.items():
                for run in _runs(group_events):
                    await self._deliver_run(group, run)
                # Let the loop run between groups: a presence tick over ten rooms of 1,000
                # sockets was 10,000 sends in one turn, and /healthz waited 130 ms for it
                # (bench: 10,000 idle sockets). One room's sends stay together, in order.
                await asyncio.sleep(0)

    async def _deliver_run(self, group: str, run: list[Event]) -> None:
        html = _joined_html(run)  # once for every socket
        batch = Batch.of(run, html) if html else None  # framed once, for every socket
        held = self.held
        for socket in tuple(self.members.get(group, ())):
            waiting = held.get(socket)
            if waiting is not None:
                waiting.extend(run)
                continue
            try:
                if batch is not None:
                    deliver_now = getattr(socket, "deliver_now", None)
                    if deliver_now is not None and deliver_now(batch):
                        continue
                await _send(socket, run, html)
            except Exception:
                log.exception("fan-out for %s: a socket failed to send", group)

    def close(self) -> None:
        self.closed = True
        for task in self.tasks:
            task.cancel()


def _is_html(event: Event) -> bool:
    return event.get("type") == "hub.html"


def _runs(events: list[Event]) -> list[list[Event]]:
    """Consecutive "hub.html" events together, up to MAX_BATCH_CHARS of HTML (a bigger
    event alone); any other event alone; in order."""
    runs: list[list[Event]] = []
    size = 0
    for event in events:
        html = len(event["html"]) if _is_html(event) else 0
        if runs and html and _is_html(runs[-1][-1]) and size + html <= MAX_BATCH_CHARS:
            runs[-1].append(event)
            size += html
        else:
            runs.append([event])
            size = html
    return runs


def _joined_html(run: list[Event]) -> str:
    return "".join(event["html"] for event in run) if _is_html(run[0]) else ""


async def _send(socket: GroupSocket, run: list[Event], html: str) -> None:
    if _is_html(run[0]):
        await socket.deliver_html(run, html)
        return
    handler = getattr(socket, get_handler_name(run[0]), None)  # e.g. "socket.close"
    if handler is None:
        log.warning("fan-out: no handler for %r", run[0].get("type"))
    else:
        await handler(run[0])


_inboxes: dict[asyncio.AbstractEventLoop, _Inbox] = {}


def _here() -> _Inbox:
    loop = asyncio.get_running_loop()
    inbox = _inboxes.get(loop)
    if inbox is None or inbox.layer is not channel_layer():  # tests swap layers
        if inbox is not None:
            inbox.close()
        inbox = _inboxes[loop] = _Inbox()
    return inbox


async def join(group: str, socket: GroupSocket) -> None:
    """Deliver `group`'s events to `socket` from now on. Raises if the channel layer is
    unavailable (and the socket is then not a member)."""
    here = _here()
    try:
        await here.join(group, socket)
    except Exception:
        if here.channel.done() and here.channel.exception() is not None:
            _inboxes.pop(asyncio.get_running_loop(), None)  # no channel: start afresh
            here.close()
        raise


async def leave(group: str, socket: GroupSocket) -> None:
    await _here().leave(group, socket)


def hold(socket: GroupSocket) -> None:
    """Keep `socket`'s events back until `release()`."""
    _here().held.setdefault(socket, [])


async def release(socket: GroupSocket) -> None:
    """Send `socket` the events held back, in order; then deliver at once again."""
    held = _here().held
    waiting = held.get(socket)
    while waiting:
        events = waiting[:]
        del waiting[:]
        for run in _runs(events):
            await _send(socket, run, _joined_html(run))
    # No await between the last check and this: nothing can slip in between.
    held.pop(socket, None)
