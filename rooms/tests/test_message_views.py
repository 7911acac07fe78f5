"""A message's actions over HTTP: edit, delete, react, reply. Each is a plain form without
JavaScript (its own page; POST, then back to the room) and an htmx fragment with it; every
refusal is a page (or fragment) that says why, and changes nothing."""

from datetime import timedelta

import pytest
from django.utils import timezone
from pytest_django.asserts import assertRedirects

from rooms import changes, services
from rooms.models import Message, Reaction, Room
from rooms.tests import fragments

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def page(response) -> fragments.Element:
    return fragments.parse(response.content.decode())


def alert(response) -> str:
    return page(response).one(class_="message-panel-error").text


@pytest.fixture
def hello(lobby, alice) -> Message:
    return Message.objects.create(room=lobby, author=alice, body="helo")


@pytest.fixture
def bob_client(login, bob):
    return login(bob)


def url(message: Message, action: str) -> str:
    return f"/rooms/{message.room.slug}/messages/{message.pk}/{action}/"


# Who may: every action, every kind of visitor ------------------------------------------


@pytest.mark.parametrize("action", ["edit", "delete", "reactions"])
@pytest.mark.parametrize("method", ["get", "post"])
def test_a_room_the_user_may_not_enter_answers_404_for_every_action(
    login, carol, secret, alice, action, method
):
    message = Message.objects.create(room=secret, author=alice, body="members only")
    response = getattr(login(carol), method)(url(message, action), {"body": "x", "emoji": "👍"})
    assert response.status_code == 404
    assert Message.objects.get(pk=message.pk).body == "members only"
    assert not Reaction.objects.exists()


@pytest.mark.parametrize("action", ["edit", "delete", "reactions"])
def test_a_message_of_another_room_deleted_or_unknown_is_404(
    alice_client, alice, lobby, other_room, action
):
    elsewhere = Message.objects.create(room=other_room, author=alice, body="elsewhere")
    deleted = Message.objects.create(room=lobby, author=alice, body="gone")
    changes.delete_message(deleted, alice)
    for path in (
        f"/rooms/lobby/messages/{elsewhere.pk}/{action}/",
        url(deleted, action),
        f"/rooms/lobby/messages/{10**15}/{action}/",
        f"/rooms/lobby/messages/{10**20}/{action}/",  # past the database's integers
    ):
        assert alice_client.get(path).status_code == 404
        assert alice_client.post(path, {"body": "x", "emoji": "👍"}).status_code == 404
    assert Message.objects.get(pk=elsewhere.pk).body == "elsewhere"


def test_anonymous_visitors_are_sent_to_log_in(client, hello):
    for action in ("edit", "delete", "reactions"):
        response = client.post(url(hello, action), {"body": "x", "emoji": "👍"})
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# Edit ----------------------------------------------------------------------------------


def test_without_javascript_the_author_edits_through_a_form_page(alice_client, hello):
    form = page(alice_client.get(url(hello, "edit"))).one("form", class_="edit-form")
    assert form.attrs["action"] == url(hello, "edit")
    assert form.one("textarea").text == "helo"

    response = alice_client.post(url(hello, "edit"), {"body": "hello\nthere"})

    assertRedirects(response, f"/rooms/lobby/#message-{hello.pk}", fetch_redirect_response=False)
    assert Message.objects.get(pk=hello.pk).body == "hello\nthere"
    shown = page(alice_client.get("/rooms/lobby/")).one_by_id(f"message-{hello.pk}")
    assert "data-edited" in shown.attrs
    assert shown.one(class_="message-edited").attr("title").startswith("Edited ")


def test_with_htmx_the_edit_form_opens_in_the_message_panel(alice_client, hello):
    response = alice_client.get(url(hello, "edit"), headers=HTMX)
    assert response.status_code == 200
    assert response["HX-Retarget"] == f"#message-panel-{hello.pk}"
    assert b"<html" not in response.content
    assert page(response).one("form", class_="edit-form").attrs["hx-post"] == url(hello, "edit")

    response = alice_client.post(url(hello, "edit"), {"body": "hello"}, headers=HTMX)

    # Nothing to swap: the change reaches this page too as a push (test_changes.py).
    assert response.status_code == 204
    assert Message.objects.get(pk=hello.pk).body == "hello"


@pytest.mark.parametrize(
    ("body", "error"),
    [("   ", "Write something first"), ("x" * 4001, "That message is too long")],
)
def test_an_invalid_edit_is_answered_in_the_form_keeping_the_text(alice_client, hello, body, error):
    for headers in ({}, HTMX):
        response = alice_client.post(url(hello, "edit"), {"body": body}, headers=headers)
        assert response.status_code == 400
        assert error in page(response).one(class_="field-error").text
    assert Message.objects.get(pk=hello.pk).body == "helo"


def test_someone_elses_message_cannot_be_edited(bob_client, hello):
    response = bob_client.get(url(hello, "edit"))
    assert response.status_code == 403
    assert alert(response) == "Only its author can edit a message."
    assert not page(response).find_all("form", class_="edit-form")
    assert bob_client.post(url(hello, "edit"), {"body": "mine now"}).status_code == 403
    assert Message.objects.get(pk=hello.pk).body == "helo"


def test_past_the_edit_window_the_page_says_so(alice_client, hello):
    Message.objects.filter(pk=hello.pk).update(created_at=timezone.now() - timedelta(hours=1))
    response = alice_client.get(url(hello, "edit"))
    assert response.status_code == 403
    assert "can no longer be edited" in alert(response)
    response = alice_client.post(url(hello, "edit"), {"body": "late"}, headers=HTMX)
    assert response.status_code == 403 and "15 minutes" in alert(response)
    assert Message.objects.get(pk=hello.pk).body == "helo"


def test_edits_count_against_the_rate_limit_and_keep_the_text(alice_client, hello, monkeypatch):
    monkeypatch.setattr(services.rate_limiter, "burst", 1)
    monkeypatch.setattr(services.rate_limiter, "per_second", 0)  # no refill mid-test
    assert alice_client.post(url(hello, "edit"), {"body": "one"}).status_code == 302
    response = alice_client.post(url(hello, "edit"), {"body": "two"})
    assert response.status_code == 429
    assert alert(response) == services.TOO_FAST
    assert page(response).one("textarea").text == "two"
    assert Message.objects.get(pk=hello.pk).body == "one"


def test_markup_in_an_edit_is_text(alice_client, hello):
    alice_client.post(url(hello, "edit"), {"body": '<img src=x onerror="alert(1)"> <b>hi</b>'})
    shown = page(alice_client.get("/rooms/lobby/")).one_by_id(f"message-{hello.pk}")
    assert not shown.find_all("img") and not shown.find_all("b")
    assert shown.one(class_="message-body").text == '<img src=x onerror="alert(1)"> <b>hi</b>'


# Delete --------------------------------------------------------------------------------


def test_without_javascript_delete_asks_to_confirm_then_deletes(alice_client, hello):
    confirm = page(alice_client.get(url(hello, "delete")))
    assert confirm.one("form", class_="delete-form").attrs["method"] == "post"
    assert Message.objects.get(pk=hello.pk).deleted_at is None  # GET deletes nothing

    response = alice_client.post(url(hello, "delete"))

    assertRedirects(response, f"/rooms/lobby/#message-{hello.pk}", fetch_redirect_response=False)
    assert Message.objects.get(pk=hello.pk).deleted_at is not None
    room = page(alice_client.get("/rooms/lobby/"))
    assert room.by_id(f"message-{hello.pk}") is None  # history no longer shows it
    assert alice_client.get(f"/rooms/lobby/messages/{hello.pk}/").status_code == 404


def test_members_delete_only_their_own_staff_anyones(bob_client, login, make_user, hello):
    response = bob_client.post(url(hello, "delete"))
    assert response.status_code == 403
    assert "Only its author (or a moderator)" in alert(response)
    assert Message.objects.get(pk=hello.pk).deleted_at is None

    moderator = login(make_user("mod", is_staff=True))
    response = moderator.post(url(hello, "delete"), headers=HTMX)
    assert response.status_code == 204
    assert Message.objects.get(pk=hello.pk).deleted_at is not None


def test_delete_controls_are_shown_by_the_per_viewer_style(login, alice, make_user, hello):
    """Every message carries its actions; the page's own style shows Edit and Delete on
    the viewer's messages (and Delete on all of them to staff)."""
    style = page(login(alice).get("/rooms/lobby/")).one("style").text
    assert '[data-author="alice"] .message-edit' in style
    assert '[data-author="alice"] .message-delete' in style
    style = page(login(make_user("mod", is_staff=True)).get("/rooms/lobby/")).one("style").text
    assert ", .message-delete {" in style


# React ---------------------------------------------------------------------------------


def test_without_javascript_the_reactions_page_offers_the_palette_and_text(bob_client, hello):
    picker = page(bob_client.get(url(hello, "reactions")))
    choices = [b.attrs["value"] for b in picker.find_all("button", class_="reaction-choice")]
    assert choices == list(changes.REACTION_PALETTE)
    assert picker.one("input", name="emoji").attrs["maxlength"] == "16"

    response = bob_client.post(url(hello, "reactions"), {"emoji": "👍"})
    assertRedirects(response, f"/rooms/lobby/#message-{hello.pk}", fetch_redirect_response=False)
    button = page(bob_client.get("/rooms/lobby/")).one("button", class_="reaction")
    assert (button.attrs["data-emoji"], button.attrs["data-count"]) == ("👍", "1")
    assert button.attrs["aria-pressed"] == "true"  # the page render knows its viewer

    bob_client.post(url(hello, "reactions"), {"emoji": "👍"})  # the same again: taken back
    assert not Reaction.objects.exists()


def test_a_reaction_is_pressed_only_for_those_who_gave_it(bob_client, alice_client, hello):
    bob_client.post(url(hello, "reactions"), {"emoji": "🎉"})
    button = page(alice_client.get("/rooms/lobby/")).one("button", class_="reaction")
    assert button.attrs["aria-pressed"] == "false"
    assert "from bob" in button.text


@pytest.mark.parametrize(
    ("emoji", "status", "error"),
    [
        ("", 400, "Choose a reaction, or type one."),
        ("y" * 17, 400, "at most 16 characters"),
        ("<b>\nx</b>", 400, "line breaks"),
    ],
)
def test_a_refused_reaction_is_explained_in_the_picker(bob_client, hello, emoji, status, error):
    for headers in ({}, HTMX):
        response = bob_client.post(url(hello, "reactions"), {"emoji": emoji}, headers=headers)
        assert response.status_code == status
        assert error in alert(response)
    assert not Reaction.objects.exists()


def test_reactions_count_against_the_rate_limit(bob_client, hello, monkeypatch):
    monkeypatch.setattr(services.rate_limiter, "burst", 2)
    monkeypatch.setattr(services.rate_limiter, "per_second", 0)
    for emoji in ("1", "2"):
        assert bob_client.post(url(hello, "reactions"), {"emoji": emoji}).status_code == 302
    response = bob_client.post(url(hello, "reactions"), {"emoji": "3"}, headers=HTMX)
    assert response.status_code == 429 and alert(response) == services.TOO_FAST
    assert response["HX-Retarget"] == f"#message-panel-{hello.pk}"
    assert Reaction.objects.count() == 2


def test_markup_in_a_reaction_is_text(bob_client, alice_client, hello):
    bob_client.post(url(hello, "reactions"), {"emoji": '"><i>x'})
    button = page(alice_client.get("/rooms/lobby/")).one("button", class_="reaction")
    assert button.attrs["data-emoji"] == '"><i>x'
    assert not button.find_all("i")


# Reply ---------------------------------------------------------------------------------


def test_reply_starts_the_composer_with_a_quote(bob_client, hello):
    composer = page(bob_client.get(f"/rooms/lobby/?reply={hello.pk}")).one_by_id("composer")
    assert composer.one("input", name="reply_to").attrs["value"] == str(hello.pk)
    assert "helo" in composer.one(class_="message-quote").text

    response = bob_client.get(f"/rooms/lobby/?reply={hello.pk}", headers=HTMX)
    assert b"<html" not in response.content
    assert page(response).top_level[0].id == "composer"
    # Nothing to reply to (cancelled, unknown, garbage): the plain composer.
    for value in ("", "12345678", "x<"):
        composer = page(bob_client.get(f"/rooms/lobby/?reply={value}", headers=HTMX))
        assert not composer.find_all("input", name="reply_to")


def test_without_javascript_a_reply_is_posted_with_its_quote(bob_client, hello):
    response = bob_client.post("/rooms/lobby/messages/", {"body": "yes", "reply_to": hello.pk})
    assert response.status_code == 302
    reply = Message.objects.get(body="yes")
    assert reply.reply_to == hello
    shown = page(bob_client.get("/rooms/lobby/")).one_by_id(f"message-{reply.pk}")
    link = shown.one(class_="message-quote").one("a")
    assert link.attrs["href"] == f"/rooms/lobby/messages/{hello.pk}/#message-{hello.pk}"


def test_a_reply_to_what_was_deleted_meanwhile_keeps_the_text(bob_client, alice, hello):
    changes.delete_message(hello, alice)
    response = bob_client.post("/rooms/lobby/messages/", {"body": "yes", "reply_to": hello.pk})
    assert response.status_code == 400
    assert services.REPLY_GONE in page(response).one(class_="composer-errors").text
    assert page(response).one_by_id("id_body").text == "yes"
    assert not Message.objects.filter(body="yes").exists()


def test_a_private_room_message_cannot_be_quoted_from_outside(login, carol, lobby, secret, alice):
    hidden = Message.objects.create(room=secret, author=alice, body="members only")
    client = login(carol)
    composer = page(client.get(f"/rooms/lobby/?reply={hidden.pk}")).one_by_id("composer")
    assert not composer.find_all("input", name="reply_to")
    response = client.post("/rooms/lobby/messages/", {"body": "leak?", "reply_to": hidden.pk})
    assert response.status_code == 400
    assert "members only" not in response.content.decode()
    assert Room.objects.get(slug="lobby").messages.count() == 0
