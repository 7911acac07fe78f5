"""/styleguide/ in a real browser (issue 14, designer kit): every sample on one page, at a
phone's width and a laptop's, light and dark, with zero axe-core violations, nothing
wider than the window, and a clean console. The server runs with DEBUG off, so the
viewer is a staff user. Screenshots: e2e/screenshots/styleguide-<width>-<scheme>.png."""

import pytest
from playwright.sync_api import expect

from e2e import servers
from e2e.accessibility import ConsoleWatch, assert_no_axe_violations
from e2e.chat import screenshot

MAKE_STAFF = """
import json, sys
from django.contrib.auth import get_user_model
data = json.load(sys.stdin)
print(json.dumps(get_user_model().objects.filter(username=data["username"]).update(is_staff=True)))
"""


def make_staff(env: dict[str, str], username: str) -> None:
    assert servers.run_shell(env, MAKE_STAFF, {"username": username}) == 1


# (The page's own console is checked below, before the tools run.)
@pytest.mark.console_errors(
    "axe-core and Playwright's screenshot put styles into the samples' shadow roots, "
    "which the Content-Security-Policy refuses"
)
@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [390, 1280])
def test_the_styleguide_is_accessible_and_fits(sign_up, e2e_env, width, scheme) -> None:
    designer = sign_up("designer", viewport={"width": width, "height": 900}, color_scheme=scheme)
    make_staff(e2e_env, designer.username)
    watch = ConsoleWatch(designer.context)
    page = designer.page
    page.goto(f"{designer.base_url}/styleguide/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Styleguide")
    samples = page.locator("[data-partial]")
    assert samples.count() > 40
    # Every sample's heading is shown (the page is not cut short by an error).
    expect(samples.last.locator("h3")).to_be_visible()

    overflow = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert overflow[0] <= overflow[1], f"the page is wider than the window: {overflow}"
    # The console as the page left it, before the tools: axe-core (and Playwright's
    # screenshot) put styles of their own into each shadow root (the samples shown as if
    # alone), which the Content-Security-Policy refuses, loudly.
    watch.assert_clean()
    assert_no_axe_violations(page, f"styleguide at {width} px, {scheme}")
    screenshot(page, f"styleguide-{width}-{scheme}")


def test_a_member_who_is_not_staff_gets_the_404(sign_up) -> None:
    ann = sign_up("ann")
    response = ann.page.goto(f"{ann.base_url}/styleguide/")
    assert response is not None and response.status == 404


def test_the_samples_forms_send_nothing(sign_up, e2e_env, server_db) -> None:
    designer = sign_up("designer")
    make_staff(e2e_env, designer.username)
    page = designer.page
    page.goto(f"{designer.base_url}/styleguide/")
    sent = []
    page.on(
        "request", lambda request: sent.append(request.url) if request.method == "POST" else None
    )
    for partial in ("rooms/room.html#composer", "rooms/message_action.html#action-panel"):
        sample = page.locator(f'[data-partial="{partial}"]').first
        sample.get_by_role("button").first.click()
    # A form of the page itself still goes: logging out reaches the server.
    page.get_by_role("button", name="Log out").click()
    expect(page).not_to_have_url(f"{designer.base_url}/styleguide/")
    assert sent == [f"{designer.base_url}/accounts/logout/"]
