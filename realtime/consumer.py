"""HubSocket: the transport half of a WebSocket consumer. An app's consumer subclasses it
and adds what its socket is for (authorizing, decoding frames, rendering replies).

What it does for every socket:
- its groups' events come from the process's hub (realtime/hub.py), not from a
  channel-layer channel of its own; they wait while the socket handles anything else
  (a new socket gets its catch-up first, a sender its reply before the broadcast), and
  HTML events a catch-up already covered (`seq <= caught_up_to`) are left out;
- a frame budget per socket and a cap on sockets per user in this process (close 1008);
- the process's socket registry (the watchdog and a graceful stop close them all);
- nothing more goes out once it is closing (Daphne refuses sends after the close).
"""

import functools
import logging
from typing import TYPE_CHECKING, Any, cast

from asgiref.typing import WebSocketDisconnectEvent, WebSocketReceiveEvent
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from realtime import hub, sockets, writes

if TYPE_CHECKING:
    from channels.consumer import _ASGIApplicationProtocol

log = logging.getLogger(__name__)

CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013


class HubSocket(AsyncWebsocketConsumer):
    # No channel of its own: the hub delivers. (Channels skips the layer for None; its
    # stubs type the alias as a str only.)
    channel_layer_alias = None  # type: ignore[assignment]
    groups = ()  # type: ignore[assignment]  # (channels' default gives each socket a list)
    groups_joined: tuple[str, ...] = ()
    closing = False  # set once it closes: frames still in flight are dropped
    caught_up_to = 0  # events with a seq up to this were sent by the catch-up
    frame_budget: sockets.FrameBudget | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # channels' AsyncConsumer.__call__, less what an idle socket paid for a channel of
        # its own that it does not have: `await_many_dispatch` kept a second task per
        # socket waiting on `receive()`, plus `asyncio.wait`'s future and callbacks, about
        # 3 KiB of the ~38 an idle socket cost (`python -m bench.memory`). With one source
        # of messages, awaiting it is the same loop. (Same attributes as channels sets.)
        self.scope = scope
        self.channel_layer = None  # type: ignore[assignment]  # (as channels sets it)
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        finally:
            # However the socket ended (closed, crashed, cancelled), its place is free.
            sockets.user_sockets.release(self)

    @classmethod
    def as_asgi(cls, **initkwargs: Any) -> "_ASGIApplicationProtocol":
        """channels' `as_asgi`, returning the consumer's own coroutine rather than one
        that awaits it: a suspended frame less for every open socket."""

        def app(scope: Any, receive: Any, send: Any) -> Any:
            return cls(**initkwargs)(scope, receive, send)

        app.consumer_class = cls  # type: ignore[attr-defined]
        app.consumer_initkwargs = initkwargs  # type: ignore[attr-defined]
        functools.update_wrapper(app, cls, updated=())
        return cast("_ASGIApplicationProtocol", app)

    # Opening and closing -------------------------------------------------------------

    async def admit(self, user_id: int) -> bool:
        """Count this socket against its user's cap (closes it with 1008 past it)."""
        cap = settings.CHAT_MAX_SOCKETS_PER_USER
        if not sockets.user_sockets.admit(self, user_id, cap):
            log.warning("socket refused: user %s already has %d sockets here (1008)", user_id, cap)
            await self.close(CLOSE_POLICY_VIOLATION)
            return False
        self.frame_budget = sockets.FrameBudget(
            settings.CHAT_SOCKET_FRAME_BURST, settings.CHAT_SOCKET_FRAMES_PER_SECOND
        )
        return True

    async def subscribe(self, *groups: str) -> bool:
        """Deliver these groups' events to this socket from now on; closes it with 1013
        (try again later) if the channel layer is unavailable."""
        try:
            for group in groups:
                await hub.join(group, self)
                self.groups_joined += (group,)
        except Exception:
            log.exception("socket: channel layer unavailable; closing with 1013")
            await self.close(CLOSE_TRY_AGAIN_LATER)
            return False
        return True

    @property
    def is_open(self) -> bool:
        """Open, and not closing or gone (it left the registry when it disconnected)."""
        return not self.closing and self in sockets.open_sockets

    def opened(self) -> None:
        """The socket is fully open: registered, and looked after by the watchdog."""
        sockets.open_sockets.add(self)
        sockets.ensure_watchdog()

    async def websocket_disconnect(self, message: WebSocketDisconnectEvent) -> None:
        sockets.open_sockets.discard(self)
        # The app's part first (e.g. presence): it must happen even if the layer is down.
        await self.disconnected(message["code"])
        for group in self.groups_joined:
            await hub.leave(group, self)
        raise StopConsumer

    async def disconnected(self, code: int) -> None:
        """What the app does when the socket closes (override)."""

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        self.closing = True
        await super().close(code, reason)

    async def send(  # type: ignore[override]  # (channels' stub says it is not async)
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        """Text goes out as one frame written at once (realtime/writes.py), as the hub's
        do: a reply, a catch-up's frames. Anything else, or a connection that cannot take
        it so (not open yet, not Daphne's), the usual way."""
        if text_data is not None and bytes_data is None and not close:
            sent = writes.send_frame(self.base_send, writes.Frame(text_data))
            if sent:
                return
        await super().send(text_data, bytes_data, close)

    # Events --------------------------------------------------------------------------

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Group events wait while this socket handles anything else, as they would in a
        # channel of its own.
        hub.hold(self)
        try:
            # As channels' dispatch, without the close_old_connections it runs in the
            # database thread before every handler (a thread hop per connect, frame and
            # event): a handler here reaches the database only through
            # database_sync_to_async, which closes stale connections itself, in that
            # same thread, before and after each call.
            handler = getattr(self, get_handler_name(message), None)
            if handler is None:
                raise ValueError(f"No handler for message type {message['type']}")
            await handler(message)
        finally:
            await hub.release(self)

    async def websocket_receive(self, message: WebSocketReceiveEvent) -> None:
        if self.closing:
            # Frames can still arrive until our close reaches the client: dropped.
            return
        if self.frame_budget is not None and not self.frame_budget.spend():
            # A flood: closed before anything is decoded or rendered for it.
            log.warning("closing a socket: frames over its budget (1008)")
            await self.close(CLOSE_POLICY_VIOLATION)
            return
        await super().websocket_receive(message)

    def deliver_now(self, batch: hub.Batch) -> bool:
        """The hub's batch as the frame it made once for every socket, written at once
        (realtime/writes.py); False when `deliver_html` must send it instead (its catch-up
        held part of it, or this is not a Daphne connection)."""
        if self.closing:
            return True
        if batch.first_seq is not None and batch.first_seq <= self.caught_up_to:
            return False
        if not writes.send_frame(self.base_send, batch.frame):
            return False
        self.delivered(batch.last_seq)
        return True

    async def deliver_html(self, events: list[dict[str, Any]], html: str) -> None:
        """HTML events of its groups, several in one frame when they came together
        (realtime/hub.py); `html` is theirs joined, sent as it is (never re-rendered).
        Events the catch-up already held are left out."""
        if self.closing:
            return
        if any(_caught_up(event, self.caught_up_to) for event in events):
            html = "".join(e["html"] for e in events if not _caught_up(e, self.caught_up_to))
        if html:
            await self.send(text_data=html)
        if not self.closing:
            seqs = [event["seq"] for event in events if event.get("seq") is not None]
            self.delivered(max(seqs, default=None))

    def delivered(self, last_seq: int | None) -> None:
        """This socket was sent its groups' events up to `last_seq` (None: none of them
        carried one), by either path (override: e.g. to note what its page has read)."""

    async def socket_close(self, event: dict[str, Any]) -> None:
        """`publish_event(group, {"type": "socket.close", "code": N})` closes them."""
        await self.close(event["code"])


def _caught_up(event: dict[str, Any], caught_up_to: int) -> bool:
    seq = event.get("seq")
    return seq is not None and seq <= caught_up_to
