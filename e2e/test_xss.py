"""Hostile messages are text, for the sender and every viewer, live and after reload.

One user posts each payload of e2e/xss_payloads.py over the socket; another watches.
The viewer's context bypasses the Content-Security-Policy, so escaping alone has to
keep the payloads inert there (the CSP is a second wall, checked on the sender's page:
not one violation may even be attempted). After every payload:
  - no script ran: `window.__xss` is unset and no dialog opened, in either page;
  - nothing outside the new message changed: the whole document, with the live
    container's lines left out, is byte-identical to before, and the earlier lines are;
  - the log grew by exactly one message whose `.message-body` is, node for node, what
    the formatter made of the text typed (rooms/formatting.py: the text itself, or with
    <br>, links, code), and holds no element or attribute outside that formatting's:
    <a href="http(s)://..." rel>, <br>, <code>, <pre>.
"""

from functools import partial
from html.parser import HTMLParser
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from e2e.chat import Chatter, expect_socket, wait_until
from e2e.xss_payloads import PAYLOADS
from rooms.formatting import format_body

pytestmark = pytest.mark.e2e

CHUNK = 35
CHUNKS = [PAYLOADS[start : start + CHUNK] for start in range(0, len(PAYLOADS), CHUNK)]

RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI} ${event.sample}`);
});
"""

# A message body as nodes: each text node its text, each element [tag, {attributes},
# [children]] (the browser's DOM, or the formatter's output as Python's parser reads it).
BODY_SHAPE = r"""
const shape = (node) => [...node.childNodes].map((child) =>
  child.nodeType === Node.TEXT_NODE ? child.data
  : child.nodeType === Node.ELEMENT_NODE ? [child.localName,
    Object.fromEntries([...child.attributes].map((a) => [a.name, a.value])), shape(child)]
  : ["#" + child.nodeName, {}, []]);
// Elements of message bodies that the formatting never makes: any other tag, any other
// attribute, a link to anything but http(s).
const ALLOWED = { a: ["href", "rel"], br: [], code: [], pre: ["tabindex"] };
const disallowed = (body) => [...body.querySelectorAll("*")].filter((el) =>
  !(el.localName in ALLOWED)
  || [...el.attributes].some((a) => !ALLOWED[el.localName].includes(a.name))
  || (el.localName === "a" && !/^https?:\/\//.test(el.getAttribute("href") ?? ""))).length;
"""

# Everything a payload could disturb, in one round trip: the room's lines (each body as
# nodes), how many elements the live container holds, elements inside message bodies
# that the formatting never makes (there must be none), whether a payload ran, and the
# document minus what the live container received and minus htmx's transient swap
# classes (htmx-added, htmx-settling, ...).
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
      body: shape(el.querySelector(".message-body")),
    })),
    liveChildren: document.querySelector("#chat-live").childElementCount,
    disallowedInBodies: lines.reduce(
      (sum, el) => sum + disallowed(el.querySelector(".message-body")), 0),
    ran: window.__xss ?? null,
    outside: root.outerHTML,
  };
}"""


def page_state(page: Page) -> dict[str, Any]:
    return page.evaluate(f"(() => {{ {BODY_SHAPE}; return ({PAGE_STATE})(); }})()")


class _Shape(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root: list[Any] = []
        self.open = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        children: list[Any] = []
        self.open[-1].append([tag, {name: value or "" for name, value in attrs}, children])
        if tag != "br":
            self.open.append(children)

    def handle_endtag(self, tag: str) -> None:
        self.open.pop()

    def handle_data(self, data: str) -> None:
        siblings = self.open[-1]
        if siblings and isinstance(siblings[-1], str):  # the DOM has one text node for both
            siblings[-1] += data
        else:
            siblings.append(data)


def formatted(text: str) -> list[Any]:
    """What a message body with this text must hold, as BODY_SHAPE gives it."""
    parser = _Shape()
    parser.feed(format_body(text))
    parser.close()
    return parser.root


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
            assert now["lines"][-1]["body"] == formatted(payload)
            assert now["liveChildren"] == before["liveChildren"] + 1, f"not one line: {payload!r}"
            assert now["disallowedInBodies"] == 0, f"markup inside a message: {payload!r}"
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
        state = page_state(person.page)
        assert [line["body"] for line in state["lines"]] == [
            formatted(text) for text in ["warm-up", *payloads]
        ]
        assert [line["id"] for line in state["lines"]] == [pk for pk, _, _ in stored]
        assert state["disallowedInBodies"] == 0
        assert state["ran"] is None
        assert person.dialogs == []
    assert sender.page.evaluate("window.__cspViolations") == []


PRIVATE_SAMPLE = [
    *[payload for payload in PAYLOADS if "hx-" in payload or "onerror" in payload][:8],
    *[payload for payload in PAYLOADS if "`" in payload or "https://" in payload][-8:],
]
BODIES = f"(els) => {{ {BODY_SHAPE}; return els.map((el) => [shape(el), disallowed(el)]); }}"


def test_private_messages_are_inert_text_too(sign_up, room_slug):
    """The private-message fragment is another template path: a sample of the corpus."""
    sender = sign_up("sender")
    recipient = sign_up("recipient", bypass_csp=True)
    sender.open_room(room_slug)
    recipient.open_room(room_slug)
    private = recipient.page.locator(".message--private .message-body")
    expected = [[formatted(payload), 0] for payload in PRIVATE_SAMPLE]
    for count, payload in enumerate(PRIVATE_SAMPLE, start=1):
        sender.send(f"/pm {recipient.username} {payload}")
        expect(private).to_have_count(count)
        assert private.evaluate_all(BODIES) == expected[:count], payload
    recipient.page.goto(f"{recipient.base_url}/messages/{sender.username}/")
    history = recipient.page.locator("#pm-log .message-body")
    expect(history).to_have_count(len(PRIVATE_SAMPLE))
    assert history.evaluate_all(BODIES) == expected
    for page in (sender.page, recipient.page):
        assert page.evaluate("window.__xss") is None
    assert sender.dialogs == recipient.dialogs == []
