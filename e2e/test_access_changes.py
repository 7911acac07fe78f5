"""Access changed in the admin on one process closes the sockets it concerns on another:
two Daphnes on one PostgreSQL database and one Redis.

The admin works over HTTP on process one, through its real change forms; the sockets
(servers.RoomSocket, as htmx holds them) are on process two. Each affected socket gets
its close code; every other socket stays open, which a sentinel proves: sent through the
room's group on the same Redis after the change, it must be the next frame, and a send
after it must still go through.

Needs redis-server and the local PostgreSQL: skipped without them, failed in CI.
"""

import asyncio
import time
import uuid
from typing import Any

import pytest

from e2e import servers
from e2e.test_multiprocess import LIVE, env  # noqa: F401 (env: a fixture)
from rooms import services
from rooms.tests.html_forms import as_pairs, form_fields

pytestmark = [pytest.mark.e2e, pytest.mark.multiprocess]

ADMIN_PASSWORD = f"Pw-{uuid.uuid4().hex}"

# Rooms, a superuser who can log in, and sam made staff, in one `manage.py shell`.
SETUP = """
import json, sys
from django.contrib.auth import get_user_model
from rooms.models import Room
spec = json.loads(sys.stdin.read())
User = get_user_model()
User.objects.create_superuser(spec["admin"], password=spec["password"])
User.objects.filter(username=spec["staff"]).update(is_staff=True)
users = {u.username: u for u in User.objects.filter(username__in=spec["users"])}
ids = {}
for slug, visibility, owner, members in spec["rooms"]:
    room = Room.objects.create(slug=slug, visibility=visibility, owner=users.get(owner))
    room.members.add(*(users[name] for name in members))
    ids[slug] = room.pk
print(json.dumps({"rooms": ids, "users": {name: user.pk for name, user in users.items()}}))
"""


def name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:6]}"


class Admin:
    """A superuser in the admin over HTTP, submitting its change forms as a browser does."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.client = servers.HttpClient(base_url, follow_redirects=False)
        reply = self.client.post_form(
            "/accounts/login/", {"username": username, "password": password}
        )
        assert reply.status == 302, reply.text[:2000]

    def change(self, path: str, form_id: str, edit: Any) -> float:
        """Open a change form, `edit` its fields, save it; when the save was posted."""
        page = self.client.get(path)
        assert page.status == 200, page.status
        fields = form_fields(page.text, form_id)
        edit(fields)
        base = self.client.base_url
        posted_at = time.monotonic()
        reply = self.client.request(
            "POST",
            path,
            form=as_pairs(fields),
            headers={"Origin": base, "Referer": base + path},
        )
        assert reply.status == 302, reply.text[:3000]  # saved: back to the list
        return posted_at

    async def change_room(self, room_id: int, edit: Any) -> float:
        path = f"/admin/rooms/room/{room_id}/change/"
        return await asyncio.to_thread(self.change, path, "room_form", edit)

    async def change_user(self, user_id: int, edit: Any) -> float:
        path = f"/admin/auth/user/{user_id}/change/"
        return await asyncio.to_thread(self.change, path, "user_form", edit)


async def assert_open_and_quiet(
    socket: servers.RoomSocket, redis_url: str, room_id: int, username: str
) -> None:
    """No close is on its way to `socket`, and it may still send. A sentinel sent now
    through its room's group on Redis, the path every access check of that room took
    before it, reaches it (frames before it, such as presence lines, are fine: a close
    would end the wait); then a message it sends comes back."""
    from channels_redis.pubsub import RedisPubSubChannelLayer

    layer = RedisPubSubChannelLayer(hosts=[redis_url])
    group = services.room_group(room_id)
    sentinel = f"<!-- sentinel {uuid.uuid4().hex} -->"
    try:
        await layer.group_send(group, {"type": "hub.html", "html": sentinel, "group": group})
    finally:
        await layer.flush()
    await socket.wait_for(lambda s: any(sentinel in frame for frame in s.frames), LIVE)
    text = f"still here {uuid.uuid4().hex[:6]}"
    await socket.send(text)
    await socket.wait_for(lambda s: (username, text) in s.messages(), LIVE)


async def test_admin_changes_on_one_process_close_the_sockets_on_the_other(
    env: dict[str, str],  # noqa: F811
    redis_server: servers.RedisProcess,
) -> None:
    names = {role: name(role) for role in ("root", "alice", "bob", "carol", "dave", "sam")}
    slugs = {kind: f"{kind}-{uuid.uuid4().hex[:8]}" for kind in ("secret", "plaza", "hall")}
    sessions = servers.make_sessions(
        env, [names[r] for r in ("alice", "bob", "carol", "dave", "sam")]
    )
    made = servers.run_shell(
        env,
        SETUP,
        {
            "admin": names["root"],
            "password": ADMIN_PASSWORD,
            "staff": names["sam"],
            "users": list(sessions),
            "rooms": [
                (slugs["secret"], "private", names["alice"], [names["bob"]]),
                (slugs["plaza"], "public", None, []),
                (slugs["hall"], "public", None, []),
            ],
        },
    )
    room_ids, user_ids = made["rooms"], made["users"]

    with servers.daphne(env) as one, servers.daphne(env) as two:
        admin = Admin(one.url, names["root"], ADMIN_PASSWORD)

        async def open_socket(who: str, kind: str) -> servers.RoomSocket:
            socket = await servers.RoomSocket.open(
                two.url, slugs[kind], sessions[names[who]], name=f"{who} in {kind}"
            )
            await socket.wait_for(lambda s: names[who] in s.online_usernames(), LIVE)
            return socket

        bob_in_secret = await open_socket("bob", "secret")
        alice_in_secret = await open_socket("alice", "secret")
        bob_in_plaza = await open_socket("bob", "plaza")
        carol_in_plaza = await open_socket("carol", "plaza")
        dave_in_hall = await open_socket("dave", "hall")
        sam_in_hall = await open_socket("sam", "hall")
        figures = []

        # A member removed from a private room: that socket alone, with 4403.
        def without_bob(fields: dict[str, list[str]]) -> None:
            fields["members"] = [
                pk for pk in fields["members"] if pk != str(user_ids[names["bob"]])
            ]

        posted_at = await admin.change_room(room_ids[slugs["secret"]], without_bob)
        assert await bob_in_secret.wait_close(LIVE) == 4403
        figures.append(("member removed", time.monotonic() - posted_at))

        # A user deactivated: every socket of theirs, with 4401.
        def deactivated(fields: dict[str, list[str]]) -> None:
            fields.pop("is_active")

        posted_at = await admin.change_user(user_ids[names["carol"]], deactivated)
        assert await carol_in_plaza.wait_close(LIVE) == 4401
        figures.append(("user deactivated", time.monotonic() - posted_at))

        # A room made staff-only: everyone but staff, with 4403.
        def staff_only(fields: dict[str, list[str]]) -> None:
            fields["visibility"] = ["staff"]

        posted_at = await admin.change_room(room_ids[slugs["hall"]], staff_only)
        assert await dave_in_hall.wait_close(LIVE) == 4403
        figures.append(("room made staff-only", time.monotonic() - posted_at))

        for what, seconds in figures:  # (figures for the README, not asserted)
            print(f"{what}: closed {seconds * 1000:.0f} ms after the admin's save was posted")

        # Everyone else is still in, and still allowed to send.
        await assert_open_and_quiet(
            alice_in_secret, redis_server.url, room_ids[slugs["secret"]], names["alice"]
        )
        await assert_open_and_quiet(
            bob_in_plaza, redis_server.url, room_ids[slugs["plaza"]], names["bob"]
        )
        await assert_open_and_quiet(
            sam_in_hall, redis_server.url, room_ids[slugs["hall"]], names["sam"]
        )

        for socket in (alice_in_secret, bob_in_plaza, sam_in_hall):
            await socket.close()
        log_one, log_two = one.log(), two.log()
        assert f"{names['bob']} lost access to {slugs['secret']}" in log_two, log_two
        assert f"{names['carol']} lost access to {slugs['plaza']}" in log_two, log_two
        assert f"{names['dave']} lost access to {slugs['hall']}" in log_two, log_two
        for log in (log_one, log_two):
            assert "Traceback" not in log, log
