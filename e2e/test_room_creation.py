"""Creating rooms in a real browser: only by a form's POST, with or
without JavaScript; never by following a link, from this site or another one."""

import pytest
from playwright.sync_api import expect

from e2e.chat import expect_socket, screenshot

pytestmark = pytest.mark.e2e

# Another site (never resolved: Playwright answers for it) whose page the victim opens.
EVIL_ORIGIN = "http://evil.example"


def stored_room(server_db, slug: str) -> list[tuple[str, str]]:
    """(visibility, owner's username) of the room, if it exists."""
    return server_db.query(
        "SELECT r.visibility, u.username FROM rooms_room r "
        "LEFT JOIN auth_user u ON u.id = r.owner_id WHERE r.slug = ?",
        slug,
    )


@pytest.mark.parametrize("javascript", [True, False], ids=["javascript", "no-javascript"])
def test_an_unknown_room_address_offers_a_create_button_that_creates_it(
    sign_up, room_slug, server_db, javascript
):
    alice = sign_up("alice", java_script_enabled=javascript)
    page = alice.page

    response = page.goto(f"{alice.base_url}/rooms/{room_slug}/")

    assert response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text(f"No room #{room_slug}")
    assert stored_room(server_db, room_slug) == []
    if javascript:
        screenshot(page, "10-no-room-create")

    page.get_by_role("button", name=f"Create #{room_slug}").click()

    expect(page).to_have_url(f"{alice.base_url}/rooms/{room_slug}/")
    expect(page.locator("#room-title")).to_have_text(f"#{room_slug}")
    assert stored_room(server_db, room_slug) == [("public", alice.username)]
    if javascript:
        expect_socket(page, "open")


def test_members_only_on_the_create_page_makes_a_room_others_cannot_tell_from_none(
    sign_up, room_slug, server_db
):
    alice, bob = sign_up("alice"), sign_up("bob")
    alice.page.goto(f"{alice.base_url}/rooms/{room_slug}/")
    alice.page.get_by_label("Members only").check()
    alice.page.get_by_role("button", name=f"Create #{room_slug}").click()
    expect(alice.page.locator(".conversation-header .tag")).to_have_text("Private (members only)")
    assert stored_room(server_db, room_slug) == [("private", alice.username)]

    response = bob.page.goto(f"{bob.base_url}/rooms/{room_slug}/")
    assert response.status == 404
    expect(bob.page.get_by_role("heading", level=1)).to_have_text(f"No room #{room_slug}")

    # Asking for the name members-only from the room list: refused, never reused.
    bob.page.goto(f"{bob.base_url}/rooms/")
    bob.page.get_by_label("Room name").fill(room_slug)
    bob.page.get_by_label("Members only").check()
    bob.page.get_by_role("button", name="Open").click()
    expect(bob.page.locator("#open-room .field-error")).to_have_text(
        f"There is already a room named #{room_slug}: choose another name for a new room."
    )
    assert stored_room(server_db, room_slug) == [("private", alice.username)]


def test_a_link_or_a_form_on_another_site_creates_no_room(sign_up, room_slug, server_db):
    """The victim is signed in; a page elsewhere links to a room address and posts the
    room list's form at load. Neither creates anything."""
    alice = sign_up("alice")
    target = alice.base_url
    evil_page = f"""<!doctype html><title>Free biscuits</title>
        <a id="link" href="{target}/rooms/{room_slug}/">biscuits</a>
        <form id="planted" method="post" action="{target}/rooms/">
          <input name="name" value="{room_slug}-posted"><input name="private" value="on">
        </form>"""
    page = alice.page
    page.route(
        f"{EVIL_ORIGIN}/**", lambda route: route.fulfill(body=evil_page, content_type="text/html")
    )

    page.goto(f"{EVIL_ORIGIN}/")
    with page.expect_navigation():
        page.locator("#link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"No room #{room_slug}")

    page.goto(f"{EVIL_ORIGIN}/")
    with page.expect_navigation() as navigation:
        page.evaluate("document.getElementById('planted').submit()")
    assert navigation.value.status == 403  # Django's CSRF check

    assert stored_room(server_db, room_slug) == []
    assert stored_room(server_db, f"{room_slug}-posted") == []


def test_the_room_name_pattern_is_a_valid_browser_pattern_and_checks_the_name(sign_up):
    """Chromium compiles `pattern` with the `v` flag, where an unescaped "-" in a class is
    a syntax error: the pattern was ignored, with a console error."""
    alice = sign_up("alice")
    page = alice.page
    console = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(f"{alice.base_url}/rooms/")
    name = page.get_by_label("Room name")

    pattern = name.get_attribute("pattern")
    assert page.evaluate("p => { new RegExp(p, 'v'); return true }", pattern)
    for typed, mismatch in [
        ("two words", True),
        ("-dash-first", True),
        ("under_score", True),
        (" Book-Club ", False),
        ("general", False),
    ]:
        name.fill(typed)
        assert name.evaluate("input => input.validity.patternMismatch") is mismatch, typed
    assert not [text for text in console if "pattern" in text.lower()], console

    name.fill("two words")
    page.get_by_role("button", name="Open").click()  # the browser refuses to submit
    expect(page).to_have_url(f"{alice.base_url}/rooms/")
    assert name.evaluate("input => input.matches(':invalid')")
