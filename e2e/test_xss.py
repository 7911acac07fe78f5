"""Hostile messages are text, for the sender and every viewer, live and after reload.

One user posts each payload of e2e/xss_payloads.py over the socket; another watches.
The viewer's context bypasses the Content-Security-Policy, so escaping alone has to
keep the payloads inert there (the CSP is a second wall, checked on the sender's page:
not one violation may even be attempted). After every payload:
  - no script ran: `window.__xss` is unset and no dialog opened, in either page;
  - nothing outside the new message changed: the whole document, with the live
    container's lines left out, is byte-identical to before, and the earlier lines are;
  - the log grew by exactly one message whose text is exactly what was typed, and
    whose `.message-body` holds no element at all.
"""

from functools import partial
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from e2e.chat import Chatter, expect_socket, messages, wait_until
from e2e.xss_payloads import PAYLOADS

pytestmark = pytest.mark.e2e

CHUNK = 35
CHUNKS = [PAYLOADS[start : start + CHUNK] for start in range(0, len(PAYLOADS), CHUNK)]

RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI} ${event.sample}`);
});
"""

# Everything a payload could disturb, in one round trip: the room's lines, how many
# elements the live container holds, elements inside message bodies (there must be
# none), whether a payload ran, and the document minus what the live container received
# and minus htmx's transient swap classes (htmx-added, htmx-settling, ...).
PAGE_STATE = """() => {
  const root = document.documentElement.cloneNode(true);
  root.querySelector("#chat-live").replaceChildren();
  for (const el of root.querySelectorAll("[class]")) {
    const kept = [...el.classList].filter((name) => !name.startsWith("htmx-"));
    if (kept.length) el.setAttribute("class", kept.join(" "));
    else el.removeAttribute("class");
  }
  const lines = [...document.querySelectorAll("#chat-log article.message")];
  return {
    lines: lines.map((el) => ({
      id: Number(el.dataset.messageId),
      author: el.dataset.author,
      body: el.querySelector(".message-body").textContent,
    })),
    liveChildren: document.querySelector("#chat-live").childElementCount,
    elementsInBodies: lines.reduce(
      (sum, el) => sum + el.querySelector(".message-body").childElementCount, 0),
    ran: window.__xss ?? null,
    outside: root.outerHTML,
  };
}"""


def page_state(page: Page) -> dict[str, Any]:
    return page.evaluate(PAGE_STATE)


def state_after(page: Page, lines_before: int) -> dict[str, Any] | None:
    """The page's state once a new line has arrived, else None."""
    state = page_state(page)
    return state if len(state["lines"]) > lines_before else None


def open_watched_room(person: Chatter, slug: str) -> Page:
    person.context.add_init_script(RECORD_CSP_VIOLATIONS)
    return person.open_room(slug)


@pytest.mark.parametrize(
    "payloads",
    CHUNKS,
    ids=[f"payloads-{n * CHUNK}-{n * CHUNK + len(chunk) - 1}" for n, chunk in enumerate(CHUNKS)],
)
def test_payloads_stay_inert_text_live_and_after_reload(sign_up, room_slug, server_db, payloads):
    sender = sign_up("sender")
    viewer = sign_up("viewer", bypass_csp=True)
    open_watched_room(sender, room_slug)
    open_watched_room(viewer, room_slug)
    # The viewer's join has reached both pages (joins go out once per tick): from here
    # on, each payload is the only thing added to the log.
    for page in (sender.page, viewer.page):
        joined = page.locator(f'.presence-line[data-username="{viewer.username}"]')
        expect(joined).to_have_count(1)

    # A harmless first line: after it, the sender's composer is the server's fresh one.
    sender.send("warm-up")
    pages = (sender.page, viewer.page)
    states = {
        page: wait_until(page, partial(state_after, page, 0), "the warm-up line") for page in pages
    }

    for payload in payloads:
        sender.send(payload)  # waits for the sender's composer to come back empty
        for page in pages:
            before = states[page]
            now = wait_until(
                page,
                partial(state_after, page, len(before["lines"])),
                f"payload {payload[:60]!r} on {page.url}",
            )
            assert now["ran"] is None, f"script ran for {payload!r}"
            assert now["lines"][:-1] == before["lines"], f"earlier lines changed: {payload!r}"
            assert now["lines"][-1]["author"] == sender.username
            assert now["lines"][-1]["body"] == payload
            assert now["liveChildren"] == before["liveChildren"] + 1, f"not one line: {payload!r}"
            assert now["elementsInBodies"] == 0, f"markup inside a message: {payload!r}"
            assert now["outside"] == before["outside"], f"the page changed: {payload!r}"
            states[page] = now
        assert sender.dialogs == viewer.dialogs == [], payload
    expect_socket(viewer.page, "open")
    assert sender.page.evaluate("window.__cspViolations") == []

    stored = server_db.room_messages(room_slug)
    assert [body for _, _, body in stored] == ["warm-up", *payloads]

    # History, rendered by the page view rather than pushed: the same text, as inert.
    for person in (sender, viewer):
        person.open_room(room_slug)
        shown = messages(person.page)
        assert [m["body"] for m in shown] == ["warm-up", *payloads]
        assert [m["id"] for m in shown] == [pk for pk, _, _ in stored]
        state = page_state(person.page)
        assert state["elementsInBodies"] == 0
        assert state["ran"] is None
        assert person.dialogs == []
    assert sender.page.evaluate("window.__cspViolations") == []


PRIVATE_SAMPLE = [payload for payload in PAYLOADS if "hx-" in payload or "onerror" in payload][:8]


def test_private_messages_are_inert_text_too(sign_up, room_slug):
    """The private-message fragment is another template path: a sample of the corpus."""
    sender = sign_up("sender")
    recipient = sign_up("recipient", bypass_csp=True)
    sender.open_room(room_slug)
    recipient.open_room(room_slug)
    private = recipient.page.locator(".message--private .message-body")
    for count, payload in enumerate(PRIVATE_SAMPLE, start=1):
        sender.send(f"/pm {recipient.username} {payload}")
        expect(private).to_have_count(count)
        assert private.nth(count - 1).evaluate("el => el.textContent") == payload
    recipient.page.goto(f"{recipient.base_url}/messages/{sender.username}/")
    history = recipient.page.locator("#pm-log .message-body")
    expect(history).to_have_count(len(PRIVATE_SAMPLE))
    assert history.evaluate_all("els => els.map(el => el.textContent)") == PRIVATE_SAMPLE
    assert history.evaluate_all("els => els.map(el => el.childElementCount)") == [0] * len(
        PRIVATE_SAMPLE
    )
    for page in (sender.page, recipient.page):
        assert page.evaluate("window.__xss") is None
    assert sender.dialogs == recipient.dialogs == []
