"""Who is online where, correct across any number of server processes.

Every open socket is a Connection row. A user is online in a room while at least one
of their rows there is fresh. Each process refreshes its own rows every
CHAT_PRESENCE_HEARTBEAT seconds, so the rows of a process that died without cleaning
up go stale after CHAT_PRESENCE_TTL and are reaped by whichever process looks next:
ghosts last at most one TTL plus one heartbeat.
"""

import asyncio
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from rooms.models import Connection, Room
from rooms.services import announce_presence, presence_cutoff

log = logging.getLogger(__name__)

SERVER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Departure:
    room: Room
    user: Any


def _online_elsewhere(room_id: int, user_id: int, socket_id: str) -> bool:
    return (
        Connection.objects.filter(room_id=room_id, user_id=user_id, seen_at__gte=presence_cutoff())
        .exclude(socket_id=socket_id)
        .exists()
    )


@transaction.atomic
def arrive(room: Room, user: Any, socket_id: str) -> bool:
    """Record a new socket; True when it brings the user online in the room."""
    first = not _online_elsewhere(room.pk, user.pk, socket_id)
    Connection.objects.update_or_create(
        socket_id=socket_id,
        defaults={"room": room, "user": user, "server": SERVER_ID, "seen_at": timezone.now()},
    )
    return first


@transaction.atomic
def depart(socket_id: str) -> bool:
    """Forget a closed socket; True when it was the user's last one in the room."""
    connection = Connection.objects.filter(socket_id=socket_id).first()
    if connection is None:
        return False
    connection.delete()
    return not _online_elsewhere(connection.room_id, connection.user_id, socket_id)


def heartbeat() -> list[Departure]:
    """Refresh this process's sockets and reap stale ones; return who left by expiry."""
    now = timezone.now()
    Connection.objects.filter(server=SERVER_ID).update(seen_at=now)
    stale = list(
        Connection.objects.filter(seen_at__lt=presence_cutoff()).select_related("room", "user")
    )
    departures: dict[tuple[int, int], Departure] = {}
    for connection in stale:
        # Delete by id and seen_at, so a row its process refreshed meanwhile survives.
        deleted, _ = Connection.objects.filter(
            pk=connection.pk, seen_at=connection.seen_at
        ).delete()
        key = (connection.room_id, connection.user_id)
        if deleted and not _online_elsewhere(*key, connection.socket_id):
            departures[key] = Departure(connection.room, connection.user)
    if stale:
        log.warning("reaped %d stale connections (their process stopped heartbeating)", len(stale))
    return list(departures.values())


def forget_server() -> int:
    """Drop this process's rows (on shutdown), so nobody waits for them to expire."""
    deleted, _ = Connection.objects.filter(server=SERVER_ID).delete()
    return deleted


_heartbeats: dict[Any, "asyncio.Task[None]"] = {}


def ensure_heartbeat() -> None:
    """Start this process's heartbeat on the running event loop, once."""
    loop = asyncio.get_running_loop()
    task = _heartbeats.get(loop)
    if task is None or task.done():
        _heartbeats[loop] = loop.create_task(_beat_forever(), name="presence-heartbeat")


async def _beat_forever() -> None:
    while True:
        await asyncio.sleep(settings.CHAT_PRESENCE_HEARTBEAT)
        try:
            for gone in await database_sync_to_async(heartbeat)():
                await database_sync_to_async(announce_presence)(gone.room, gone.user, "left")
        except Exception:
            log.exception(
                "presence heartbeat failed; retrying in %ss", settings.CHAT_PRESENCE_HEARTBEAT
            )
