"""WCAG 2.2 AA: axe-core finds nothing on any page, in any state, on a phone or a desktop,
light or dark; the keyboard reaches everything; screen readers hear each thing once.

Every page and state people meet is checked with every rule axe-core runs by default
(e2e/accessibility.py): signed out (landing, log-in and sign-up with errors), the room
list, a busy room (history, presence, a private message, a long name), a private room as
its owner (members, invitations; on a phone with its drawers open), the private-message
list and a conversation, settings, a transcript, and the error pages. The browser console
stays clean all along.
"""

import datetime
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, Route, expect

from e2e import servers
from e2e.accessibility import ConsoleWatch, assert_no_axe_violations
from e2e.chat import expect_message, expect_socket

pytestmark = pytest.mark.e2e

SCREENS: dict[str, dict[str, Any]] = {
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
    "desktop": {"viewport": {"width": 1280, "height": 800}},
}

# Messages written straight into the server's database (as e2e/servers.py's helpers do):
# a busy room's history without typing it.
SEED_HISTORY = """
import json, sys
from django.contrib.auth import get_user_model
from rooms.models import Message, Room
data = json.load(sys.stdin)
room = Room.objects.get(slug=data["slug"])
people = [get_user_model().objects.get(username=name) for name in data["authors"]]
for n in range(data["count"]):
    Message.objects.create(room=room, author=people[n % len(people)], body=data["text"] % n)
print(json.dumps(True))
"""

# An error page the server renders without a request (400, 500), as it would answer:
# rendered in the server's own settings, so its stylesheet is the one the server serves.
RENDER_TEMPLATE = """
import json, sys
from django.template import loader
print(json.dumps(loader.get_template(json.load(sys.stdin)).render()))
"""


@pytest.fixture(scope="module")
def contextless_error_pages(e2e_env: dict[str, str]) -> dict[int, str]:
    return {
        status: servers.run_shell(e2e_env, RENDER_TEMPLATE, f"{status}.html")
        for status in (400, 500)
    }


def answer(status: int, html: str) -> Callable[[Route], None]:
    """A route handler that answers with this status and page."""

    def fulfill(route: Route) -> None:
        route.fulfill(status=status, body=html, content_type="text/html; charset=utf-8")

    return fulfill


def open_drawer(page: Page, drawer_id: str) -> None:
    """On a phone, open a room page's drawer (on a desktop its content is always shown)."""
    toggle = page.locator(f"#{drawer_id} > summary")
    if toggle.is_visible() and page.locator(f"#{drawer_id}[open]").count() == 0:
        toggle.click()


# What a screen reader announces as it changes.
LIVE = "[aria-live], [role=log], [role=status], [role=alert]"


def check(page: Page, what: str) -> None:
    # Wait for what the socket and scripts do on arrival, if this page has a socket.
    if page.locator("[ws-connect]").count():
        expect_socket(page, "open")
    assert_no_axe_violations(page, what)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("screen", ["phone", "desktop"])
def test_no_axe_violations_on_any_page(
    sign_up, new_context, chat_server, e2e_env, contextless_error_pages, screen, scheme
):
    options = {**SCREENS[screen], "color_scheme": scheme}
    phone = screen == "phone"

    # Signed out.
    visitor = new_context(**options)
    watch = ConsoleWatch(visitor)
    page = visitor.new_page()
    page.goto(f"{chat_server.url}/")
    check(page, "the landing page")
    page.goto(f"{chat_server.url}/accounts/login/")
    page.locator("#id_username").fill("nobody-by-this-name")
    page.locator("#id_password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".form-errors")).to_be_visible()
    check(page, "the log-in page with an error")
    page.goto(f"{chat_server.url}/accounts/signup/")
    page.locator("#id_username").fill("x")
    page.locator("#id_password1").fill("x")
    page.locator("#id_password2").fill("y")
    page.get_by_role("button", name="Sign up").click()
    expect(page.locator(".field-error").first).to_be_visible()
    check(page, "the sign-up page with errors")
    for status, html in contextless_error_pages.items():
        address = f"{chat_server.url}/error-{status}/"
        page.route(address, answer(status, html))
        page.goto(address)
        expect(page.locator("#error-title")).to_be_visible()
        check(page, f"the {status} page")

    # A busy room: history, people coming and going, a private message, a long name.
    owner = sign_up("W" * 60, **options)
    bob, carol = sign_up("bob", **options), sign_up("carol", **options)
    watch.watch(owner.context).watch(bob.context).watch(carol.context)
    slug = f"busy-{uuid.uuid4().hex[:10]}"
    owner.create_room(slug, private=True)
    for person in (bob, carol):
        open_drawer(owner.page, "people-drawer")
        owner.page.locator("#invite input[name=username]").fill(person.username)
        owner.page.locator("#invite").get_by_role("button", name="Invite").click()
        expect(
            owner.page.locator(f'.members li[data-username="{person.username}"]')
        ).to_be_attached()
    servers.run_shell(
        e2e_env,
        SEED_HISTORY,
        {"slug": slug, "authors": [owner.username, bob.username, carol.username],
         "count": 60, "text": "Earlier message %d, with a link to https://example.com/ and `code`"},
    )  # fmt: skip
    owner.open_room(slug)
    bob.open_room(slug)
    carol.open_room(slug)
    bob.send("Morning all! Coffee is on in the kitchen.")
    owner.send(f"/pm {bob.username} bring the good biscuits")
    expect_message(owner.page, bob.username, "Morning all! Coffee is on in the kitchen.")
    carol.page.goto(f"{carol.base_url}/rooms/")  # a "left" line
    expect(owner.page.locator(".presence-line", has_text=f"{carol.username} left")).to_be_visible()
    check(bob.page, "a busy room")
    check(owner.page, "a private room, as its owner")
    if phone:
        for drawer in ("people-drawer", "rooms-drawer"):
            open_drawer(owner.page, drawer)
            check(owner.page, f"a private room, as its owner, with its {drawer} open")

    # Composer errors, the other pages, and the error pages people meet.
    owner.send("/pm no-such-person-here hello?", expect_cleared=False)
    expect(owner.page.locator("#composer .composer-error")).to_be_visible()
    check(owner.page, "a room with a composer error")
    page = carol.page
    check(page, "the room list")
    page.goto(f"{carol.base_url}/rooms/{slug}x/")
    check(page, "a room's 404 that offers to create it")
    page.goto(f"{carol.base_url}/rooms/{slug}x/2001/01/01/")
    check(page, "the 404 page")
    today = datetime.datetime.now(datetime.UTC)
    page.goto(f"{carol.base_url}/rooms/{slug}/{today:%Y/%m/%d}/")
    check(page, "a day's transcript")
    page.goto(f"{carol.base_url}/accounts/settings/")
    check(page, "the settings")
    page.goto(f"{carol.base_url}/rooms/")
    page.locator("#open-room input[name=csrfmiddlewaretoken]").evaluate(
        "el => el.value = 'x'.repeat(64)"
    )
    page.locator("#open-room input[name=name]").fill("general")
    page.locator("#open-room").get_by_role("button", name="Open").click()
    expect(page.locator("#error-title")).to_have_text("That form has expired")
    check(page, "the 403 page (a form without its security token)")
    bob.page.goto(f"{bob.base_url}/messages/")
    check(bob.page, "the private-message list")
    bob.page.goto(f"{bob.base_url}/messages/{owner.username}/")
    check(bob.page, "a private conversation")
    watch.assert_clean()


# The keyboard ------------------------------------------------------------------------------


def focused(page: Page) -> str:
    """The focused element, as `tag#id.class "text"`."""
    return page.evaluate(
        """() => { const el = document.activeElement;
        const first = typeof el.className === 'string' && el.className.split(' ')[0];
        return el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
          (first ? '.' + first : '') + ' "' + (el.textContent || '').trim().slice(0, 30) + '"'; }"""
    )


def from_the_top(page: Page) -> None:
    """Put the keyboard's starting point at the top of the page, as a fresh load with no
    autofocus would (the composer takes the focus on load): the next Tab is the first."""
    page.evaluate(
        """() => { const top = document.createElement('span'); top.tabIndex = -1;
        document.body.prepend(top); top.focus(); }"""
    )


def test_skip_links_come_first_and_lead_to_the_composer_and_the_messages(sign_up, room_slug):
    alice = sign_up("alice", viewport={"width": 1280, "height": 800})
    alice.open_room(room_slug)
    alice.send("Hello, keyboard.")
    page = alice.page
    to_composer = page.get_by_role("link", name="Skip to composer")
    to_messages = page.get_by_role("link", name="Skip to messages")
    expect(to_composer).not_to_be_in_viewport()  # hidden until focused

    from_the_top(page)
    page.keyboard.press("Tab")
    expect(to_composer).to_be_focused()
    expect(to_composer).to_be_in_viewport()  # shown when focused
    page.keyboard.press("Tab")
    expect(to_messages).to_be_focused()
    expect(to_messages).to_be_in_viewport()
    expect(to_composer).not_to_be_in_viewport()  # and hidden again once left
    page.keyboard.press("Enter")
    expect(page.locator("#chat-scroll")).to_be_focused()

    from_the_top(page)
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#id_body")).to_be_focused()


def test_tab_goes_through_the_log_then_the_composer_then_the_sidebars(sign_up, room_slug):
    alice = sign_up("alice", viewport={"width": 1280, "height": 800})
    alice.open_room(room_slug)
    alice.send("Hello, keyboard.")
    page = alice.page
    from_the_top(page)
    order = []
    for _ in range(60):
        page.keyboard.press("Tab")
        order.append(focused(page))
        if "All rooms" in order[-1]:
            break
    text = "\n".join(order)

    def first(test) -> int:
        return next((i for i, item in enumerate(order) if test(item)), len(order) + 1)

    log = first(lambda item: item.startswith("div#chat-scroll"))
    message = first(lambda item: "message-permalink" in item)
    composer = first(lambda item: item.startswith("textarea#id_body"))
    send = first(lambda item: '"Send"' in item)
    rooms = first(lambda item: item.startswith("a") and f'"#{room_slug}"' in item)
    everything = first(lambda item: "All rooms" in item)
    assert log < message < composer < send < rooms < everything < len(order) + 1, text
    # Every stop shows where the focus is.
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none"), text


def test_escape_closes_a_drawer_and_gives_the_focus_back(sign_up, room_slug):
    alice = sign_up("alice", **SCREENS["phone"])
    watch = ConsoleWatch(alice.context)
    alice.open_room(room_slug)
    page = alice.page
    toggle = page.locator("#people-drawer > summary")
    toggle.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#people-drawer")).to_have_attribute("open", "")
    expect(page.locator("#online-users")).to_be_visible()
    page.locator("#online-users").click()  # the focus anywhere in the page
    page.keyboard.press("Escape")
    expect(page.locator("#people-drawer")).not_to_have_attribute("open", re.compile(".*"))
    expect(page.locator("#online-users")).to_be_hidden()
    expect(toggle).to_be_focused()
    watch.assert_clean()


# Screen readers ----------------------------------------------------------------------------


def test_each_event_has_one_live_region(sign_up, room_slug):
    """New messages and presence lines go to the log (role="log"), once; the online list is
    not a live region (nor in one), so a join is not announced twice; the connection state
    is a status, announced when it changes."""
    alice, bob = sign_up("alice"), sign_up("bob")
    alice.open_room(room_slug)
    page = alice.page
    expect(page.locator("#chat-log")).to_have_attribute("role", "log")
    bob.open_room(room_slug)
    joined = f"{bob.username} joined"
    expect(page.locator("#chat-log .presence-line", has_text=joined)).to_be_visible()
    expect(page.locator(f'#online-users li[data-username="{bob.username}"]')).to_be_visible()
    announced = page.evaluate(
        """([live, text]) => Array.from(document.querySelectorAll(live))
          .filter(el => !el.parentElement.closest(live) && el.textContent.includes(text))
          .map(el => el.id || el.className)""",
        [LIVE, joined],
    )
    assert announced == ["chat-log"], announced
    online_live = page.locator("#online-users").evaluate("(el, live) => !!el.closest(live)", LIVE)
    assert not online_live, "the online list is (in) a live region: joins would be read twice"
    expect(page.locator("#connection-status")).to_have_attribute("role", "status")
    # The connection status says something only when it changes (nothing while open).
    expect(page.locator("#connection-status")).to_have_text("", use_inner_text=True)


# The console -------------------------------------------------------------------------------


def test_joins_leaves_and_the_room_name_field_log_nothing_in_the_console(sign_up, room_slug):
    """Presence pushes delete entries a page may not show (data-oob-optional), and the
    room-name field's `pattern` compiles as the browser compiles it (the `v` flag)."""
    alice = sign_up("alice")
    watch = ConsoleWatch(alice.context)
    alice.open_room(room_slug)
    people = [sign_up(f"guest{n}") for n in range(3)]
    for person in people:
        watch.watch(person.context)
        person.open_room(room_slug)
    for person in people:
        expect(
            alice.page.locator(f'#online-users li[data-username="{person.username}"]')
        ).to_be_visible()
    for person in people:
        person.page.goto(f"{person.base_url}/rooms/")
    expect(alice.page.locator("#online-users li[data-username]")).to_have_count(1)

    page = people[0].page
    name = page.locator("#open-room input[name=name]")
    pattern = name.get_attribute("pattern")
    assert page.evaluate("p => { new RegExp(p, 'v'); return true }", pattern)
    for typed in ("general", "Not valid!", "-x"):
        name.fill(typed)
        name.evaluate("input => input.checkValidity()")
    assert name.evaluate("input => input.validity.patternMismatch")
    watch.assert_clean()
