"""Every page, in the states people meet, saved as full-page PNGs under e2e/screenshots/.

The pictures are for a person to look at (the socket tests add the reconnecting and
disconnected room); the assertions check each page shows what the picture is for.
"""

import pytest
from playwright.sync_api import expect

from e2e.chat import expect_message, expect_socket, screenshot

pytestmark = pytest.mark.e2e


def test_signup_and_login_pages(new_context, chat_server):
    page = new_context(base_url=chat_server.url).new_page()
    page.goto("/accounts/signup/")
    expect(page.get_by_role("heading", name="Create your account")).to_be_visible()
    for field in ("#id_username", "#id_password1", "#id_password2"):
        expect(page.locator(field)).to_be_visible()
    screenshot(page, "01-signup")

    page.goto("/accounts/login/")
    page.locator("#id_username").fill("nobody-by-this-name")
    page.locator("#id_password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".form-errors")).to_contain_text("correct username and password")
    screenshot(page, "02-login-error")


def test_room_pages_in_every_state(sign_up, room_slug, server_db):
    alice, bob, carol = sign_up("alice"), sign_up("bob"), sign_up("carol")

    # The room list, with this room and a second one, people online in the first. Bob
    # made the second, so it is among his rooms on the first page; alice's is one of the
    # session's other rooms (by name: on the first page only while there are few).
    alice.open_room(room_slug)
    bob.open_room(f"{room_slug}-2")
    bob.page.goto(f"{bob.base_url}/rooms/")
    expect(bob.page.locator(f'.room-row[data-room="{room_slug}-2"][data-mine]')).to_be_visible()
    screenshot(bob.page, "03-room-list")

    # A room with messages, a private message and presence lines.
    bob.open_room(room_slug)
    carol.open_room(room_slug)
    alice.send("Morning all! Coffee is on in the kitchen.")
    bob.send("On my way. Anyone else?")
    alice.send(f"/pm {bob.username} bring the good biscuits")
    expect_message(carol.page, bob.username, "On my way. Anyone else?")
    carol.page.close()  # Carol leaves: a "left" line
    expect(alice.page.locator(".presence-line", has_text=f"{carol.username} left")).to_be_visible()
    expect(bob.page.locator(".message--private")).to_have_count(1)
    expect(alice.page.locator(".message--private .pm-delivered")).to_be_visible()
    screenshot(alice.page, "04-room-as-sender")
    screenshot(bob.page, "04-room-as-recipient")

    # Composer errors: a private message to nobody is refused and nothing is stored.
    stored = server_db.query("SELECT COUNT(*) FROM rooms_privatemessage")
    alice.send("/pm no-such-person-here hello?", expect_cleared=False)
    error = alice.page.locator("#composer .composer-error")
    expect(error).to_contain_text("There is no user named “no-such-person-here”")
    expect(alice.page.locator("#composer [name=body]")).to_have_value(
        "/pm no-such-person-here hello?"
    )
    screenshot(alice.page, "05-room-composer-error")
    alice.send("", expect_cleared=False)
    expect(error).to_contain_text("Write something first")
    assert server_db.query("SELECT COUNT(*) FROM rooms_privatemessage") == stored
    assert all(
        body != "/pm no-such-person-here hello?"
        for _, _, body in server_db.room_messages(room_slug)
    )
    alice.send("Fixed it.")  # the next good send clears the error
    expect(error).to_have_count(0)

    # The private conversation, from the recipient's side, and the list of them.
    bob.page.goto(f"{bob.base_url}/messages/{alice.username}/")
    expect(bob.page.locator("#pm-log .message-body")).to_have_text(["bring the good biscuits"])
    screenshot(bob.page, "06-pm-conversation")
    bob.page.goto(f"{bob.base_url}/messages/")
    expect(bob.page.get_by_role("link", name=alice.username)).to_be_visible()
    screenshot(bob.page, "06-pm-list")
    expect_socket(alice.page, "open")


def test_room_without_javascript(sign_up, room_slug):
    alice = sign_up("alice")
    plain = sign_up("nojs", java_script_enabled=False)
    alice.open_room(room_slug)
    alice.send("Hello, plain HTML reader.")
    plain.page.goto(f"{plain.base_url}/rooms/{room_slug}/")
    expect(plain.page.locator(".message-body")).to_have_text(["Hello, plain HTML reader."])
    screenshot(plain.page, "07-room-no-javascript")
    # Nothing on the page may claim a live connection it will never have.
    connecting = plain.page.locator("#connection-status").get_by_text("Connecting…", exact=True)
    expect(connecting).to_be_hidden()
