"""A bounded online list in a browser (issue 16's follow-up, rooms/presence.py OnlineList).

On a server with CHAT_ONLINE_LIST_LIMIT=3 and five people in a room, the sidebar shows
three entries, the exact count and "and 2 more"; someone joining moves the count and the
line live while the list still shows three (a join is appended only among the first by
name, and an entry past the limit is hidden by the page's own style); the line links to
everyone online; on a phone it is in the People drawer; axe-core finds nothing on these
pages. Screenshots for a person to look at: e2e/screenshots/16-online-more-*.png.
"""

import pytest
from playwright.sync_api import expect

from e2e import servers
from e2e.accessibility import ConsoleWatch, assert_no_axe_violations
from e2e.chat import LIVE_TIMEOUT_MS, PHONE, screenshot

pytestmark = pytest.mark.e2e

DESKTOP = {"viewport": {"width": 1280, "height": 800}}


def test_a_capped_online_list_shows_the_limit_and_the_rest_live(
    e2e_env, sign_up, log_in, make_users, room_slug
):
    with servers.daphne({**e2e_env, "CHAT_ONLINE_LIST_LIMIT": "3"}) as server:
        alice = sign_up("alice", server=server, **DESKTOP)
        watch = ConsoleWatch(alice.context)
        alice.open_room(room_slug)
        accounts = make_users("ann", "ben", "cy", "phone", "late")
        for account in accounts[:3]:
            log_in(account, server=server).open_room(room_slug)
        phone = log_in(accounts[3], server=server, **PHONE)
        watch.watch(phone.context)
        phone.open_room(room_slug)

        page = alice.page
        count, more = page.locator("#online-count"), page.locator("#online-more")
        expect(count).to_have_text("5", timeout=LIVE_TIMEOUT_MS)
        expect(more).to_have_text("and 2 more online in #" + room_slug)
        expect(more.get_by_role("link")).to_have_attribute("href", f"/rooms/{room_slug}/online/")
        # Alice's page was there first: joins were appended while the list had room, then
        # only among the first by name (an entry past the limit is hidden by the page's
        # style), and three show.
        expect(page.locator("#online-list > li:visible")).to_have_count(3)
        assert 3 <= page.locator("#online-list > li").count() <= 5
        screenshot(page, "16-online-more-1280")
        assert_no_axe_violations(page, "a capped online list")

        # The phone's page came last: its list was capped by the server (and its own join,
        # "phone" being past the first three by name, appended no entry). In the People
        # drawer, one tap away.
        expect(phone.page.locator("#online-more")).to_be_hidden()
        phone.page.locator("details[data-drawer] summary", has_text="People").click()
        expect(phone.page.locator("#online-list > li")).to_have_count(3)
        expect(phone.page.locator("#online-list > li:visible")).to_have_count(3)
        expect(phone.page.locator("#online-more")).to_have_text(
            "and 2 more online in #" + room_slug
        )
        expect(phone.page.locator("#online-more")).to_be_in_viewport()
        screenshot(phone.page, "16-online-more-390")
        assert_no_axe_violations(phone.page, "a capped online list in the phone's drawer")

        # Someone else comes: the count and the line move live, the list still shows three.
        log_in(accounts[4], server=server).open_room(room_slug)
        expect(count).to_have_text("6", timeout=LIVE_TIMEOUT_MS)
        expect(more).to_have_text("and 3 more online in #" + room_slug)
        expect(phone.page.locator("#online-more")).to_have_text(
            "and 3 more online in #" + room_slug, timeout=LIVE_TIMEOUT_MS
        )
        expect(page.locator("#online-list > li:visible")).to_have_count(3)
        expect(phone.page.locator("#online-list > li:visible")).to_have_count(3)

        # The line opens everyone online (a plain page).
        more.get_by_role("link").click()
        expect(page).to_have_url(f"{server.url}/rooms/{room_slug}/online/")
        listed = page.locator(".online-page-list li")
        expect(listed).to_have_count(6)
        expect(page.locator("h1")).to_have_text(f"Online in #{room_slug}")
        expect(page.locator("#online-page-count")).to_contain_text("6 people online now")
        screenshot(page, "16-online-page-1280")
        assert_no_axe_violations(page, "everyone online")
        watch.assert_clean()
