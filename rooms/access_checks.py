"""Open sockets deciding their access again, together: one database call per burst.

An "access.check" event (rooms/signals.py) reaches every socket of a group at once: a
room made staff-only asks all of its sockets in this process. Checked one by one, each
took its own trip to the database thread and three or four queries: about a millisecond
each, so a room of 1,000 took over a second. Here the sockets asked while no check runs
are decided in one services.sockets_access call (a few queries whatever their number),
and those asked while it runs, in the next: they may have changed after it read.
"""

import asyncio
import logging
from typing import Protocol

from channels.db import database_sync_to_async

from rooms import services

log = logging.getLogger(__name__)


class CheckedSocket(Protocol):
    def access_key(self) -> services.SocketKey | None:
        """Its (room id, user id, session key); None when it no longer needs a check."""

    async def access_decided(self, access: services.SocketAccess | None) -> None:
        """Act on the decision (None: the check failed)."""


class _Checks:
    """The sockets of one event loop waiting for a check, and the task checking them."""

    def __init__(self) -> None:
        self.waiting: dict[CheckedSocket, None] = {}  # (a dict: in order, once each)
        self.task: asyncio.Task[None] | None = None

    def request(self, socket: CheckedSocket) -> None:
        self.waiting[socket] = None
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name="access checks")

    async def _run(self) -> None:
        while self.waiting:
            keyed = [(socket, socket.access_key()) for socket in self.waiting]
            self.waiting.clear()
            asked = [(socket, key) for socket, key in keyed if key is not None]
            decisions: list[services.SocketAccess | None]
            try:
                keys = [key for _, key in asked]
                decisions = list(await database_sync_to_async(services.sockets_access)(keys))
            except Exception:
                log.exception("access check of %d sockets failed", len(asked))
                decisions = [None] * len(asked)
            for (socket, _), access in zip(asked, decisions, strict=True):
                try:
                    await socket.access_decided(access)
                except Exception:
                    log.exception("access check: a socket failed to act on it")


_checks: dict[asyncio.AbstractEventLoop, _Checks] = {}


def request(socket: CheckedSocket) -> None:
    """Decide `socket`'s access again soon, with every other socket asked meanwhile."""
    loop = asyncio.get_running_loop()
    if loop not in _checks:
        _checks[loop] = _Checks()
    _checks[loop].request(socket)
