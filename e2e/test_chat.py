"""The chat in a real browser: live chat, presence, private messages, and no JavaScript."""

import re

import pytest
from playwright.sync_api import expect

from e2e.chat import (
    expect_message,
    expect_socket,
    message_bodies,
    messages,
    online_usernames,
)

pytestmark = pytest.mark.e2e


def test_two_users_chat_live_without_reloading(sign_up, room_slug):
    alice, bob = sign_up("alice"), sign_up("bob")
    alice.open_room(room_slug)
    bob.open_room(room_slug)
    # Neither page may reload: a marker on each window would vanish with a navigation.
    for person in (alice, bob):
        person.page.evaluate("window.__sameDocument = true")

    alice.send("Hello Bob, can you read me?")  # waits for Alice's input to be cleared
    expect_message(bob.page, alice.username, "Hello Bob, can you read me?")
    expect_message(alice.page, alice.username, "Hello Bob, can you read me?")

    bob.send("Loud and clear, Alice.")
    expect_message(alice.page, bob.username, "Loud and clear, Alice.")

    for person in (alice, bob):
        assert message_bodies(person.page) == [
            "Hello Bob, can you read me?",
            "Loud and clear, Alice.",
        ]
        assert person.page.evaluate("window.__sameDocument") is True
    # Per-viewer styling from one rendering: each sees "(you)" on their own line only.
    alices_line = alice.page.locator(f'[data-author="{alice.username}"] .message-author')
    bobs_view_of_it = bob.page.locator(f'[data-author="{alice.username}"] .message-author')
    after = "el => getComputedStyle(el, '::after').content"
    assert alices_line.evaluate(after) == '" (you)"'
    assert bobs_view_of_it.evaluate(after) in ("none", "normal")


def test_online_list_and_presence_lines_follow_join_and_leave(sign_up, room_slug):
    alice, bob = sign_up("alice"), sign_up("bob")
    alice.open_room(room_slug)
    expect(alice.page.locator("#online-users li[data-username]")).to_have_count(1)
    assert online_usernames(alice.page) == [alice.username]

    bob.open_room(room_slug)
    bob_in_list = alice.page.locator(f'#online-users li[data-username="{bob.username}"]')
    expect(bob_in_list).to_be_visible()
    expect(alice.page.locator("#online-users .count")).to_have_text("2")
    joined = alice.page.locator(".presence-line", has_text=f"{bob.username} joined")
    expect(joined).to_have_count(1)
    assert sorted(online_usernames(bob.page)) == sorted([alice.username, bob.username])

    bob.context.close()  # the tab, the socket and all: Bob leaves
    expect(bob_in_list).to_have_count(0)
    expect(alice.page.locator("#online-users .count")).to_have_text("1")
    expect(alice.page.locator(".presence-line", has_text=f"{bob.username} left")).to_have_count(1)
    assert online_usernames(alice.page) == [alice.username]


def test_private_message_reaches_only_its_recipient(sign_up, room_slug):
    alice, bob, carol = sign_up("alice"), sign_up("bob"), sign_up("carol")
    for person in (alice, bob, carol):
        person.open_room(room_slug)

    alice.send(f"/pm {bob.username} the secret is 42")

    in_bobs_page = bob.page.locator(f'.message--private[data-sender="{alice.username}"]')
    expect(in_bobs_page).to_have_count(1)
    expect(in_bobs_page).to_have_attribute("data-recipient", bob.username)
    expect(in_bobs_page.locator(".message-body")).to_have_text("the secret is 42")
    expect(in_bobs_page.locator(".pm-label")).to_have_text("Private")
    expect(in_bobs_page.locator(".pm-delivered")).to_be_hidden()

    in_alices_page = alice.page.locator(f'.message--private[data-recipient="{bob.username}"]')
    expect(in_alices_page.locator(".message-body")).to_have_text("the secret is 42")
    expect(in_alices_page.locator(".pm-delivered")).to_be_visible()
    expect(in_alices_page.locator(".pm-delivered")).to_contain_text("delivered")

    # Carol's socket is ordered: once a room message sent after the PM reaches her,
    # the PM would have arrived before it if it had been sent to her at all.
    alice.send("a public line after the private one")
    expect_message(carol.page, alice.username, "a public line after the private one")
    expect(carol.page.locator(".message--private")).to_have_count(0)
    expect(carol.page.locator("#chat-log")).not_to_contain_text("secret")
    # Nor is it a room message for anyone.
    for person in (alice, bob, carol):
        assert "the secret is 42" not in message_bodies(person.page)

    # Later, Bob reads it on the conversation page.
    bob.page.goto(f"{bob.base_url}/messages/{alice.username}/")
    later = bob.page.locator(f'#pm-log .message--private[data-sender="{alice.username}"]')
    expect(later).to_have_count(1)
    expect(later.locator(".message-body")).to_have_text("the secret is 42")
    carol.page.goto(f"{carol.base_url}/messages/{alice.username}/")
    expect(carol.page.locator("#pm-log .message--private")).to_have_count(0)


def test_without_javascript_a_user_reads_and_posts_through_the_form(sign_up, room_slug, server_db):
    reader = sign_up("js")
    plain = sign_up("nojs", java_script_enabled=False)
    reader.open_room(room_slug)
    reader.send("hello to whoever has no JavaScript")

    page = plain.page
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    page.goto(f"{plain.base_url}/rooms/{room_slug}/")
    expect(page.locator("#room-title")).to_have_text(f"#{room_slug}")
    assert message_bodies(page) == ["hello to whoever has no JavaScript"]

    page.locator("#id_body").fill("posted by a plain HTML form")
    with page.expect_navigation():
        page.get_by_role("button", name="Send").click()
    expect(page).to_have_url(f"{plain.base_url}/rooms/{room_slug}/")
    assert message_bodies(page) == [
        "hello to whoever has no JavaScript",
        "posted by a plain HTML form",
    ]
    # No script ran on this page: chat.js never marked the socket, none was opened.
    expect(page.locator("body")).not_to_have_attribute("data-socket", re.compile(".*"))
    assert sockets == []

    expect_message(reader.page, plain.username, "posted by a plain HTML form")
    expect_socket(reader.page, "open")
    stored = server_db.room_messages(room_slug)
    assert [(author, body) for _, author, body in stored] == [
        (reader.username, "hello to whoever has no JavaScript"),
        (plain.username, "posted by a plain HTML form"),
    ]
    assert [message["id"] for message in messages(reader.page)] == [pk for pk, _, _ in stored]
