"""Room fan-out within a process: one channel-layer subscription per room, not per socket.

A room event (a message, a presence change) is one pre-rendered string for everyone.
Subscribed socket by socket, each of N members costs the layer a queue, a deep copy and a
task per event, and the in-memory layer also rescans its channels on every receive: a
message in a room of N took O(N^2) work (measured: README "Performance"). So a process
subscribes once per room it has sockets in, on a channel of its own in the room's group,
and hands each event to its sockets in order. Between processes, delivery still goes
through the layer (Redis): every process with a socket in the room is subscribed.

Events that queued up while the process was busy go out together, as one frame per socket
(htmx swaps each out-of-band element of a frame in order): under load the frames, not
the events, are what cost, so a burst costs one write per socket instead of one per event.
A frame holds at most MAX_BATCH_CHARS of them: Daphne refuses to send a message over its
--websocket-max-message-size (64 KiB in the Procfile), and the consumer would crash.

While a socket handles something else (its connect with the catch-up, a frame it
received), its room events wait, as they did in a channel of its own: `hold()` and
`release()` bracket each of its handlers.
"""

import asyncio
import logging
from typing import Any, Protocol

from channels.consumer import get_handler_name
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

# Layers with group expiry (in-memory, core Redis: a day) drop a member added long ago;
# a room's subscription lasts as long as it has sockets here, so it is renewed.
GROUP_RENEW_SECONDS = 3600
MAX_BATCH_CHARS = 16 * 1024

Event = dict[str, Any]


class RoomSocket(Protocol):
    async def room_events(self, events: list[Event], html: str) -> None:
        """Send `events` (all "room.html"); `html` is their HTML joined."""


class _Room:
    def __init__(self, group: str, held: dict[RoomSocket, list[Event]]) -> None:
        loop = asyncio.get_running_loop()
        self.group = group
        self.layer = get_channel_layer()
        self.sockets: dict[RoomSocket, None] = {}  # a dict: delivery in joining order
        self.held = held
        self.channel = ""
        self.pending: list[Event] = []
        self.wake = asyncio.Event()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.tasks = [
            loop.create_task(self._receive(), name=f"fan-out {group}"),
            loop.create_task(self._deliver(), name=f"fan-out {group} delivery"),
        ]

    async def _receive(self) -> None:
        try:
            self.channel = await self.layer.new_channel("room-fanout.")
            await self.layer.group_add(self.group, self.channel)
        except Exception as error:
            self.ready.set_exception(error)
            return
        self.ready.set_result(None)
        renewed = asyncio.get_running_loop().time()
        while True:
            try:
                event = await self.layer.receive(self.channel)
            except Exception:
                log.exception("fan-out for %s: receive failed; retrying", self.group)
                await asyncio.sleep(1)
                continue
            self.pending.append(event)  # (not append(await ...): `pending` is swapped)
            self.wake.set()
            if asyncio.get_running_loop().time() - renewed > GROUP_RENEW_SECONDS:
                renewed = asyncio.get_running_loop().time()
                await self.layer.group_add(self.group, self.channel)

    async def _deliver(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            events, self.pending = self.pending, []
            for run in _runs(events):
                html = "".join(event["html"] for event in run) if _is_html(run[0]) else ""
                for socket in tuple(self.sockets):
                    waiting = self.held.get(socket)
                    if waiting is not None:
                        waiting.extend(run)
                        continue
                    try:
                        await _send(socket, run, html)
                    except Exception:
                        log.exception("fan-out for %s: a socket failed to send", self.group)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.channel:
            try:
                await self.layer.group_discard(self.group, self.channel)
            except Exception:
                log.warning("fan-out for %s: could not leave the group (layer down)", self.group)


def _is_html(event: Event) -> bool:
    return event.get("type") == "room.html"


def _runs(events: list[Event]) -> list[list[Event]]:
    """Consecutive "room.html" events together, up to MAX_BATCH_CHARS of HTML (a bigger
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


async def _send(socket: RoomSocket, run: list[Event], html: str) -> None:
    if _is_html(run[0]):
        await socket.room_events(run, html)
        return
    # Not sent to rooms today (services broadcasts "room.html" only); handled as the
    # consumer would, by type, should that change.
    handler = getattr(socket, get_handler_name(run[0]), None)
    if handler is None:
        log.warning("fan-out: no handler for %r", run[0].get("type"))
    else:
        await handler(run[0])


class _Fanout:
    """The rooms of one event loop (each test has its own loop)."""

    def __init__(self) -> None:
        self.rooms: dict[str, _Room] = {}
        self.held: dict[RoomSocket, list[Event]] = {}


_per_loop: dict[asyncio.AbstractEventLoop, _Fanout] = {}


def _here() -> _Fanout:
    loop = asyncio.get_running_loop()
    if loop not in _per_loop:
        _per_loop[loop] = _Fanout()
    return _per_loop[loop]


async def join(group: str, socket: RoomSocket) -> None:
    """Deliver `group`'s events to `socket` from now on. Raises if the channel layer is
    unavailable (and the socket is then not a member)."""
    here = _here()
    room = here.rooms.get(group)
    if room is None or room.layer is not get_channel_layer():  # tests swap layers
        room = here.rooms[group] = _Room(group, here.held)
    room.sockets[socket] = None
    try:
        await asyncio.shield(room.ready)
    except Exception:
        await leave(group, socket)
        raise


async def leave(group: str, socket: RoomSocket) -> None:
    here = _here()
    here.held.pop(socket, None)
    room = here.rooms.get(group)
    if room is None:
        return
    room.sockets.pop(socket, None)
    if not room.sockets:
        del here.rooms[group]  # first: a socket joining meanwhile subscribes afresh
        await room.close()


def hold(socket: RoomSocket) -> None:
    """Keep `socket`'s room events back until `release()`."""
    _here().held.setdefault(socket, [])


async def release(socket: RoomSocket) -> None:
    """Send `socket` the events held back, in order; then deliver at once again."""
    held = _here().held
    waiting = held.get(socket)
    while waiting:
        events = waiting[:]
        del waiting[:]
        for run in _runs(events):
            html = "".join(event["html"] for event in run) if _is_html(run[0]) else ""
            await _send(socket, run, html)
    # No await between the last check and this: nothing can slip in between.
    held.pop(socket, None)
