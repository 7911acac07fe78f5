"""Unread counts and mentions in a real browser (issue 13): the room list's counts, the
mention badge, the title and a notification move live while someone posts elsewhere; the
room then opens with a "New messages" divider above what was not read."""

import pytest
from playwright.sync_api import expect

from e2e.chat import expect_message, expect_socket

pytestmark = pytest.mark.e2e


def test_the_room_list_counts_unread_and_mentions_live_then_the_room_shows_where_to_read(
    sign_up, room_slug
):
    ann, bob = sign_up("ann"), sign_up("bob")
    ann.open_room(room_slug)
    ann.send("Before Bob came")
    bob.open_room(room_slug)  # he reads it (and, having posted, it is one of his rooms)
    bob.send("Hi, I am here, but off again")
    expect_message(ann.page, bob.username, "Hi, I am here, but off again")

    bob.page.goto(f"{bob.base_url}/rooms/")
    expect_socket(bob.page, "open")  # the room list's socket, following the rooms it lists
    entry = bob.page.locator(f'li[data-room="{room_slug}"]')
    expect(entry).to_have_attribute("data-unread", "0")
    expect(entry).to_have_attribute("data-mentions", "0")
    expect(entry.locator(".unread-count")).to_be_hidden()
    expect(entry.locator(".mention-count")).to_be_hidden()
    expect(bob.page).to_have_title("Rooms · Hypertalk")
    bob.page.evaluate("window.__sameDocument = true")

    ann.send("First thing you missed")
    ann.send(f"And @{bob.username}, this one is for you.")

    expect(entry).to_have_attribute("data-unread", "2")
    expect(entry).to_have_attribute("data-mentions", "1")
    expect(entry.locator(".unread-count")).to_be_visible()
    expect(entry.locator(".unread-count .count-number")).to_have_text("2")
    expect(entry.locator(".mention-count")).to_be_visible()
    expect(entry.locator(".mention-count .count-number")).to_have_text("1")
    expect(bob.page).to_have_title("(2) Rooms · Hypertalk")
    notification = bob.page.locator("#notifications .notification--mention")
    expect(notification).to_contain_text(f"{ann.username} mentioned you in #{room_slug}")
    assert bob.page.evaluate("window.__sameDocument") is True  # all of it without a reload

    # A burst: its activity arrives coalesced (rooms/attention.py, one push a tick with each
    # author's data-count), and every message still counts.
    for n in range(3):
        ann.send(f"Burst {n}")
    expect(entry).to_have_attribute("data-unread", "5")
    expect(entry.locator(".unread-count .count-number")).to_have_text("5")
    expect(entry).to_have_attribute("data-mentions", "1")
    expect(bob.page).to_have_title("(5) Rooms · Hypertalk")

    entry.locator("a.room-name").click()
    expect(bob.page.locator("#room-title")).to_have_text(f"#{room_slug}")
    divider = bob.page.locator("#chat-log #unread-divider")
    expect(divider).to_have_count(1)
    expect(divider).to_have_text("New messages")
    first_unread = bob.page.locator("#unread-divider + article.message .message-body")
    expect(first_unread).to_have_text("First thing you missed")
    # The message that mentions him is marked for him (base.html's per-viewer rule).
    mention = bob.page.locator(f'article.message[data-mentions~="{bob.username}"]')
    expect(mention.locator("a.mention")).to_have_attribute("href", f"/messages/{bob.username}/")
    ann_view = ann.page.locator(f'article.message[data-mentions~="{bob.username}"]')
    background = "el => getComputedStyle(el).backgroundColor"
    assert mention.evaluate(background) != ann_view.evaluate(background)
    expect(bob.page).to_have_title(f"#{room_slug} · Hypertalk")
