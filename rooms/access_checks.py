"""Open sockets deciding their access again, together: one database call per burst.

An "access.check" event (rooms/signals.py) reaches every socket of a group at once: a
room made staff-only asks all of its sockets in this process. Checked one by one, each
took its own trip to the database thread and three or four queries: about a millisecond
each, so a room of 1,000 took over a second. Here the sockets asked while no check runs
are decided in one services.sockets_access call (a few queries whatever their number),
and those asked while it runs, in the next: they may have changed after it read.

Room sockets are decided by services.sockets_access (`request`); the user sockets of
every other page, which are in no room, by services.user_sockets_access
(`request_user_check`): the same batching, each kind with its own decision.
"""

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from channels.db import database_sync_to_async

from rooms import services

log = logging.getLogger(__name__)

Key = TypeVar("Key")
Key_co = TypeVar("Key_co", covariant=True)
Decision = TypeVar("Decision")
Decision_contra = TypeVar("Decision_contra", contravariant=True)


class Checked(Protocol[Key_co, Decision_contra]):
    def access_key(self) -> Key_co | None:
        """What its access is decided on; None when it no longer needs a check."""

    async def access_decided(self, access: Decision_contra | None) -> None:
        """Act on the decision (None: the check failed)."""


# A room socket: its (room id, user id, session key).
CheckedSocket = Checked[services.SocketKey, services.SocketAccess]
# A user socket (rooms/consumers.py UserConsumer): its (user id, session key).
CheckedUserSocket = Checked[services.UserSocketKey, services.SignedIn | services.Unauthenticated]


class _Checks(Generic[Key, Decision]):
    """The sockets of one event loop waiting for a check, and the task checking them."""

    def __init__(self, decide: Callable[[list[Key]], Sequence[Decision]]) -> None:
        self.decide = decide
        self.waiting: dict[Checked[Key, Decision], None] = {}  # (a dict: in order, once each)
        self.task: asyncio.Task[None] | None = None

    def request(self, socket: Checked[Key, Decision]) -> None:
        self.waiting[socket] = None
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name="access checks")

    async def _run(self) -> None:
        while self.waiting:
            keyed = [(socket, socket.access_key()) for socket in self.waiting]
            self.waiting.clear()
            asked = [(socket, key) for socket, key in keyed if key is not None]
            decisions: list[Decision | None]
            try:
                keys = [key for _, key in asked]
                decisions = list(await database_sync_to_async(self.decide)(keys))
            except Exception:
                log.exception("access check of %d sockets failed", len(asked))
                decisions = [None] * len(asked)
            for (socket, _), access in zip(asked, decisions, strict=True):
                try:
                    await socket.access_decided(access)
                except Exception:
                    log.exception("access check: a socket failed to act on it")


_checks: dict[tuple[asyncio.AbstractEventLoop, Callable[..., Any]], _Checks[Any, Any]] = {}


def _request(
    socket: Checked[Key, Decision], decide: Callable[[list[Key]], Sequence[Decision]]
) -> None:
    key = (asyncio.get_running_loop(), decide)
    if key not in _checks:
        _checks[key] = _Checks(decide)
    _checks[key].request(socket)


def request(socket: CheckedSocket) -> None:
    """Decide room socket `socket`'s access again soon, with every other socket asked
    meanwhile."""
    _request(socket, services.sockets_access)


def request_user_check(socket: CheckedUserSocket) -> None:
    """Decide user socket `socket`'s access again soon (is its session still signed in
    as its user?), with every other user socket asked meanwhile."""
    _request(socket, services.user_sockets_access)
