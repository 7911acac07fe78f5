import re

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.test import Client
from django.utils import timezone
from django.utils.dateformat import format as date_format
from pytest_django.asserts import assertRedirects

from rooms import presence, services
from rooms.models import Message, PrivateMessage, Room
from rooms.services import TOO_FAST
from rooms.tests import fragments

pytestmark = pytest.mark.django_db

SLUG_RULE = (
    "Use 1 to 50 lowercase letters, digits or hyphens, starting and ending with a letter or digit."
)


def page(response) -> fragments.Element:
    return fragments.parse(response.content.decode())


# Logging in is required everywhere -------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/rooms/"),
        ("post", "/rooms/"),
        ("get", "/rooms/lobby/"),
        ("post", "/rooms/lobby/messages/"),
        ("post", "/rooms/lobby/members/"),
        ("post", "/rooms/lobby/members/bob/remove/"),
        ("get", "/messages/"),
        ("get", "/messages/bob/"),
        ("post", "/messages/bob/"),
    ],
)
def test_every_chat_page_sends_anonymous_visitors_to_log_in(client, lobby, method, url) -> None:
    data = {"body": "hi", "name": "x", "username": "bob"} if method == "post" else None
    response = getattr(client, method)(url, data)
    assertRedirects(response, f"/accounts/login/?next={url}", fetch_redirect_response=False)
    assert not Message.objects.exists() and not PrivateMessage.objects.exists()
    assert list(Room.objects.values_list("slug", flat=True)) == ["lobby"]


def test_the_home_page_is_the_room_list(alice_client) -> None:
    assertRedirects(alice_client.get("/"), "/rooms/")


@pytest.mark.skipif(
    not settings.SECURE_SSL_REDIRECT, reason="SECURE_SSL_REDIRECT is off in this environment"
)
def test_plain_http_is_redirected_to_https() -> None:
    response = Client().get("/rooms/")
    assert response.status_code == 301
    assert response["Location"] == "https://testserver/rooms/"


def test_pages_carry_a_content_security_policy(alice_client, lobby) -> None:
    policy = alice_client.get("/rooms/lobby/")["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "default-src 'self'" in policy


# The room list ---------------------------------------------------------------------------


def test_room_list_shows_the_rooms_and_how_many_people_are_online(
    alice_client, alice, bob, carol
) -> None:
    general = Room.objects.create(slug="general")
    Room.objects.create(slug="quiet")
    presence.arrive(general, alice, "tab-1")
    presence.arrive(general, alice, "tab-2")  # two tabs are one person
    presence.arrive(general, bob, "tab-3")

    response = alice_client.get("/rooms/")

    assert response.status_code == 200
    rows = {row.attrs["data-room"]: row for row in page(response).find_all(class_="room-row")}
    assert set(rows) == {"general", "quiet"}
    assert rows["general"].one(class_="online-count").text == "2"
    assert rows["quiet"].one(class_="online-count").text == "0"
    assert rows["general"].one("a").attrs["href"] == "/rooms/general/"


def test_room_list_hides_rooms_the_user_may_not_enter(alice_client, make_user) -> None:
    Room.objects.create(slug="general")
    Room.objects.create(slug="theirs", owner=make_user("zed"), visibility=Room.Visibility.PRIVATE)
    Room.objects.create(slug="ops", visibility=Room.Visibility.STAFF)
    rows = page(alice_client.get("/rooms/")).find_all(class_="room-row")
    assert [row.attrs["data-room"] for row in rows] == ["general"]


def test_opening_a_room_by_name_creates_it_and_goes_there(alice_client, alice) -> None:
    response = alice_client.post("/rooms/", {"name": "  Book-Club "})
    assertRedirects(response, "/rooms/book-club/")
    room = Room.objects.get()
    assert (room.slug, room.owner, room.visibility) == ("book-club", alice, "public")


def test_opening_an_existing_room_by_name_joins_it(alice_client, make_user) -> None:
    existing = Room.objects.create(slug="general", owner=make_user("zed"))
    assertRedirects(alice_client.post("/rooms/", {"name": "general"}), "/rooms/general/")
    assert list(Room.objects.all()) == [existing]


def test_opening_a_members_only_room_makes_it_private_to_its_owner(alice_client, alice) -> None:
    alice_client.post("/rooms/", {"name": "plans", "private": "on"})
    room = Room.objects.get()
    assert (room.visibility, room.owner) == (Room.Visibility.PRIVATE, alice)


@pytest.mark.parametrize("name", ["-bad", "two words", "x" * 51, "semi;colon"])
def test_a_bad_room_name_shows_the_form_error_and_creates_nothing(alice_client, name) -> None:
    response = alice_client.post("/rooms/", {"name": name})
    assert response.status_code == 400
    errors = [p.text for p in page(response).find_all(class_="field-error")]
    too_long = "Ensure this value has at most 50 characters (it has 51)."
    assert errors and set(errors) <= {SLUG_RULE, too_long}
    assert not Room.objects.exists()


def test_opening_someone_elses_private_room_by_name_is_refused_as_taken(
    alice_client, make_user
) -> None:
    # The answer to any taken name: it says no more than "taken" (test_rooms_creation.py).
    Room.objects.create(slug="theirs", owner=make_user("zed"), visibility=Room.Visibility.PRIVATE)
    response = alice_client.post("/rooms/", {"name": "theirs"})
    assert response.status_code == 409
    errors = [p.text for p in page(response).find_all(class_="field-error")]
    assert errors == ["There is already a room named #theirs: choose another name for a new room."]


# The room page ---------------------------------------------------------------------------


@pytest.mark.parametrize("slug", ["Upper", "-x", "x-", "a_b", "x" * 51, "dots.here"])
def test_an_invalid_room_address_is_404_and_creates_nothing(alice_client, slug) -> None:
    assert alice_client.get(f"/rooms/{slug}/").status_code == 404
    assert not Room.objects.exists()


def test_room_page_shows_the_last_50_messages_with_author_time_and_text(
    alice_client, alice, bob, lobby
) -> None:
    authors = [alice, bob]
    messages = [
        Message.objects.create(room=lobby, author=authors[i % 2], body=f"message number {i}")
        for i in range(51)
    ]

    html = alice_client.get("/rooms/lobby/").content.decode()

    shown = fragments.messages_in(html)
    assert [int(a.attr("data-message-id")) for a in shown] == [m.pk for m in messages[1:]]
    assert f'id="message-{messages[0].pk}"' not in html
    for article, message in zip(shown, messages[1:], strict=True):
        assert article.id == f"message-{message.pk}"
        assert article.attrs["data-author"] == message.author.username
        assert article.one(class_="message-author").text == message.author.username
        assert article.one(class_="message-body").text == message.body
        time = article.one("time")
        local = timezone.localtime(message.created_at)
        assert time.attrs["datetime"] == date_format(local, "c")
        assert time.text == date_format(local, "H:i")


def test_room_page_has_the_stable_hooks_tests_and_htmx_rely_on(alice_client, lobby, alice) -> None:
    message = Message.objects.create(room=lobby, author=alice, body="hi")
    document = page(alice_client.get("/rooms/lobby/"))

    log = document.one_by_id("chat-log")
    assert (log.attrs["role"], log.attrs["aria-live"]) == ("log", "polite")
    assert document.by_id("chat-live") in log.iter()
    assert document.by_id("online-users") is not None
    composer = document.one_by_id("composer")
    assert composer.tag == "form" and "ws-send" in composer.attrs
    assert composer.attrs["action"] == "/rooms/lobby/messages/"
    assert composer.attrs["method"] == "post"
    assert composer.find("textarea", name="body") is not None
    socket = document.one(hx_ext="ws,oob-optional")
    # The page catches up from the room's sequence number, not from an id.
    # (read=1: the newest page, so what the socket delivers counts as read: attention.py)
    assert socket.attrs["ws-connect"] == f"/ws/rooms/lobby/?after={message.seq}&read=1"
    assert document.one_by_id("chat-cursor").attrs["data-seq"] == str(message.seq)
    article = document.one_by_id(f"message-{message.pk}")
    assert article.attrs["data-message-id"] == str(message.pk)
    assert article.attrs["data-seq"] == str(message.seq)
    assert article.attrs["data-author"] == "alice"
    assert article.one(class_="message-body").text == "hi"


def test_room_page_lists_who_is_online(alice_client, alice, bob, carol, lobby) -> None:
    presence.arrive(lobby, bob, "tab-1")
    presence.arrive(lobby, alice, "tab-2")
    html = alice_client.get("/rooms/lobby/").content.decode()
    assert fragments.online_usernames(html) == ["alice", "bob"]


def test_an_empty_room_asks_for_the_first_message_and_connects_after_zero(
    alice_client, lobby
) -> None:
    document = page(alice_client.get("/rooms/lobby/"))
    assert document.find(class_="chat-empty") is not None
    socket = document.one(hx_ext="ws,oob-optional")
    assert socket.attrs["ws-connect"] == "/ws/rooms/lobby/?after=0&read=1"


def test_user_text_is_escaped_in_the_page(alice_client, alice, lobby) -> None:
    Message.objects.create(room=lobby, author=alice, body="<script>alert(1)</script>")
    html = alice_client.get("/rooms/lobby/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)" not in html


def test_forbidden_rooms_are_404_whether_private_or_staff_only(
    login, carol, make_user, secret, ops
) -> None:
    carol_client = login(carol)
    assert carol_client.get("/rooms/secret/").status_code == 404
    assert carol_client.get("/rooms/ops/").status_code == 404
    staff_client = login(make_user("sam", is_staff=True))
    assert staff_client.get("/rooms/ops/").status_code == 200


def test_members_and_owner_may_open_a_private_room(login, alice, bob, secret) -> None:
    assert login(alice).get("/rooms/secret/").status_code == 200
    assert login(bob).get("/rooms/secret/").status_code == 200


# Posting without JavaScript --------------------------------------------------------------


def test_posting_the_composer_stores_the_message_and_redirects_back(alice_client, alice, lobby):
    response = alice_client.post("/rooms/lobby/messages/", {"body": "  no JS needed  "})
    assertRedirects(response, "/rooms/lobby/")
    message = Message.objects.get()
    assert (message.room, message.author, message.body) == (lobby, alice, "no JS needed")
    assert "no JS needed" in alice_client.get("/rooms/lobby/").content.decode()


def test_a_form_posted_again_with_its_send_id_is_stored_once(alice_client, bob, lobby):
    """Each page's composer has a send id of its own; the same form posted twice (its
    answer lost, the browser resends it) stores one message, and answers both."""
    token = fragments.composer_token(alice_client.get("/rooms/lobby/").content.decode())
    assert token and re.fullmatch("[0-9a-f]{32}", token)
    assert fragments.composer_token(alice_client.get("/rooms/lobby/").content.decode()) != token
    for _ in range(2):
        response = alice_client.post("/rooms/lobby/messages/", {"body": "once", "token": token})
        assertRedirects(response, "/rooms/lobby/")
    assert list(Message.objects.values_list("body", flat=True)) == ["once"]

    token = fragments.composer_token(alice_client.get("/messages/bob/").content.decode())
    assert token and re.fullmatch("[0-9a-f]{32}", token)
    for _ in range(2):
        response = alice_client.post("/messages/bob/", {"body": "once", "token": token})
        assertRedirects(response, "/messages/bob/")
    assert list(PrivateMessage.objects.values_list("body", flat=True)) == ["once"]


def test_the_posting_address_only_accepts_post(alice_client, lobby) -> None:
    assert alice_client.get("/rooms/lobby/messages/").status_code == 405


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("   ", "Write something first: an empty message was not sent."),
        ("x" * 4001, "That message is too long: the limit is 4,000 characters (it has 4001)."),
        ("/pm nobody hi", "There is no user named “nobody”: the private message was not sent."),
    ],
)
def test_an_invalid_post_shows_the_error_and_stores_nothing(alice_client, lobby, body, error):
    response = alice_client.post("/rooms/lobby/messages/", {"body": body})
    assert response.status_code == 400
    assert fragments.composer_errors(response.content.decode()) == [error]
    assert not Message.objects.exists() and not PrivateMessage.objects.exists()


def test_a_pm_command_posted_without_javascript_is_private(alice_client, alice, bob, lobby):
    response = alice_client.post("/rooms/lobby/messages/", {"body": "/pm bob hi"})
    assert not Message.objects.exists()
    pm = PrivateMessage.objects.get()
    assert (pm.sender, pm.recipient, pm.body) == (alice, bob, "hi")
    # Back to the room, which says what was sent and where (the URL names its id only).
    assertRedirects(response, f"/rooms/lobby/?sent={pm.pk}")
    status = page(alice_client.get(f"/rooms/lobby/?sent={pm.pk}")).one(class_="composer-status")
    text = " ".join(status.text.split()).replace(" :", ":").replace("( ", "(").replace(" )", ")")
    assert text == "Private message sent to bob: “hi” (see the conversation)"
    links = [a.attrs["href"] for a in status.find_all("a")]
    assert links == ["/messages/bob/", f"/messages/bob/{pm.pk}/#pm-{pm.pk}"]


def test_the_pm_confirmation_shows_only_the_senders_own_messages(
    alice_client, login, alice, bob, lobby
):
    pm = PrivateMessage.objects.create(sender=bob, recipient=alice, body="bob's secret")
    for query in (f"?sent={pm.pk}", "?sent=nope", "?sent=99999999999999999999"):
        document = page(alice_client.get(f"/rooms/lobby/{query}"))
        assert document.find_all(class_="composer-status") == [], query


def test_posting_to_a_room_that_does_not_exist_is_404_and_creates_nothing(alice_client):
    assert alice_client.post("/rooms/nowhere/messages/", {"body": "hi"}).status_code == 404
    assert not Room.objects.exists() and not Message.objects.exists()


def test_posting_to_a_forbidden_room_is_404(login, carol, make_user, secret, ops) -> None:
    carol_client = login(carol)
    assert carol_client.post("/rooms/secret/messages/", {"body": "hi"}).status_code == 404
    assert carol_client.post("/rooms/ops/messages/", {"body": "hi"}).status_code == 404
    assert not Message.objects.exists()


def test_posting_too_fast_is_refused_with_429_and_keeps_the_text(
    alice_client, lobby, monkeypatch
) -> None:
    monkeypatch.setattr(services.rate_limiter, "per_second", 0)  # no refill mid-test
    for i in range(10):
        assert alice_client.post("/rooms/lobby/messages/", {"body": f"m{i}"}).status_code == 302
    response = alice_client.post(
        "/rooms/lobby/messages/", {"body": "one too many", "token": "b" * 32}
    )
    assert response.status_code == 429
    html = response.content.decode()
    assert fragments.composer_errors(html) == [TOO_FAST]
    assert fragments.composer_value(html) == "one too many"
    assert fragments.composer_token(html) == "b" * 32  # (nothing stored: the same send)
    assert Message.objects.count() == 10


def test_room_posts_and_private_messages_draw_on_one_rate_limit(
    alice_client, lobby, bob, monkeypatch
) -> None:
    monkeypatch.setattr(services.rate_limiter, "burst", 2)
    monkeypatch.setattr(services.rate_limiter, "per_second", 0)  # no refill mid-test
    assert alice_client.post("/rooms/lobby/messages/", {"body": "in the room"}).status_code == 302
    assert alice_client.post("/messages/bob/", {"body": "to bob"}).status_code == 302
    response = alice_client.post("/messages/bob/", {"body": "one too many"})
    assert response.status_code == 429
    assert fragments.composer_errors(response.content.decode()) == [TOO_FAST]
    assert PrivateMessage.objects.count() == Message.objects.count() == 1


@pytest.mark.django_db(transaction=True)
async def test_a_message_posted_without_javascript_reaches_open_sockets(
    gather, login, alice, bob
) -> None:
    await database_sync_to_async(Room.objects.create)(slug="lobby")
    (bob_socket,) = await gather("lobby", bob)
    alice_client = await sync_to_async(login)(alice)

    response = await sync_to_async(alice_client.post)(
        "/rooms/lobby/messages/", {"body": "<script>alert(1)</script>"}
    )

    assert (response.status_code, response["Location"]) == (302, "/rooms/lobby/")
    message = await database_sync_to_async(Message.objects.get)()
    html = await bob_socket.receive()
    assert fragments.is_message_fragment(html)
    assert fragments.message_ids(html) == [message.pk]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html


# Private messages ------------------------------------------------------------------------


def test_conversation_page_shows_both_sides_of_the_conversation_only(
    alice_client, alice, bob, carol
) -> None:
    PrivateMessage.objects.create(sender=alice, recipient=bob, body="hi bob")
    PrivateMessage.objects.create(sender=bob, recipient=alice, body="hi alice")
    PrivateMessage.objects.create(sender=carol, recipient=alice, body="not this one")
    PrivateMessage.objects.create(sender=bob, recipient=carol, body="nor this")

    html = alice_client.get("/messages/bob/").content.decode()

    bodies = [a.one(class_="message-body").text for a in fragments.private_messages_in(html)]
    assert bodies == ["hi bob", "hi alice"]


def test_sending_from_the_conversation_page_stores_and_redirects(alice_client, alice, bob):
    response = alice_client.post("/messages/bob/", {"body": " <b>lunch?</b> "})
    assertRedirects(response, "/messages/bob/")
    pm = PrivateMessage.objects.get()
    assert (pm.sender, pm.recipient, pm.body) == (alice, bob, "<b>lunch?</b>")
    html = alice_client.get("/messages/bob/").content.decode()
    assert "&lt;b&gt;lunch?&lt;/b&gt;" in html and "<b>lunch" not in html


def test_an_empty_private_message_is_refused(alice_client, bob) -> None:
    response = alice_client.post("/messages/bob/", {"body": "  "})
    assert response.status_code == 400
    assert fragments.composer_errors(response.content.decode()) == [
        "Write something first: an empty message was not sent."
    ]
    assert not PrivateMessage.objects.exists()


def test_a_conversation_with_an_unknown_or_inactive_user_is_404(alice_client, make_user) -> None:
    make_user("gone", is_active=False)
    assert alice_client.get("/messages/nobody/").status_code == 404
    assert alice_client.get("/messages/gone/").status_code == 404
    assert alice_client.post("/messages/gone/", {"body": "hi"}).status_code == 404
    assert not PrivateMessage.objects.exists()


def test_private_messages_page_lists_the_people_one_has_talked_with_latest_first(
    alice_client, alice, bob, carol, make_user
) -> None:
    dave = make_user("dave")
    PrivateMessage.objects.create(sender=alice, recipient=bob, body="1")
    PrivateMessage.objects.create(sender=alice, recipient=bob, body="2")
    PrivateMessage.objects.create(sender=carol, recipient=alice, body="3")
    PrivateMessage.objects.create(sender=dave, recipient=bob, body="not mine")

    links = page(alice_client.get("/messages/")).one(class_="conversation-list").find_all("a")

    # Latest conversation first, each with its last message.
    assert [
        (
            a.one(class_="conversation-name").text,
            a.attrs["href"],
            a.one(class_="conversation-last").text,
        )
        for a in links
    ] == [
        ("carol", "/messages/carol/", "3"),
        ("bob", "/messages/bob/", "2"),
    ]


# Admin -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "query", "shown", "hidden"),
    [
        ("room", "book", "book-club", "general"),
        ("message", "needle", "a needle here", "haystack"),
        ("privatemessage", "needle", "a needle here", "haystack"),
        ("connection", "bob", "bob", "alice"),
    ],
)
def test_admin_changelists_load_and_search(
    login, make_user, alice, bob, model, query, shown, hidden
) -> None:
    admin = login(make_user("root", is_staff=True, is_superuser=True))
    general = Room.objects.create(slug="general")
    Room.objects.create(slug="book-club")
    for body in ["a needle here", "haystack"]:
        Message.objects.create(room=general, author=alice, body=body)
        PrivateMessage.objects.create(sender=alice, recipient=bob, body=body)
    presence.arrive(general, bob, "tab-1")
    presence.arrive(general, alice, "tab-2")

    assert admin.get(f"/admin/rooms/{model}/").status_code == 200
    response = admin.get(f"/admin/rooms/{model}/", {"q": query})

    assert response.status_code == 200
    rows = page(response).one_by_id("result_list").one("tbody").find_all("tr")
    assert len(rows) == 1
    assert shown in rows[0].text and hidden not in rows[0].text


def test_the_admin_is_closed_to_ordinary_users(alice_client) -> None:
    response = alice_client.get("/admin/rooms/message/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


# Health ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # an async view: its database call runs in a thread
def test_healthz_answers_ok_when_database_and_channel_layer_answer(client) -> None:
    response = client.get("/healthz")
    assert (response.status_code, response.content) == (200, b"ok")
