"""Logging out in one tab closes the room socket of every other tab of it."""

import pytest
from playwright.sync_api import expect

from e2e.chat import expect_socket, screenshot

pytestmark = pytest.mark.e2e

RECORD_CLOSE_CODES = """
window.__closeCodes = [];
document.addEventListener("htmx:wsClose", (event) => {
  window.__closeCodes.push(event.detail.event.code);
});
"""


def test_logout_in_one_tab_disconnects_the_room_in_another(sign_up, room_slug):
    alice, bob = sign_up("alice"), sign_up("bob")
    alice.context.add_init_script(RECORD_CLOSE_CODES)
    room_tab = alice.open_room(room_slug)
    bob.open_room(room_slug)
    sockets = []
    room_tab.on("websocket", lambda socket: sockets.append(socket.url))

    other_tab = alice.new_tab()
    other_tab.goto(f"{alice.base_url}/rooms/")
    other_tab.get_by_role("button", name="Log out").click()
    expect(other_tab).to_have_url(f"{alice.base_url}/accounts/login/")

    expect_socket(room_tab, "closed")
    status = room_tab.locator("#connection-status")
    expect(status.get_by_text("Disconnected")).to_be_visible()
    expect(status.get_by_text("Reconnecting…")).to_be_hidden()
    assert room_tab.evaluate("window.__closeCodes") == [4401]  # not logged in
    screenshot(room_tab, "09-room-after-logout-elsewhere")
    # Others see Alice leave, which they would not if her socket had stayed open.
    expect(bob.page.locator(".presence-line", has_text=f"{alice.username} left")).to_have_count(1)
    expect(bob.page.locator(f'#online-users li[data-username="{alice.username}"]')).to_have_count(0)
    # And the closed tab does not try again (htmx retries only 1006/1011/1012/1013).
    assert sockets == []
    expect_socket(room_tab, "closed")

    # Its "Reload" link leads to the login page now, not back into the room.
    status.get_by_role("link", name="Reload").click()
    expect(room_tab).to_have_url(f"{alice.base_url}/accounts/login/?next=/rooms/{room_slug}/")
