"""The sockets: authorize, decode and validate, call a service, forward HTML.

RoomConsumer is a room page's socket (/ws/rooms/<slug>/); UserConsumer is the socket of
every other signed-in page (/ws/me/): the user's own events only, and on a conversation
page (?with=<username>) its composer.

Close codes (htmx's ws extension reconnects only after 1006, 1011, 1012 and 1013):
  4401  not logged in; or, while connected, logged out, the session deleted, the user
        deactivated or their password changed: reconnecting cannot help
  4404  no such room, or one this user may not enter (private rooms stay unrevealed);
        on /ws/me/, no such person to converse with
  4403  access to the room was withdrawn while connected (removed from its members, the
        room made staff-only or private, demoted from staff, the room deleted)
  1003  a binary frame: the composer only sends text; on /ws/me/, any frame from a page
        that has no composer
  1008  policy: frames sent faster than they are served (more than
        CHAT_SOCKET_MAX_QUEUED_FRAMES, or _BYTES, waiting: realtime/limits.py;
        or past the socket's frame budget, CHAT_SOCKET_FRAME_BURST then
        CHAT_SOCKET_FRAMES_PER_SECOND), or the user already holds
        CHAT_MAX_SOCKETS_PER_USER sockets in this process
  1009  a frame over MAX_FRAME_BYTES
  1013  the channel layer failed during the handshake, or an access check could not be
        made (the database failed): try again later, authorized afresh
A socket with more than CHAT_SOCKET_MAX_BUFFERED_BYTES sent to it and not read is dropped
without a close frame (it would not be read): the consumer sees 1006.
"""

import asyncio
import itertools
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model

import realtime
from realtime import HubSocket
from rooms import access_checks, attention, entering, presence, services, typists
from rooms.forms import (
    ComposerForm,
    FrameError,
    PrivateMessageForm,
    composer_data,
    decode_composer_frame,
    is_typing_frame,
    parse_frame,
)
from rooms.models import Room

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024

# A composer rendered without a send id (ComposerForm.token), which it has by default.
NO_TOKEN = {"token": ""}

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NO_ROOM = 4404
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN_LATER = 1013

_socket_ids = itertools.count(1)


class RoomConsumer(HubSocket):
    """A room's socket (realtime.HubSocket does the transport: groups, caps, holding
    events while busy, the catch-up cut-off)."""

    room: Room | None = None  # set once the socket is let in
    user: Any = None  # the scope's user (a lazy object), set on connect
    reads = False  # its page shows the room's newest messages: what it gets is read
    counted = False  # by presence.counted_in
    _empty_composer = ""

    @property
    def session_key(self) -> str | None:
        return self.scope["session"].session_key

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        self.socket_id = f"{presence.SERVER_ID}:{next(_socket_ids)}"  # for presence rows
        # Accept before closing: a refused handshake reaches the browser as 1006,
        # which htmx retries forever; a 4xxx close after accepting stops it.
        await self.accept()
        if self.user is None or not self.user.is_authenticated:
            await self.close(CLOSE_UNAUTHENTICATED)
            return
        if not await self.admit(self.user.pk):
            return
        slug = self.scope["url_route"]["kwargs"]["slug"]
        # Never creates: rooms are made by a POST to the room list, not by a socket.
        # (Asked with every socket connecting meanwhile, in one database call:
        # rooms/entering.py.)
        admitted = await entering.admit(slug, self.user, self.scope)
        if admitted is None:
            log.info("socket refused: %s may not enter %r", self.user, slug)
            await self.close(CLOSE_NO_ROOM)
            return
        self.room = admitted.room
        # Its room's events (messages, presence), its user's (private messages, access
        # checks) and its session's (logout); and the activity of the other rooms its
        # sidebar lists (?rooms=: their unread counts, rooms/attention.py).
        own_activity = services.activity_group(self.room.pk)
        groups = (
            services.room_group(self.room.pk),
            services.user_group(self.user.pk),
            services.session_group(self.session_key),
            *(group for group in admitted.listed if group != own_activity),
        )
        if not await self.subscribe(*groups):
            return
        # (?read=1: the page shows the newest messages, so what it is sent from now on is
        # read. An older page or a permalink reads nothing: the gap stays unread.)
        self.reads = _int_param(self.scope, "read") == 1
        # Presence, then how far behind the page is and who is online (so that the list
        # includes this user): read after joining the groups, so whatever happens later
        # reaches this socket live.
        arrived = await entering.arrive(
            entering.Arrival(
                self.room,
                self.user,
                self.socket_id,
                after=max(_int_param(self.scope, "after") or 0, 0),
                have=_int_set_param(self.scope, "have", limit=settings.CHAT_CATCHUP_LIMIT),
            )
        )
        presence.counted_in()  # (the presence ticks slow down as the process fills up)
        self.counted = True
        await self.catch_up(self.room, arrived.state, arrived.settled)
        self.opened()
        presence.ensure_heartbeat()
        log.info("connected %s to %s (%s)", self.user, self.room, self.socket_id)

    async def catch_up(self, room: Room, state: services.CatchUp, settled: str) -> None:
        """Bring the page up to date, on every connect (first or not): what changed after
        its cursor (?after=, and ?have= for what it holds past a gap, static/js/chat.js),
        then the cursor and who is online now (`settled`). Sent before any live event
        (they are held meanwhile), and a live copy of anything sent here is skipped
        (`caught_up_to`).

        A catch-up too long to be worth it (too many messages, or more bytes than a slow
        reader may be sent at once: realtime/limits.py would drop it, and its
        reconnect would ask for the same again) tells the page to reload instead.
        """
        self.caught_up_to = state.cursor
        budget, sent = settings.CHAT_SOCKET_MAX_BUFFERED_BYTES // 2, 0
        position: services.CatchUpPosition | None = None
        complete = not state.too_long
        while complete and sent < state.missed:
            # (Shared by the pages coming back from the same place: rooms/entering.py.)
            frames, position = await entering.catch_up_frames(room, state, position)
            for frame, count in frames:
                budget -= len(frame.encode())
                if budget < 0:
                    complete = False
                    break
                await self.send(text_data=frame)
                sent += count
            if position is None:
                break
        if not complete:
            missed = state.missed - sent
            await self.send(text_data=await self.render("catch-up-gap", missed=missed))
        # The cursor and the online list: a page rendered before someone's socket opened
        # and whose own socket opened after their "joined" went out would miss them.
        await self.send(text_data=settled)
        if self.reads and complete:
            attention.reads().note(self.user.pk, room.pk, state.cursor)

    @database_sync_to_async
    def render(self, partial: str, **context: Any) -> str:
        return services.render_fragment(partial, room=self.room, **context)

    def delivered(self, last_seq: int | None) -> None:
        # What the page was sent of its room is read (noted: written in a batch later).
        # Only the room's own events carry a seq (messages and changes).
        if self.reads and last_seq and self.room is not None:
            attention.reads().note(self.user.pk, self.room.pk, last_seq)

    async def disconnected(self, code: int) -> None:
        if self.room is not None:
            log.info("disconnected %s from %s (code %s)", self.user, self.room, code)
            if self.reads:
                await attention.reads().flush()  # what it read, written now
            if self.counted:
                presence.counted_out()
            await presence.departed(self.room, self.user, self.socket_id)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.room is None:
            # A socket we refused can still deliver frames (htmx flushes its queue on
            # open) until our close reaches the client: they are dropped.
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
            frame = parse_frame(text_data)
            if is_typing_frame(frame):
                await self.typing()
                return
            data = composer_data(frame)
        except FrameError as error:
            await self.send(text_data=self.composer(error=str(error)))
            return
        if too_fast := services.sending_too_fast(self.user.pk):
            # (kept as it was, its reply too: that is a query, hence the thread)
            reply = await database_sync_to_async(self.composer)(data, error=too_fast.error)
            await self.send(text_data=reply)
            return
        submitted = await realtime.database_call(self.submit)(self.room, data)
        if isinstance(submitted, services.Denied):
            await self.close(_close_code(submitted))
            return
        reply, posted = submitted
        if posted is not None and not await posted.sent():
            reply = posted.html + reply  # the layer failed; the sender still sees it
        await self.send(text_data=reply)

    async def typing(self) -> None:
        """The composer's typing signal: "<user> is typing…" to the room's pages, when the
        throttle and the room's size allow it (rooms/typists.py). Nothing is stored, and
        the typist gets no answer."""
        assert self.room is not None
        if not typists.may_signal(self.room, self.user):
            return
        html = await database_sync_to_async(typists.notice)(self.room, self.user)
        if html is not None:
            await realtime.publish(services.room_group(self.room.pk), html)

    def submit(
        self, room: Room, data: dict[str, str]
    ) -> tuple[str, services.Posted | None] | services.Denied:
        """Authorize against the rows as they are now (the user, their session and the
        room can all change while a socket is open), then post as the fresh user.

        Returns the HTML for this socket only and what was posted, still to be sent; or,
        when the user may no longer send here, why.
        """
        access = services.socket_access(room.pk, self.user.pk, self.session_key)
        if not isinstance(access, services.Allowed):
            log.info("%s may not send in %s: %s; closing", self.user, self.room, access.reason)
            return access
        self.room = access.room
        form, posted = services.submit_composer(access.room, access.user, data)
        if not form.is_valid():
            return self.composer(data, form=form), None
        return self.composer(), posted

    def composer(
        self,
        data: dict[str, str] | None = None,
        *,
        form: ComposerForm | None = None,
        error: str = "",
    ) -> str:
        """The composer, out of band: emptied after a send, kept with an error otherwise."""
        if data is None and form is None and not error:
            # The emptied composer is the same after every send: rendered once per socket
            # (README "Performance"). So it has no send id: chat.js makes one per send.
            if not self._empty_composer:
                self._empty_composer = services.render_fragment(
                    "composer", room=self.room, form=ComposerForm(initial=NO_TOKEN), error=""
                )
            return self._empty_composer
        form = form or ComposerForm(initial=data)
        reply_to = form["reply_to"].value()
        reply = services.reply_target(self.room, str(reply_to)) if reply_to and self.room else None
        return services.render_fragment(
            "composer", room=self.room, form=form, error=error, reply=reply
        )

    # Access re-checked where it changes ------------------------------------------------

    async def access_check(self, event: dict[str, Any]) -> None:
        """Something this socket's access rests on changed (rooms/signals.py: the user,
        their session, the room or its members): decide it again, and close if it no
        longer holds. Not here: this runs in the fan-out's delivery loop, which must not
        wait for the database; rooms/access_checks.py decides it with every other socket
        asked meanwhile."""
        if self.room is not None and not self.closing:
            access_checks.request(self)

    def access_key(self) -> services.SocketKey | None:
        if not self.is_open or self.room is None:
            return None  # closed or gone meanwhile: nothing to decide
        return self.room.pk, self.user.pk, self.session_key

    async def access_decided(self, access: services.SocketAccess | None) -> None:
        if isinstance(access, services.Allowed) or self.closing:
            return
        if not self.is_open:
            return  # it went while the database was asked
        if access is None:
            # Unverifiable is not allowed: the reconnect is authorized afresh.
            log.warning("access check of %s in %s failed; closing", self.user, self.room)
            await self.close(CLOSE_TRY_AGAIN_LATER)
            return
        log.info("%s lost access to %s: %s; closing", self.user, self.room, access.reason)
        await self.close(_close_code(access))

    async def pm_arrived(self, event: dict[str, Any]) -> None:
        """A private message reached this user (its HTML came just before): for the
        conversation page's socket (UserConsumer); a room page has nothing to do."""


class UserConsumer(HubSocket):
    """The socket of every signed-in page that is not a room's (/ws/me/): the room list,
    private messages, settings, mentions. A room page's own socket is in the same user
    and session groups, so a page has one socket, whichever it is.

    It gets the user's own events (private messages, notifications, the unread count),
    closes on logout (the session's group) and when the session no longer vouches for
    the user (an "access.check"). On a conversation page (`?with=<username>`) it also
    takes that page's composer, and marks the conversation read as messages arrive in
    it. Any other frame is refused (1003): other pages send nothing.
    """

    user: Any = None  # the scope's user (a lazy object), set on connect
    partner: Any = None  # the other person, on a conversation page
    ready = False  # let in and subscribed: frames are handled from then on
    _empty_composer = ""
    _reading: asyncio.Task[None] | None = None
    _read_again = False

    @property
    def session_key(self) -> str | None:
        return self.scope["session"].session_key

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        # Accept before closing, as RoomConsumer does: htmx retries a refused handshake.
        await self.accept()
        if self.user is None or not self.user.is_authenticated:
            await self.close(CLOSE_UNAUTHENTICATED)
            return
        if not await self.admit(self.user.pk):
            return
        partner = _str_param(self.scope, "with")
        if partner is not None:
            self.partner = await database_sync_to_async(_active_user)(partner)
            if self.partner is None:
                log.info("user socket refused: %s has no conversation with %r", self.user, partner)
                await self.close(CLOSE_NO_ROOM)
                return
        # The activity of the rooms the page lists (?rooms=: their unread counts,
        # rooms/attention.py).
        listed = await database_sync_to_async(attention.page_groups)(self.user, self.scope)
        groups = (
            services.user_group(self.user.pk),
            services.session_group(self.session_key),
            *listed,
        )
        if not await self.subscribe(*groups):
            return
        # The count as it is now: a page that was away (a reconnect) is brought up to date.
        await self.send(text_data=await database_sync_to_async(self.settled_state)())
        self.ready = True
        self.opened()

    def settled_state(self) -> str:
        unread = services.unread_private_messages(self.user.pk)
        return services.render_fragment("pm-unread", unread=unread, oob=True)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.ready:
            return  # refused, and its close not yet at the client (RoomConsumer.receive)
        if text_data is None or self.partner is None:
            await self.close(CLOSE_UNSUPPORTED_DATA)
            return
        if len(text_data) * 4 > MAX_FRAME_BYTES and len(text_data.encode()) > MAX_FRAME_BYTES:
            await self.close(CLOSE_TOO_BIG)
            return
        try:
            data = decode_composer_frame(text_data)
        except FrameError as error:
            await self.send(text_data=await self.render_composer(error=str(error)))
            return
        if too_fast := services.sending_too_fast(self.user.pk):
            await self.send(text_data=await self.render_composer(data, error=too_fast.error))
            return
        submitted = await realtime.database_call(self.submit)(data)
        if isinstance(submitted, services.Unauthenticated):
            log.info("%s may not send from %s: %s; closing", self.user, self, submitted.reason)
            await self.close(CLOSE_UNAUTHENTICATED)
            return
        reply, posted = submitted
        if posted is not None and not await posted.sent():
            reply = posted.html + reply  # the layer failed; the sender still sees it
        await self.send(text_data=reply)

    def submit(
        self, data: dict[str, str]
    ) -> tuple[str, services.Posted | None] | services.Unauthenticated:
        """Authorize against the rows as they are now (the session, the user, the other
        person), then send as the fresh user. Returns the HTML for this socket only and
        what was posted, still to be sent; or why the socket may no longer send."""
        (access,) = services.user_sockets_access([(self.user.pk, self.session_key)])
        if isinstance(access, services.Unauthenticated):
            return access
        form = PrivateMessageForm(data)
        partner = _active_user(self.partner.username)
        if partner is None:
            error = f"{self.partner.username} can no longer receive private messages."
            return self.composer(data, error=error), None
        if not form.is_valid():
            return self.composer(data, form=form), None
        body, token = form.cleaned_data["body"], form.cleaned_data["token"]
        posted = services.send_private_message(access.user, partner, body, token=token)
        return self.composer(), posted

    @database_sync_to_async
    def render_composer(self, data: dict[str, str] | None = None, *, error: str = "") -> str:
        return self.composer(data, error=error)

    def composer(
        self,
        data: dict[str, str] | None = None,
        *,
        form: PrivateMessageForm | None = None,
        error: str = "",
    ) -> str:
        """The conversation's composer, out of band: emptied after a send, kept with an
        error otherwise."""
        if data is None and form is None and not error:
            if not self._empty_composer:  # the same after every send: rendered once
                form = PrivateMessageForm(initial=NO_TOKEN)  # (as the room's: chat.js)
                self._empty_composer = services.render_fragment(
                    "pm-composer", other=self.partner, form=form, error=""
                )
            return self._empty_composer
        form = form or PrivateMessageForm(initial=data)
        return services.render_fragment("pm-composer", other=self.partner, form=form, error=error)

    # The conversation read as it arrives ---------------------------------------------

    async def pm_arrived(self, event: dict[str, Any]) -> None:
        """A private message reached this user (its HTML came just before). On the page
        of the conversation it belongs to, it was read there: marked so, and the user's
        pages get the new count. Not here: this runs in the fan-out's delivery loop,
        which must not wait for the database; a burst is marked in one go."""
        if self.partner is None or event.get("sender") != self.partner.pk or self.closing:
            return
        if self._reading is not None and not self._reading.done():
            self._read_again = True  # it may have read before this one was stored
            return
        self._reading = asyncio.get_running_loop().create_task(self._read(), name="pm read")

    async def _read(self) -> None:
        self._read_again = True
        while self._read_again and self.is_open:
            self._read_again = False
            try:
                await realtime.database_call(services.read_private_messages)(
                    self.user.pk, self.partner.pk
                )
            except Exception:
                log.exception(
                    "marking %s's conversation with %s read failed", self.user, self.partner
                )
                return

    # Access re-checked where it changes ------------------------------------------------

    async def access_check(self, event: dict[str, Any]) -> None:
        """The user or the session changed (rooms/signals.py): is the session still
        signed in as this user? Decided with every other user socket asked meanwhile
        (rooms/access_checks.py), not here in the fan-out's loop."""
        if self.ready and not self.closing:
            access_checks.request_user_check(self)

    def access_key(self) -> services.UserSocketKey | None:
        if not self.is_open:
            return None
        return self.user.pk, self.session_key

    async def access_decided(
        self, access: services.SignedIn | services.Unauthenticated | None
    ) -> None:
        if isinstance(access, services.SignedIn) or self.closing or not self.is_open:
            return
        if access is None:
            log.warning("access check of %s's user socket failed; closing", self.user)
            await self.close(CLOSE_TRY_AGAIN_LATER)
            return
        log.info("%s's user socket: %s; closing", self.user, access.reason)
        await self.close(CLOSE_UNAUTHENTICATED)


def _active_user(username: str) -> Any | None:
    return get_user_model().objects.filter(username=username, is_active=True).first()


def _str_param(scope: Mapping[str, Any], name: str) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("utf-8", "replace")).get(name)
    return values[0][:150] if values else None


def _close_code(denied: services.Denied) -> int:
    if isinstance(denied, services.Unauthenticated):
        return CLOSE_UNAUTHENTICATED
    return CLOSE_FORBIDDEN


def _int_set_param(scope: Mapping[str, Any], name: str, *, limit: int) -> frozenset[int]:
    """`?name=1,2,3` as a set of at most `limit` non-negative ints (the rest ignored)."""
    values = parse_qs(scope.get("query_string", b"").decode("latin1")).get(name)
    items = values[0].split(",")[:limit] if values else []
    return frozenset(
        int(item) for item in items if item.isascii() and item.isdigit() and len(item) <= 18
    )


def _int_param(scope: Mapping[str, Any], name: str) -> int | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin1")).get(name)
    try:
        return int(values[0]) if values else None
    except ValueError:
        return None
