"""Every page holds its layout whatever it shows, at any width, and phones get everything.

Long content: a username of about 150 characters, a room name of 50 characters with no
hyphen to break at, and a 300-character word never make a page wider than the window
(`document.documentElement.scrollWidth <= innerWidth`) from 320 to 1920 px: they wrap,
or are cut with an ellipsis with the whole text in the element (for screen readers) and
in its title (on hover).

Phones (390 px): the top bar is one line with Log out on screen; the rooms and the people
(members and invitations for the owner) are drawers one tap away, with or without
JavaScript; the composer is on screen; the owner invites and removes a member.
"""

import datetime
import uuid

import pytest
from playwright.sync_api import Page, expect

from e2e.accessibility import ConsoleWatch
from e2e.chat import expect_message, expect_socket

pytestmark = pytest.mark.e2e

WIDTHS = (320, 390, 1280, 1920)
PHONE_SIZE = {"width": 390, "height": 844}
# sign_up adds a serial number and "_<6 hex>" to the prefix: about 150 characters in all.
LONG_PREFIX = "W" * 139
LONG_WORD = "W" * 300


def long_room_name() -> str:
    """A valid room name of 50 characters with no hyphen: one unbroken word."""
    return ("w" * 40 + uuid.uuid4().hex)[:50]


def page_width(page: Page) -> tuple[int, int]:
    return page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")


def assert_fits(page: Page, what: str) -> None:
    """The page is no wider than the window at every width (the viewport is resized)."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 800})
        scroll_width, inner_width = page_width(page)
        assert scroll_width <= inner_width, (
            f"{what} ({page.url}) is {scroll_width}px wide in a {inner_width}px window"
        )


def test_long_names_and_words_never_widen_a_page(sign_up, new_context, chat_server):
    long = sign_up(LONG_PREFIX)
    bob = sign_up("bob")
    watch = ConsoleWatch(long.context, bob.context)
    assert len(long.username) >= 145
    slug = long_room_name()
    page = long.page

    long.create_room(slug, private=True)
    page.locator("#invite input[name=username]").fill(bob.username)
    page.locator("#invite").get_by_role("button", name="Invite").click()
    expect(page.locator(f'.members li[data-username="{bob.username}"]')).to_be_visible()
    expect_socket(page, "open")
    bob.open_room(slug)
    long.send(LONG_WORD)
    long.send(f"/pm {bob.username} {LONG_WORD}")
    bob.send(f"/pm {long.username} {LONG_WORD}")
    expect_message(bob.page, long.username, LONG_WORD)
    expect(page.locator(f'#online-users li[data-username="{bob.username}"]')).to_be_visible()

    # The whole name stays in the page: cut only on screen, with a title.
    whoami = page.locator(".whoami")
    expect(whoami).to_have_attribute("title", f"Signed in as {long.username}")
    expect(whoami.locator("strong")).to_have_text(long.username)
    me_online = page.locator(f'#online-users li[data-username="{long.username}"] .person-name')
    expect(me_online).to_have_attribute("title", long.username)
    expect(me_online).to_have_text(long.username)
    expect(page.locator(".room-links a[aria-current=page]")).to_have_attribute("title", f"#{slug}")

    assert_fits(page, "the room, as its owner")
    assert_fits(bob.page, "the room, as a member")
    page.goto(f"{long.base_url}/rooms/")
    expect(page.locator(f'.room-row[data-room="{slug}"]')).to_be_visible()
    assert_fits(page, "the room list")
    bob.page.goto(f"{bob.base_url}/messages/")
    expect(bob.page.get_by_role("link", name=long.username)).to_be_visible()
    assert_fits(bob.page, "the private-message list")
    bob.page.goto(f"{bob.base_url}/messages/{long.username}/")
    expect(bob.page.locator("#pm-log .message-body").first).to_have_text(LONG_WORD)
    assert_fits(bob.page, "the private conversation")
    page.goto(f"{long.base_url}/accounts/settings/")
    assert_fits(page, "the settings")
    today = datetime.datetime.now(datetime.UTC)
    page.goto(f"{long.base_url}/rooms/{slug}/{today:%Y/%m/%d}/")
    expect(page.locator("#transcript-log .message-body").first).to_have_text(LONG_WORD)
    assert_fits(page, "the day's transcript")
    page.goto(f"{long.base_url}/rooms/{long_room_name()}/")
    assert_fits(page, "a room's 404 that offers to create it")

    # Signed out: the long name typed into the forms, and their errors.
    visitor = new_context()
    watch.watch(visitor)
    anonymous = visitor.new_page()
    anonymous.goto(f"{chat_server.url}/accounts/login/")
    anonymous.locator("#id_username").fill(long.username)
    anonymous.locator("#id_password").fill("not the password")
    anonymous.get_by_role("button", name="Log in").click()
    expect(anonymous.locator(".form-errors")).to_be_visible()
    assert_fits(anonymous, "the log-in page with an error")
    anonymous.goto(f"{chat_server.url}/accounts/signup/")
    anonymous.locator("#id_username").fill(long.username)
    anonymous.locator("#id_password1").fill("x")
    anonymous.locator("#id_password2").fill("y")
    anonymous.get_by_role("button", name="Sign up").click()
    expect(anonymous.locator(".field-error").first).to_be_visible()
    assert_fits(anonymous, "the sign-up page with errors")
    anonymous.goto(f"{chat_server.url}/")
    assert_fits(anonymous, "the landing page")
    watch.assert_clean()


def drawer(page: Page, name: str):
    return page.locator("details[data-drawer]", has=page.locator("summary", has_text=name))


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_on_a_phone_the_owner_invites_and_removes_a_member(sign_up, javascript):
    owner = sign_up("owner", viewport=PHONE_SIZE, java_script_enabled=javascript)
    carol = sign_up("carol")
    watch = ConsoleWatch(owner.context)
    page = owner.page
    slug = f"phone-{uuid.uuid4().hex[:10]}"
    owner.create_room(slug, private=True)

    # The top bar is one line and Log out is on screen.
    topbar = page.locator(".topbar").bounding_box()
    assert topbar is not None and topbar["height"] <= 57
    logout = page.get_by_role("button", name="Log out")
    expect(logout).to_be_in_viewport()
    assert page.locator(".topnav").bounding_box()["height"] < 30  # one line of links

    # The composer is on screen; the sidebars are closed drawers, one tap away.
    expect(page.locator("#composer")).to_be_in_viewport()
    people = drawer(page, "People")
    expect(people.locator("#invite")).to_be_hidden()
    expect(page.locator("#online-users")).to_be_hidden()
    people.locator("summary").click()
    expect(page.locator("#online-users")).to_be_visible()
    page.locator("#invite input[name=username]").fill(carol.username)
    people.get_by_role("button", name="Invite").click()
    member = page.locator(f'.members li[data-username="{carol.username}"]')
    drawer(page, "People").locator("summary").click()  # a new page: closed again
    expect(member).to_be_visible()
    carol.open_room(slug)

    member.get_by_role("button", name=f"Remove {carol.username}").click()
    drawer(page, "People").locator("summary").click()
    expect(page.locator(".members li[data-username]")).to_have_count(0)

    # The rooms drawer: the room switcher and the way to all rooms.
    rooms = drawer(page, "Rooms")
    expect(rooms.get_by_role("link", name="All rooms…")).to_be_hidden()
    rooms.locator("summary").click()
    expect(rooms.get_by_role("link", name=f"#{slug}")).to_be_visible()
    expect(rooms.get_by_role("link", name="All rooms…")).to_be_in_viewport()
    assert page_width(page)[0] <= PHONE_SIZE["width"]
    watch.assert_clean()


def test_a_wide_screen_shows_both_sidebars_without_toggles(sign_up, room_slug):
    alice = sign_up("alice", viewport={"width": 1280, "height": 800})
    alice.open_room(room_slug)
    page = alice.page
    expect(page.locator(".drawer-toggle")).to_have_count(2)
    for toggle in page.locator(".drawer-toggle").all():
        expect(toggle).to_be_hidden()
    expect(page.locator("#online-users")).to_be_visible()
    expect(page.get_by_role("link", name="All rooms…")).to_be_visible()
    expect(page.locator(".whoami")).to_be_visible()
