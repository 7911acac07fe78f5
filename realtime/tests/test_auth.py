"""Who is on a socket (realtime/auth.py): found in batches, as channels' get_user finds it.

The batch must give every session the answer channels.auth.get_user gives it alone, for
every kind of session a hostile or merely stale cookie can name, mixed in one batch (a
cookie that is no key at all never reaches it: the session store drops it).
"""

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.auth import get_user
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conftest import logged_in
from realtime.auth import users_of
from site_config.sessions import SessionStore

pytestmark = pytest.mark.django_db(transaction=True)


def scope(session: SessionStore) -> Any:
    """A scope with only a session: all channels' get_user reads."""
    return {"session": session}


def session_key(user: Any) -> str:
    return logged_in(user).cookies[settings.SESSION_COOKIE_NAME].value


def kinds_of_session(make_user: Any) -> dict[str, str | None]:
    """A session key for each case (None: no cookie)."""
    alice, bob, carol, dave, eve = (make_user(n) for n in ("alice", "bob", "carol", "dave", "eve"))

    def anonymous() -> str | None:
        session = SessionStore()
        session["something"] = "but no user"
        session.create()
        return session.session_key

    def tampered(user: Any) -> str | None:
        session = logged_in(user).session
        session["_auth_user_hash"] = "not the hash"
        session.save()
        return session.session_key

    keys: dict[str, str | None] = {
        "signed in": session_key(alice),
        "the same user again (another tab)": session_key(alice),
        "another user": session_key(bob),
        "no cookie": None,
        "a key nobody has": "a" * 32,
        "password changed since": session_key(carol),
        "deactivated since": session_key(dave),
        "expired": session_key(eve),
        "a session without a user": anonymous(),
        "a hash that does not match": tampered(alice),
    }
    carol.set_password("another one entirely")
    carol.save()
    dave.is_active = False
    dave.save()
    Session.objects.filter(session_key=keys["expired"]).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    frank = make_user("frank")
    keys["user deleted since"] = session_key(frank)
    frank.delete()
    return keys


async def test_a_batch_finds_for_each_session_what_channels_get_user_finds_alone(make_user):
    keys = await sync_to_async(kinds_of_session)(make_user)
    sessions = await Session.objects.acount()
    batched = await sync_to_async(users_of)(list(keys.values()))
    # Only read: a session that no longer vouches for its user is refused, not flushed.
    assert await Session.objects.acount() == sessions
    alone = [await get_user(scope(SessionStore(key))) for key in keys.values()]

    def who(user: Any) -> tuple[bool, Any]:
        return (user.is_authenticated, user.pk)

    assert {case: who(u) for case, u in zip(keys, batched, strict=True)} == {
        case: who(u) for case, u in zip(keys, alone, strict=True)
    }
    signed_in = {case for case, u in zip(keys, batched, strict=True) if u.is_authenticated}
    assert signed_in == {"signed in", "the same user again (another tab)", "another user"}


async def test_a_batch_of_sessions_is_two_queries_whatever_its_size(make_user):
    keys = await sync_to_async(lambda: [session_key(make_user(f"user{i}")) for i in range(20)])()

    def find() -> list[Any]:
        with CaptureQueriesContext(connection) as queries:
            users = users_of(keys)
        assert len(queries) == 2, [q["sql"] for q in queries]
        return users

    users = await sync_to_async(find)()
    assert [u.username for u in users] == [f"user{i}" for i in range(20)]


async def test_sockets_connecting_together_each_get_their_own_user(connect, make_user, lobby):
    """Through the whole stack, at once (one batch): each socket is its own user, and the
    ones without a valid session are closed as signed out."""
    users = await sync_to_async(lambda: [make_user(f"user{i}") for i in range(12)])()
    sockets = await asyncio.gather(
        *(connect(user, settle=False) for user in users),
        *(connect(None, settle=False) for _ in range(3)),
    )
    for socket in sockets[:12]:
        await socket.settle()
        # (Its own entry is in the online list it is sent: it is online as itself.)
        assert f'id="online-user-{socket.user.pk}"' in socket.settled
    for socket in sockets[12:]:
        assert await socket.receive_close() == 4401
