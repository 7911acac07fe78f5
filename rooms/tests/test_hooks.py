"""Incoming webhooks (rooms/hooks.py): making, showing once, storing hashed, revoking; what
the hook URL accepts and refuses; who may manage hooks; live delivery to an open page."""

import hashlib
import json
import re
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client

from rooms import hooks
from rooms.models import Message, Room, Webhook
from rooms.tests import fragments

pytestmark = pytest.mark.django_db

URL = re.compile(r"https?://[^/\s\"']+/hooks/([A-Za-z0-9_-]+)/")


def make_hook(client: Any, slug: str = "lobby", name: str = "deploy-bot") -> str:
    """Make a hook through the page; its token, read from the answer (the only time)."""
    response = client.post(f"/rooms/{slug}/hooks/", {"name": name})
    assert response.status_code == 201, response.content[:2000]
    html = response.content.decode()
    (token,) = set(URL.findall(html))
    return token


def post_json(token: str, payload: Any, **extra: Any) -> Any:
    """As a script would: no session, no CSRF token (the check is on, as for browsers)."""
    body = payload if isinstance(payload, str | bytes) else json.dumps(payload)
    return Client(enforce_csrf_checks=True).post(
        f"/hooks/{token}/", body, content_type="application/json", secure=True, **extra
    )


# The token's life ---------------------------------------------------------------------


def test_a_hook_is_made_shown_once_stored_hashed_and_posts_as_its_bot(lobby, alice, login):
    client = login(alice)
    token = make_hook(client)
    assert len(token) >= 40
    hook = Webhook.objects.get()
    assert hook.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert hook.bot.username == "deploy-bot" and not hook.bot.has_usable_password()
    # Nowhere in the database as it is.
    assert not Webhook.objects.filter(token_sha256__contains=token).exists()
    # Shown once: the page lists the hook afterwards, never its URL.
    page = client.get("/rooms/lobby/hooks/").content.decode()
    assert "deploy-bot" in page and token not in page and not URL.search(page)

    response = post_json(token, {"text": "Deployed <b>v1.2</b>"})
    assert response.status_code == 200 and response.json() == {"ok": True}
    message = Message.objects.get()
    assert (message.room, message.author, message.body) == (lobby, hook.bot, "Deployed <b>v1.2</b>")
    room_page = client.get("/rooms/lobby/").content.decode()
    assert "Deployed &lt;b&gt;v1.2&lt;/b&gt;" in room_page and "<b>v1.2</b>" not in room_page


def test_a_form_field_works_too(lobby, alice, login):
    token = make_hook(login(alice))
    response = Client(enforce_csrf_checks=True).post(
        f"/hooks/{token}/", {"text": "from a form"}, secure=True
    )
    assert response.status_code == 200, response.content
    assert Message.objects.get().body == "from a form"


def test_revoked_and_wrong_tokens_are_404(lobby, alice, login):
    client = login(alice)
    token = make_hook(client)
    assert post_json(token, {"text": "one"}).status_code == 200
    hook = Webhook.objects.get()
    response = client.post(f"/rooms/lobby/hooks/{hook.pk}/revoke/")
    assert response.status_code == 302
    hook.refresh_from_db()
    assert hook.revoked_at is not None
    response = post_json(token, {"text": "two"})
    assert response.status_code == 404 and response.json()["ok"] is False
    for wrong in (token[:-1], token + "x", "x", token.upper() if token != token.upper() else "y"):
        assert post_json(wrong, {"text": "three"}).status_code == 404
    assert [m.body for m in Message.objects.all()] == ["one"]
    assert "Revoked" in client.get("/rooms/lobby/hooks/").content.decode()


def test_deleting_the_room_deletes_its_hooks(lobby, alice, login):
    token = make_hook(login(alice))
    Room.objects.filter(pk=lobby.pk).delete()
    assert not Webhook.objects.exists()
    assert post_json(token, {"text": "anyone?"}).status_code == 404


def test_a_hook_keeps_posting_when_the_room_is_closed_to_its_owner(lobby, alice, login):
    token = make_hook(login(alice))
    Room.objects.filter(pk=lobby.pk).update(visibility=Room.Visibility.STAFF)
    assert post_json(token, {"text": "still here"}).status_code == 200
    # And the owner still manages it (the room is theirs), though it is closed to them.
    assert login(alice).get("/rooms/lobby/hooks/").status_code == 200


def test_only_get_and_post(lobby, alice, login):
    token = make_hook(login(alice))
    assert Client().get(f"/hooks/{token}/", secure=True).status_code == 405


# Bad requests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ("{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("[1, 2]", "JSON object"),
        ("{}", "No text"),
        ('{"message": "hi"}', "No text"),
        ('{"text": 42}', "must be a string"),
        ('{"text": null}', "No text"),
        ('{"text": ""}', "Write something first"),
        ('{"text": "   \\n  "}', "Write something first"),
        (json.dumps({"text": "x" * 4001}), "too long"),
    ],
)
def test_bad_requests_are_400_with_a_json_error(lobby, alice, login, payload, error):
    token = make_hook(login(alice))
    response = post_json(token, payload)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json()["ok"] is False and error in response.json()["error"]
    assert not Message.objects.exists()


def test_a_flood_is_429_with_retry_after(lobby, alice, login, settings):
    token = make_hook(login(alice))
    sent = [post_json(token, {"text": f"line {i}"}) for i in range(hooks.rate_limiter.burst + 3)]
    statuses = [response.status_code for response in sent]
    assert statuses[: hooks.rate_limiter.burst] == [200] * hooks.rate_limiter.burst
    assert set(statuses[hooks.rate_limiter.burst :]) == {429}
    refused = sent[-1]
    assert int(refused["Retry-After"]) >= 1
    assert "too fast" in refused.json()["error"]
    assert Message.objects.count() == hooks.rate_limiter.burst


def test_each_hook_has_its_own_bucket(lobby, alice, login):
    client = login(alice)
    one, two = make_hook(client, name="one-bot"), make_hook(client, name="two-bot")
    for i in range(hooks.rate_limiter.burst):
        assert post_json(one, {"text": f"{i}"}).status_code == 200
    assert post_json(one, {"text": "more"}).status_code == 429
    assert post_json(two, {"text": "other"}).status_code == 200


@pytest.fixture(autouse=True)
def _full_hook_buckets() -> Any:
    hooks.rate_limiter.reset()
    yield
    hooks.rate_limiter.reset()


# Who manages hooks ---------------------------------------------------------------------


def test_only_the_owner_or_staff_manage_hooks(lobby, secret, alice, bob, carol, make_user, login):
    boss = make_user("boss", is_staff=True)
    token = make_hook(login(alice))
    hook = Webhook.objects.get()
    # bob sees the public room but does not own it: 403. carol may not see the private
    # room: the same 404 as a missing one.
    assert login(bob).get("/rooms/lobby/hooks/").status_code == 403
    assert login(bob).post("/rooms/lobby/hooks/", {"name": "bobs-bot"}).status_code == 403
    assert login(bob).post(f"/rooms/lobby/hooks/{hook.pk}/revoke/").status_code == 403
    assert login(carol).get("/rooms/secret/hooks/").status_code == 404
    assert login(carol).get("/rooms/nowhere/hooks/").status_code == 404
    assert login(bob).get("/rooms/secret/hooks/").status_code == 403  # a member, not owner
    assert Client().get("/rooms/lobby/hooks/", secure=True).status_code == 302  # log in
    # A hook id of another room is a 404 there.
    make_hook(login(alice), slug="secret", name="secret-bot")
    assert login(alice).post(f"/rooms/secret/hooks/{hook.pk}/revoke/").status_code == 404
    hook.refresh_from_db()
    assert hook.revoked_at is None and post_json(token, {"text": "alive"}).status_code == 200
    # Staff may do both.
    assert login(boss).get("/rooms/lobby/hooks/").status_code == 200
    assert login(boss).post(f"/rooms/lobby/hooks/{hook.pk}/revoke/").status_code == 302
    assert post_json(token, {"text": "gone"}).status_code == 404


def test_the_room_header_links_hooks_for_the_owner_and_staff_only(lobby, alice, bob, login):
    assert 'href="/rooms/lobby/hooks/"' in login(alice).get("/rooms/lobby/").content.decode()
    assert 'href="/rooms/lobby/hooks/"' not in login(bob).get("/rooms/lobby/").content.decode()


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("alice", "already exists"),
        ("Alice", "already exists"),
        ("a1ice", "looks like"),
        ("", "required"),
        ("two words", "Enter a valid username"),
        ("\u3164", "invisible"),
    ],
)
def test_a_bot_name_is_held_to_the_rules_of_any_name(lobby, alice, login, name, error):
    response = login(alice).post("/rooms/lobby/hooks/", {"name": name})
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not Webhook.objects.exists()
    assert get_user_model().objects.count() == 1


# Live -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_hooks_message_reaches_an_open_page_live(connect, alice, bob, lobby):
    token = await sync_to_async(lambda: make_hook(_login(alice)))()
    socket = await connect(bob, "lobby")
    await socket.expect_presence("bob", "joined")
    response = await sync_to_async(post_json)(token, {"text": "build <i>green</i>"})
    assert response.status_code == 200
    pushed = await socket.receive()
    (article,) = fragments.messages_in(pushed)
    assert article.attrs["data-author"] == "deploy-bot"
    assert article.one(class_="message-body").text == "build <i>green</i>"
    assert "<i>green</i>" not in pushed


def _login(user: Any) -> Any:
    from conftest import logged_in

    return logged_in(user)
