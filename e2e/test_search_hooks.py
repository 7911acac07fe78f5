"""Search and incoming webhooks in a real browser against a real Daphne (issue 15).

Search: typed into the top bar's form (a plain GET, with and without JavaScript), the
results mark the words and link to the message's permalink, which opens with it marked.
Webhooks: the owner makes one from the room's header, reads its URL once, and a script's
POST to it shows up live on the open room page, escaped."""

import json
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import expect

from e2e.chat import expect_message, screenshot
from e2e.conftest import LogIn, SignUp
from e2e.seed import SeededRoom


@pytest.mark.parametrize("java_script", [True, False], ids=["js", "no-js"])
def test_search_from_the_top_bar_to_the_permalink(
    log_in: LogIn, room_with_history: Callable[..., SeededRoom], java_script: bool
) -> None:
    word = f"zebra{uuid.uuid4().hex[:6]}"
    room = room_with_history(30, text="Message {n} of {count}, " + word + " <b>ok</b>")
    reader = log_in(room.owner, java_script_enabled=java_script)
    page = reader.page

    box = page.get_by_role("search").get_by_role("searchbox", name="Search messages")
    box.fill(f"{word} in:{room.slug}")
    box.press("Enter")
    expect(page).to_have_url(f"{reader.base_url}/search/?q={word}+in%3A{room.slug}")
    results = page.locator(".search-result")
    expect(results).to_have_count(20)
    first = results.first
    newest = room.message_ids[-1]
    expect(first).to_have_attribute("data-message-id", str(newest))
    expect(first.locator("mark")).to_have_text(word)
    expect(first.locator(".search-snippet")).to_contain_text("<b>ok</b>")  # shown as text
    if java_script:
        screenshot(page, "search-results")

    page.get_by_role("link", name="More results").click()
    expect(results).to_have_count(10)

    results.first.locator("a.message-permalink").click()
    target = room.message_ids[9]
    expect(page).to_have_url(
        f"{reader.base_url}/rooms/{room.slug}/messages/{target}/#message-{target}"
    )
    expect(page.locator(f"#message-{target}")).to_have_attribute("aria-current", "true")


def test_a_webhook_posts_live_into_an_open_room(sign_up: SignUp, room_slug: str) -> None:
    owner = sign_up("owner")
    owner.open_room(room_slug)
    watcher = owner.new_tab()
    owner.open_room(room_slug, watcher)

    page = owner.page
    page.get_by_role("link", name="Webhooks").click()
    expect(page).to_have_url(f"{owner.base_url}/rooms/{room_slug}/hooks/")
    bot = f"bot{uuid.uuid4().hex[:6]}"
    page.get_by_label("Bot name").fill(bot)
    page.get_by_role("button", name="Make webhook").click()
    url = page.locator("#hook-url").input_value()
    assert url.startswith(f"{owner.base_url}/hooks/"), url
    page.goto(f"{owner.base_url}/rooms/{room_slug}/hooks/")  # shown once
    expect(page.locator("#hook-url")).to_have_count(0)
    expect(page.locator(".hook-list")).to_contain_text(bot)

    answer = post(url, {"text": "Deployed <i>v2</i>"})
    assert answer == (200, {"ok": True})
    expect_message(watcher, bot, "Deployed <i>v2</i>")
    expect(watcher.locator(".message-body i")).to_have_count(0)

    page.get_by_role("button", name=f"Revoke {bot}").click()
    expect(page.locator(".hook-list")).to_contain_text("Revoked")
    assert post(url, {"text": "after revoking"})[0] == 404


def post(url: str, payload: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
