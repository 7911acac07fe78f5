"""Access re-checked where it changes.

A socket stays open for hours, and what let it in can change under it from anywhere: the
admin, a management command, the ORM, another process. So every change that can take
access away (a user's active or staff flag or password, a user or session deleted, a
room's visibility or owner, a room deleted, members removed) asks the sockets it
concerns, on every process, to decide their access again: a small "access.check" event
to their user's, room's or session's group, which RoomConsumer.access_check answers with
services.socket_access, closing with 4401 or 4403 when access is gone.

The event goes out once the transaction commits, so that the check reads the new rows.
"""

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

import realtime
from rooms import services
from rooms.consumers import CLOSE_UNAUTHENTICATED
from rooms.models import Room

log = logging.getLogger(__name__)

# The user fields socket access rests on (is_active, is_staff: can_enter; password: the
# session's auth hash). A save naming none of them (a login's last_login) changes nothing.
USER_ACCESS_FIELDS = frozenset({"is_active", "is_staff", "password"})
# The room fields can_enter reads (a save of its sequence counter alone changes nothing).
ROOM_ACCESS_FIELDS = frozenset({"visibility", "owner", "owner_id"})

ACCESS_CHECK = {"type": "access.check"}


@receiver(user_logged_out)
def close_sockets_on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    # Runs before the session is flushed, so the key still names the sockets it opened.
    # (The flush deletes the session's row, which re-checks them too; this also serves
    # session engines without rows.)
    if request is not None and request.session.session_key:
        services.close_session_sockets(request.session.session_key, CLOSE_UNAUTHENTICATED)


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def recheck_user_after_save(
    sender: Any, instance: Any, created: bool, update_fields: Any, using: str, **kwargs: Any
) -> None:
    if created or (update_fields is not None and not USER_ACCESS_FIELDS & set(update_fields)):
        return
    publish_access_check(services.user_group(instance.pk), using=using)


@receiver(post_delete, sender=settings.AUTH_USER_MODEL)
def recheck_user_after_delete(sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
    publish_access_check(services.user_group(instance.pk), using=using)


@receiver(post_delete, sender="sessions.Session")
def recheck_session_after_delete(sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
    # A session deleted anywhere (logout, the admin, clearsessions, a cycled key) leaves
    # its sockets unauthenticated: they close with 4401.
    publish_access_check(services.session_group(instance.session_key), using=using)


@receiver(post_save, sender=Room)
def recheck_room_after_save(
    sender: Any, instance: Room, created: bool, update_fields: Any, using: str, **kwargs: Any
) -> None:
    if created:  # nobody is in a new room yet
        return
    if update_fields is not None and not ROOM_ACCESS_FIELDS & set(update_fields):
        return
    publish_access_check(services.room_group(instance.pk), using=using)


@receiver(post_delete, sender=Room)
def recheck_room_after_delete(sender: Any, instance: Room, using: str, **kwargs: Any) -> None:
    publish_access_check(services.room_group(instance.pk), using=using)


@receiver(m2m_changed, sender=Room.members.through)
def recheck_after_members_left(
    sender: Any,
    instance: Any,
    action: str,
    reverse: bool,
    pk_set: set[Any] | None,
    using: str,
    **kwargs: Any,
) -> None:
    if action not in {"post_remove", "post_clear"}:
        return  # adding members takes nobody's access away
    if reverse:  # user.member_rooms.remove(...) or .clear(): that user's sockets
        groups = [services.user_group(instance.pk)]
    elif action == "post_remove":  # room.members.remove(...), as the admin's form does
        groups = [services.user_group(pk) for pk in sorted(pk_set or ())]
    else:  # room.members.clear(): whoever was in it
        groups = [services.room_group(instance.pk)]
    publish_access_check(*groups, using=using)


# Publishing ------------------------------------------------------------------------------


def publish_access_check(*groups: str, using: str | None = None) -> None:
    """Once the transaction on `using` commits (at once outside one), ask every socket in
    `groups`, on every process, to decide its access again. (If the layer fails, it is
    marked failed and every socket resyncs: each reconnect is authorized afresh.)"""
    for group in groups:
        realtime.event_on_commit(group, ACCESS_CHECK, using=using)
