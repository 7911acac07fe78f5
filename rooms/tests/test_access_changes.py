"""Access re-checked where it changes.

Access changed anywhere, not only by the owner's remove button (the admin, the ORM, a
deleted session), reaches the open sockets it concerns: they close with 4401 (the user or
session is no longer valid) or 4403 (the room is no longer theirs), and every other
socket is left alone. A send is authorized against the rows as they are now, so a
change that sends no signal at all (a bulk update) is refused at the next send.
"""

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import DatabaseError
from django.utils import timezone

from rooms import services
from rooms.models import Message, PrivateMessage, Room
from rooms.tests.html_forms import form_fields

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async
User = get_user_model()


@pytest.fixture
def sam(make_user) -> Any:
    return make_user("sam", is_staff=True)


@pytest.fixture
def admin(login, make_user) -> Any:
    """A logged-in client of a superuser, for the admin's forms."""
    return login(make_user("root", is_staff=True, is_superuser=True))


def submit_admin_form(
    admin: Any, path: str, change: Callable[[dict[str, list[str]]], None]
) -> None:
    """Open an admin form page, change its fields as a person would, save it."""
    page = admin.get(path)
    assert page.status_code == 200, page.status_code
    fields = form_fields(
        page.content.decode(), "user_form" if "/auth/user/" in path else "room_form"
    )
    change(fields)
    response = admin.post(path, fields)
    assert response.status_code == 302, response.content.decode()[:3000]


async def admin_changes(
    admin: Any, path: str, change: Callable[[dict[str, list[str]]], None]
) -> None:
    await sync_to_async(submit_admin_form)(admin, path, change)


def unchecked(name: str) -> Callable[[dict[str, list[str]]], None]:
    def untick(fields: dict[str, list[str]]) -> None:
        fields.pop(name)

    return untick


async def stored() -> tuple[int, int]:
    return await db(Message.objects.count)(), await db(PrivateMessage.objects.count)()


async def assert_still_sends(socket: Any, text: str = "still here") -> None:
    """It is open and allowed: a send goes through (so any access check that was under
    way when it was sent has finished: they share the one database thread)."""
    await socket.send(text)
    await socket.receive_sent()


# The user: active, staff, password, session ------------------------------------------------


Change = Callable[[Any, Any], Awaitable[None]]


def unset_with_the_orm(flag: str) -> Change:
    """A change that turns a user's `flag` off through the ORM (a save, as code does)."""

    async def change(admin: Any, user: Any) -> None:
        setattr(user, flag, False)
        await db(user.save)()

    return change


def unset_in_the_admin(flag: str) -> Change:
    """A change that unticks a user's `flag` in the admin's change form, over HTTP."""

    async def change(admin: Any, user: Any) -> None:
        await admin_changes(admin, f"/admin/auth/user/{user.pk}/change/", unchecked(flag))

    return change


@pytest.mark.parametrize(
    "deactivate",
    [unset_with_the_orm("is_active"), unset_in_the_admin("is_active")],
    ids=["orm", "admin"],
)
async def test_deactivating_a_user_closes_all_their_sockets_with_4401(
    gather, connect, admin, alice, bob, lobby, secret, deactivate
):
    alice_in_lobby, bob_in_lobby = await gather("lobby", alice, bob)
    bob_in_secret = await connect(bob, "secret")
    await bob_in_secret.expect_presence("bob", "joined")
    alice_in_secret = await connect(alice, "secret")
    await alice_in_secret.expect_presence("alice", "joined")
    await bob_in_secret.expect_presence("alice", "joined")

    await deactivate(admin, bob)

    assert await bob_in_lobby.receive_close() == 4401
    assert await bob_in_secret.receive_close() == 4401
    await alice_in_lobby.assert_quiet()
    await alice_in_secret.assert_quiet()
    await assert_still_sends(alice_in_lobby)
    await bob_in_lobby.disconnect(4401)  # the browser's side: then everyone sees bob leave
    await alice_in_lobby.expect_presence("bob", "left")


async def test_a_deactivated_user_cannot_send_a_private_message_through_an_open_socket(
    gather, alice, bob, lobby
):
    alice_socket, bob_socket = await gather("lobby", alice, bob)
    # A bulk update sends no signal: nothing tells the socket, the send itself is refused.
    await db(User.objects.filter(pk=bob.pk).update)(is_active=False)

    await bob_socket.send("/pm alice one last word")

    assert await bob_socket.receive_close() == 4401
    assert await stored() == (0, 0)
    await alice_socket.assert_quiet()


@pytest.mark.parametrize(
    "demote",
    [unset_with_the_orm("is_staff"), unset_in_the_admin("is_staff")],
    ids=["orm", "admin"],
)
async def test_demoting_from_staff_closes_their_staff_room_sockets_with_4403_only(
    gather, admin, sam, lobby, ops, demote
):
    (sam_in_ops,) = await gather("ops", sam)
    (sam_in_lobby,) = await gather("lobby", sam)

    await demote(admin, sam)

    assert await sam_in_ops.receive_close() == 4403
    await sam_in_lobby.assert_quiet()
    await assert_still_sends(sam_in_lobby)


async def test_a_send_after_a_silent_demotion_is_refused_with_4403(gather, sam, ops):
    (sam_in_ops,) = await gather("ops", sam)
    await db(User.objects.filter(pk=sam.pk).update)(is_staff=False)

    await sam_in_ops.send("am I still staff?")

    assert await sam_in_ops.receive_close() == 4403
    assert await stored() == (0, 0)


async def change_password_with_the_orm(admin: Any, user: Any) -> None:
    user.set_password("a new password, never used")
    await db(user.save)()


async def reset_password_in_the_admin(admin: Any, user: Any) -> None:
    def new_password(fields: dict[str, list[str]]) -> None:
        fields["password1"] = fields["password2"] = ["a new password, never used"]

    await admin_changes(admin, f"/admin/auth/user/{user.pk}/password/", new_password)


@pytest.mark.parametrize("change", [change_password_with_the_orm, reset_password_in_the_admin])
async def test_a_password_change_closes_the_sockets_of_every_session_with_4401(
    gather, connect, admin, alice, bob, lobby, change
):
    alice_socket, bob_socket = await gather("lobby", alice, bob)
    bob_elsewhere = await connect(bob, "lobby")  # another session (browser) of bob's
    await bob_elsewhere.ping()

    await change(admin, bob)

    assert await bob_socket.receive_close() == 4401
    assert await bob_elsewhere.receive_close() == 4401
    await alice_socket.assert_quiet()
    await assert_still_sends(alice_socket)


async def test_deleting_a_session_closes_its_sockets_alone_with_4401(
    gather, connect, login, alice, bob, lobby
):
    alice_socket, bob_socket = await gather("lobby", alice, bob)
    bobs_other_browser = await sync_to_async(login)(bob)
    bob_elsewhere = await connect(bob, "lobby", client=bobs_other_browser)
    await bob_elsewhere.ping()

    await db(Session.objects.filter(session_key=bobs_other_browser.session.session_key).delete)()

    assert await bob_elsewhere.receive_close() == 4401
    await bob_socket.assert_quiet()
    await assert_still_sends(bob_socket)
    await alice_socket.receive()  # bob's message


async def test_logging_in_elsewhere_and_unrelated_changes_close_nothing(
    gather, admin, client, password, alice, bob, lobby
):
    alice_socket, bob_socket = await gather("lobby", alice, bob)

    # A login saves last_login alone; the admin's full save of bob re-checks his sockets.
    credentials = {"username": "bob", "password": password}
    response = await sync_to_async(client.post)("/accounts/login/", credentials)
    assert response.status_code == 302

    def rename(fields: dict[str, list[str]]) -> None:
        fields["first_name"] = ["Robert"]

    await admin_changes(admin, f"/admin/auth/user/{bob.pk}/change/", rename)

    await bob_socket.assert_quiet()
    await assert_still_sends(bob_socket)
    await alice_socket.receive()


async def test_deleting_a_user_closes_their_sockets_with_4401(gather, alice, bob, carol, lobby):
    alice_socket, carol_socket = await gather("lobby", alice, carol)
    (bob_socket,) = await gather("lobby", bob)
    for socket in (alice_socket, carol_socket):
        await socket.expect_presence("bob", "joined")

    await db(User.objects.filter(pk=bob.pk).delete)()

    assert await bob_socket.receive_close() == 4401
    await alice_socket.assert_quiet()


# The room: visibility, members ---------------------------------------------------------


async def make_staff_only_with_the_orm(admin: Any, room: Room) -> None:
    room.visibility = Room.Visibility.STAFF
    await db(room.save)()


async def make_staff_only_in_the_admin(admin: Any, room: Room) -> None:
    def staff_only(fields: dict[str, list[str]]) -> None:
        fields["visibility"] = [Room.Visibility.STAFF]

    await admin_changes(admin, f"/admin/rooms/room/{room.pk}/change/", staff_only)


@pytest.mark.parametrize("change", [make_staff_only_with_the_orm, make_staff_only_in_the_admin])
async def test_making_a_room_staff_only_closes_everyone_but_staff_with_4403(
    gather, admin, alice, bob, sam, lobby, change
):
    alice_socket, bob_socket, sam_socket = await gather("lobby", alice, bob, sam)

    await change(admin, lobby)

    assert await alice_socket.receive_close() == 4403
    assert await bob_socket.receive_close() == 4403
    await sam_socket.assert_quiet()
    await assert_still_sends(sam_socket)


async def test_making_a_room_private_closes_everyone_but_its_owner_and_members(
    gather, alice, bob, carol, lobby
):
    alice_socket, bob_socket, carol_socket = await gather("lobby", alice, bob, carol)

    await db(lobby.members.add)(bob)
    lobby.visibility = Room.Visibility.PRIVATE
    await db(lobby.save)()

    assert await carol_socket.receive_close() == 4403
    await alice_socket.assert_quiet()
    await bob_socket.assert_quiet()
    await assert_still_sends(bob_socket)


async def remove_in_the_admin(admin: Any, room: Room, user: Any) -> None:
    def without(fields: dict[str, list[str]]) -> None:
        fields["members"] = [pk for pk in fields.get("members", []) if pk != str(user.pk)]

    await admin_changes(admin, f"/admin/rooms/room/{room.pk}/change/", without)


async def remove_with_the_orm(admin: Any, room: Room, user: Any) -> None:
    await db(room.members.remove)(user)


async def remove_from_the_users_side(admin: Any, room: Room, user: Any) -> None:
    await db(user.member_rooms.remove)(room)


async def remove_by_the_owner(admin: Any, room: Room, user: Any) -> None:
    await db(services.remove_member)(room, room.owner, user)


@pytest.mark.parametrize(
    "remove",
    [remove_in_the_admin, remove_with_the_orm, remove_from_the_users_side, remove_by_the_owner],
)
async def test_removing_a_member_closes_their_socket_in_that_room_with_4403(
    gather, connect, admin, alice, bob, carol, lobby, secret, remove
):
    await db(secret.members.add)(carol)
    alice_socket, bob_socket, carol_socket = await gather("secret", alice, bob, carol)
    (bob_in_lobby,) = await gather("lobby", bob)

    await remove(admin, secret, bob)

    assert await bob_socket.receive_close() == 4403
    await bob_in_lobby.assert_quiet()  # his other rooms are unaffected
    for socket in (alice_socket, carol_socket):
        await socket.assert_quiet()
    await assert_still_sends(carol_socket)


async def test_clearing_the_members_closes_everyone_but_the_owner(
    gather, alice, bob, carol, secret
):
    await db(secret.members.add)(carol)
    alice_socket, bob_socket, carol_socket = await gather("secret", alice, bob, carol)

    await db(secret.members.clear)()

    assert await bob_socket.receive_close() == 4403
    assert await carol_socket.receive_close() == 4403
    await alice_socket.assert_quiet()
    await assert_still_sends(alice_socket)


async def test_deleting_a_room_closes_its_sockets_with_4403(gather, alice, bob, lobby, secret):
    alice_socket, bob_socket = await gather("secret", alice, bob)
    (bob_in_lobby,) = await gather("lobby", bob)

    await db(Room.objects.filter(pk=secret.pk).delete)()

    assert await alice_socket.receive_close() == 4403
    assert await bob_socket.receive_close() == 4403
    await bob_in_lobby.assert_quiet()


# What decides ----------------------------------------------------------------------------


async def test_socket_access_decides_from_the_rows_as_they_are_now(login, alice, bob, secret):
    client = await sync_to_async(login)(bob)
    key = client.session.session_key
    decide = db(services.socket_access)

    allowed = await decide(secret.pk, bob.pk, key)
    assert isinstance(allowed, services.Allowed)
    assert (allowed.room, allowed.user) == (secret, bob)
    assert isinstance(await decide(secret.pk, alice.pk, key), services.Unauthenticated)
    assert isinstance(await decide(secret.pk, bob.pk, "no-such-session"), services.Unauthenticated)
    assert isinstance(await decide(secret.pk, bob.pk, None), services.Unauthenticated)
    assert isinstance(await decide(secret.pk + 1000, bob.pk, key), services.Forbidden)

    await db(Room.members.through.objects.filter(room=secret, user=bob).delete)()
    assert isinstance(await decide(secret.pk, bob.pk, key), services.Forbidden)

    await db(User.objects.filter(pk=bob.pk).update)(is_active=False)
    assert isinstance(await decide(secret.pk, bob.pk, key), services.Unauthenticated)


async def test_a_send_is_allowed_in_one_query_with_the_rows_the_orm_reads(
    login, alice, bob, lobby, secret, ops, django_assert_num_queries
):
    """What every send asks: one query (the three of the ORM cost ~1 ms a send), the same
    fresh rows as the ORM's, and a refusal still decided with its reason."""
    key = (await sync_to_async(login)(bob)).session.session_key

    def allowed_in(room: Room) -> services.SocketAccess:
        with django_assert_num_queries(1):
            return services.socket_access(room.pk, bob.pk, key)

    for room in (lobby, secret):  # public; private with bob a member
        allowed = await db(allowed_in)(room)
        assert isinstance(allowed, services.Allowed)
        fresh_room, fresh_user = (
            await db(Room.objects.get)(pk=room.pk),
            await db(User.objects.get)(pk=bob.pk),
        )
        for got, fresh in ((allowed.room, fresh_room), (allowed.user, fresh_user)):
            fields = type(fresh)._meta.concrete_fields
            assert [getattr(got, f.attname) for f in fields] == [
                getattr(fresh, f.attname) for f in fields
            ]
            assert got._state.db == "default" and not got._state.adding
    assert isinstance(await db(services.socket_access)(ops.pk, bob.pk, key), services.Forbidden)

    await db(Session.objects.filter(session_key=key).update)(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    assert isinstance(
        await db(services.socket_access)(lobby.pk, bob.pk, key), services.Unauthenticated
    )


async def test_a_whole_room_is_decided_at_once_and_each_as_alone(
    login, make_user, alice, bob, sam, lobby, secret, ops, django_assert_max_num_queries
):
    """sockets_access, what a burst of access checks calls: the same decisions as
    socket_access one by one, in four queries however many sockets."""
    others = [await db(make_user)(f"user{i}") for i in range(12)]
    await db(secret.members.add)(*others[:4])
    users = [alice, bob, sam, *others]
    keys = [(await sync_to_async(login)(user)).session.session_key for user in users]
    await db(User.objects.filter(pk=others[5].pk).update)(is_active=False)
    await db(Session.objects.filter(session_key=keys[-1]).delete)()
    signed_in = list(zip(users, keys, strict=True))
    sockets = [(room.pk, user.pk, key) for room in (lobby, secret, ops) for user, key in signed_in]
    sockets.append((lobby.pk, bob.pk, keys[0]))  # alice's session, claimed for bob

    def decide_together() -> list[services.SocketAccess]:
        with django_assert_max_num_queries(4):
            return services.sockets_access(sockets)

    together = await db(decide_together)()
    alone = [await db(services.socket_access)(*socket) for socket in sockets]

    def kinds(decisions: list[services.SocketAccess]) -> list[str]:
        return [type(decision).__name__ for decision in decisions]

    assert kinds(together) == kinds(alone)
    in_lobby = len(users) - 2  # all but the inactive user and the ended session
    in_secret = 2 + 4  # alice (the owner), bob and the four members
    in_ops = 1  # sam
    assert kinds(together).count("Allowed") == in_lobby + in_secret + in_ops


async def test_a_failed_check_closes_with_1013_so_the_reconnect_is_authorized_afresh(
    gather, alice, bob, lobby, monkeypatch
):
    alice_socket, bob_socket = await gather("lobby", alice, bob)

    def database_down(sockets: Any) -> Any:
        raise DatabaseError("the database went away")

    monkeypatch.setattr(services, "sockets_access", database_down)
    lobby.visibility = Room.Visibility.PRIVATE
    await db(lobby.save)()

    assert await alice_socket.receive_close() == 1013
    assert await bob_socket.receive_close() == 1013


async def test_a_change_saved_on_the_event_loops_own_thread_is_published_too(
    gather, alice, bob, lobby, monkeypatch
):
    # Code that calls the ORM right on the event loop (allowed with this variable, as the
    # browser suite's fixtures do): async_to_sync would refuse there, so the loop sends it.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    alice_socket, bob_socket = await gather("lobby", alice, bob)

    bob.is_active = False
    bob.save()

    assert await bob_socket.receive_close() == 4401
    await alice_socket.assert_quiet()
