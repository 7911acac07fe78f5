"""The Content-Security-Policy in a browser (site_config/settings.py, CONTENT_SECURITY_POLICY).

No inline style is allowed but the per-viewer <style> of templates/base.html, by its
nonce. On every page a signed-in person sees, nothing is blocked, and that <style> applies:
"(you)" after one's own name, one's own lines in one's own colour, "delivered" on one's
own private messages, and none of it on anyone else's page. A control on each page shows
the policy is enforced there and that violations are being recorded: an inline <style>
without the nonce, added by the test, is refused (it was allowed under 'unsafe-inline').
"""

import pytest
from playwright.sync_api import Page, expect

from e2e.chat import Chatter, wait_until
from e2e.test_xss import RECORD_CSP_VIOLATIONS

pytestmark = pytest.mark.e2e

MINE = "rgb(4, 120, 87)"  # --mine in static/css/chat.css (light scheme)


def violations(page: Page) -> list[str]:
    """What the policy refused on this page since it loaded, up to a control refusal added
    now: events are delivered in order, so once the control's has come, the page's own
    would have come before it."""
    page.evaluate("document.head.insertAdjacentHTML('beforeend', '<style>body{}</style>')")
    recorded: list[str] = wait_until(
        page, lambda: page.evaluate("window.__cspViolations"), f"the control on {page.url}"
    )
    assert recorded[-1].startswith("style-src"), recorded
    return recorded[:-1]


def author_style(page: Page, author: str, body: str) -> dict[str, str]:
    line = page.locator(f'#chat-log article.message[data-author="{author}"]', has_text=body)
    expect(line).to_have_count(1)
    return line.locator(".message-author").evaluate(
        """el => ({
            after: getComputedStyle(el, "::after").content,
            color: getComputedStyle(el).color,
        })"""
    )


@pytest.mark.console_errors("an inline <style> without the nonce, added as the control, is refused")
def test_nothing_is_blocked_and_the_per_viewer_style_applies(sign_up, room_slug) -> None:
    alice: Chatter = sign_up("alice")
    bob: Chatter = sign_up("bob")
    for person in (alice, bob):
        person.context.add_init_script(RECORD_CSP_VIOLATIONS)
        person.open_room(room_slug)

    alice.send("hello from alice")
    mine = author_style(alice.page, alice.username, "hello from alice")
    theirs = author_style(bob.page, alice.username, "hello from alice")
    assert mine == {"after": '" (you)"', "color": MINE}
    assert theirs["after"] == "none" and theirs["color"] != MINE

    alice.send(f"/pm {bob.username} just for you")
    for person, shown in ((alice, True), (bob, False)):
        delivered = person.page.locator(".message--private .pm-delivered")
        expect(delivered).to_have_count(1)
        assert (delivered.evaluate("el => getComputedStyle(el).display") != "none") is shown

    for person in (alice, bob):
        assert violations(person.page) == [], f"{person.username}'s room page"

    for person, other in ((alice, bob), (bob, alice)):
        for path in (
            "/rooms/",
            f"/rooms/nobody-made-{room_slug}/",  # the "Create #name" page (404)
            "/messages/",
            f"/messages/{other.username}/",
        ):
            person.page.goto(f"{person.base_url}{path}")
            assert violations(person.page) == [], f"{person.username} on {path}"
