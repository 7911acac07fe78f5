"""The room socket: authorize, decode and validate, call a service, forward HTML.

Close codes (htmx's ws extension reconnects only after 1006, 1011, 1012 and 1013):
  4401  not logged in, or logged out meanwhile: reconnecting cannot help
  4404  no such room, or one this user may not enter (private rooms stay unrevealed)
  4403  access to the room was withdrawn while connected (removed, or refused a send)
  1003  a binary frame: the composer only sends text
  1009  a frame over MAX_FRAME_BYTES
  1013  the channel layer failed during the handshake: try again later
"""

import logging
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from rooms import presence, services, sockets
from rooms.forms import ComposerForm, FrameError, decode_composer_frame
from rooms.models import Room

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NO_ROOM = 4404
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN_LATER = 1013


class RoomConsumer(AsyncWebsocketConsumer):
    room: Room | None = None
    closing = False  # set once we close: frames still in flight are dropped

    async def connect(self) -> None:
        self.user = self.scope["user"]
        # Accept before closing: a refused handshake reaches the browser as 1006,
        # which htmx retries forever; a 4xxx close after accepting stops it.
        await self.accept()
        if not self.user.is_authenticated:
            await self.close(CLOSE_UNAUTHENTICATED)
            return
        slug = self.scope["url_route"]["kwargs"]["slug"]
        try:
            # Rooms are created by opening their page, never by a bare socket.
            self.room = await database_sync_to_async(services.enter_room)(
                slug, self.user, create=False
            )
        except (Room.DoesNotExist, ValueError):
            log.info("socket refused: %s may not enter %r", self.user, slug)
            await self.close(CLOSE_NO_ROOM)
            return
        self.groups = [
            services.room_group(self.room.pk),
            services.user_group(self.user.pk),
            services.session_group(self.scope["session"].session_key),
        ]
        try:
            for group in self.groups:
                await self.channel_layer.group_add(group, self.channel_name)
        except Exception:
            log.exception("socket for %s in %s: channel layer unavailable", self.user, slug)
            await self.close(CLOSE_TRY_AGAIN_LATER)
            return
        # Anything posted after the last message this page shows (the client says which,
        # in ?after=): sent now, and skipped when its live copy arrives below.
        after = _int_param(self.scope, "after")
        self.caught_up_to, catch_up_html = await database_sync_to_async(self.arrive)(after)
        if catch_up_html:
            await self.send(text_data=catch_up_html)
        sockets.open_sockets.add(self)
        presence.ensure_heartbeat()
        sockets.ensure_watchdog()
        log.info("connected %s to %s (%s)", self.user, self.room, self.channel_name)

    def arrive(self, after: int | None) -> tuple[int, str]:
        """Record presence; return the catch-up for this socket alone, and the id it ends at.

        A reconnecting page (chat.js adds ?resync=1) may also have missed joins and
        leaves, so it gets the whole online list once; a first connect has it already.
        """
        if presence.arrive(self.room, self.user, self.channel_name):
            services.announce_presence(self.room, self.user, "joined")
        missed = services.messages_after(self.room, after) if after is not None else []
        html = services.render_fragment("catch-up", messages=missed) if missed else ""
        if _int_param(self.scope, "resync"):
            online = services.online_users(self.room)
            html += services.render_fragment("online-users", online_users=online)
        return (missed[-1].pk if missed else after or 0), html

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        # Presence first and the layer second: leaving must be recorded even when the
        # layer is down.
        sockets.open_sockets.discard(self)
        if self.room is not None:
            log.info("disconnected %s from %s (code %s)", self.user, self.room, message["code"])
            await database_sync_to_async(self.depart)()
        for group in self.groups:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:
                log.warning("could not leave group %s (channel layer down)", group)
        raise StopConsumer

    def depart(self) -> None:
        if presence.depart(self.channel_name):
            services.announce_presence(self.room, self.user, "left")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.room is None or self.closing:
            # A socket we refused or are closing can still deliver frames (htmx flushes
            # its queue on open) until our close reaches the client: they are dropped.
            return
        if text_data is None:
            await self.close(CLOSE_UNSUPPORTED_DATA)
            return
        # Daphne caps frame bytes when started as in the Procfile; this holds without it.
        # (Counting characters first spares encoding every small frame.)
        if len(text_data) * 4 > MAX_FRAME_BYTES and len(text_data.encode()) > MAX_FRAME_BYTES:
            await self.close(CLOSE_TOO_BIG)
            return
        try:
            data = decode_composer_frame(text_data)
        except FrameError as error:
            await self.send(text_data=self.composer(error=str(error)))
            return
        if not services.rate_limiter.allow(self.user.pk):
            error = "You are sending messages too fast. Wait a moment, then send again."
            await self.send(text_data=self.composer(data, error=error))
            return
        reply = await database_sync_to_async(self.submit)(data)
        if reply is None:
            await self.close(CLOSE_FORBIDDEN)
        else:
            await self.send(text_data=reply)

    def submit(self, data: dict[str, str]) -> str | None:
        """Authorize again (membership can change while a socket is open), then post.

        Returns the HTML for this socket only, or None when the user may no longer post.
        """
        self.room.refresh_from_db()
        if not services.can_enter(self.room, self.user):
            log.info("%s lost access to %s; closing", self.user, self.room)
            return None
        form, posted = services.submit_composer(self.room, self.user, data)
        if not form.is_valid():
            return self.composer(data, form=form)
        if not posted.delivered:
            return posted.html + self.composer()  # the layer failed; the sender still sees it
        return self.composer()

    def composer(
        self,
        data: dict[str, str] | None = None,
        *,
        form: ComposerForm | None = None,
        error: str = "",
    ) -> str:
        """The composer, out of band: emptied after a send, kept with an error otherwise."""
        form = form or ComposerForm(initial=data)
        return services.render_fragment("composer", room=self.room, form=form, error=error)

    # Channel-layer events ----------------------------------------------------------

    async def dispatch(self, message: dict[str, Any]) -> None:
        # The hot path: forwarding pre-rendered HTML touches no database, so it skips
        # the per-event close_old_connections thread hop that channels adds.
        if message["type"] == "room.html":
            await self.room_html(message)
        else:
            await super().dispatch(message)

    async def room_html(self, event: dict[str, Any]) -> None:
        message_id = event.get("message_id")
        if message_id is not None and message_id <= self.caught_up_to:
            return  # already sent in the catch-up
        await self.send(text_data=event["html"])

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        self.closing = True
        await super().close(code, reason)

    async def socket_close(self, event: dict[str, Any]) -> None:
        await self.close(event["code"])

    async def room_revoked(self, event: dict[str, Any]) -> None:
        if self.room is not None and event["room_id"] == self.room.pk:
            await self.close(CLOSE_FORBIDDEN)


def _int_param(scope: dict[str, Any], name: str) -> int | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin1")).get(name)
    try:
        return int(values[0]) if values else None
    except ValueError:
        return None
