"""Writing in a real browser: the composer is a textarea, and messages are formatted.

With JavaScript, Enter sends and Shift+Enter adds a line (not while an input method is
composing); without it, Enter adds a line and the Send button posts. Line breaks, links
(rel="nofollow noopener") and code reach the other user's page as the server formatted
them (rooms/formatting.py), and a long code line or URL never widens the page.
"""

import pytest
from playwright.sync_api import Locator, Page, expect

from e2e.chat import ServerDatabase, expect_socket, message_bodies, screenshot
from e2e.conftest import SignUp

pytestmark = pytest.mark.e2e

PHONE_SIZE = {"width": 390, "height": 844}


def composer(page: Page) -> Locator:
    return page.locator("#composer textarea[name=body]")


def last_body(page: Page, author: str) -> Locator:
    return page.locator(f'#chat-log article.message[data-author="{author}"] .message-body').last


def stored_bodies(server_db: ServerDatabase, slug: str) -> list[str]:
    return [body for _, _, body in server_db.room_messages(slug)]


def test_enter_sends_and_shift_enter_adds_a_line(
    sign_up: SignUp, room_slug: str, server_db: ServerDatabase
) -> None:
    alice, bob = sign_up("alice"), sign_up("bob")
    alice.open_room(room_slug)
    bob.open_room(room_slug)
    field = composer(alice.page)

    field.press_sequentially("one line")
    field.press("Enter")
    expect(field).to_have_value("")  # the server's fresh composer: it was accepted
    expect(last_body(bob.page, alice.username)).to_have_text("one line")

    field.press_sequentially("first line")
    field.press("Shift+Enter")
    field.press_sequentially("second line")
    expect(field).to_have_value("first line\nsecond line")  # not sent: a line was added
    field.press("Enter")
    expect(field).to_have_value("")

    for page in (bob.page, alice.page):
        body = last_body(page, alice.username)
        expect(body).to_have_text("first linesecond line")
        assert body.inner_html() == "first line<br>second line"
    assert stored_bodies(server_db, room_slug) == ["one line", "first line\nsecond line"]


def test_enter_while_an_input_method_composes_does_not_send(
    sign_up: SignUp, room_slug: str, server_db: ServerDatabase
) -> None:
    alice, bob = sign_up("alice"), sign_up("bob")
    alice.open_room(room_slug)
    bob.open_room(room_slug)
    field = composer(alice.page)
    field.fill("にほんご")
    # The Enter that picks an input method's candidate: isComposing, or (as some browsers
    # send it when the composition ends) keyCode 229. Neither is ours: not prevented.
    for init in ("{key: 'Enter', isComposing: true}", "{key: 'Enter', keyCode: 229}"):
        not_prevented = field.evaluate(
            f"el => el.dispatchEvent(new KeyboardEvent('keydown', "
            f"{{...{init}, bubbles: true, cancelable: true}}))"
        )
        assert not_prevented, init
    expect(field).to_have_value("にほんご")
    # Once the composition is over, Enter sends; and it is the only message: a send by
    # either Enter above would have reached Bob's socket before this one.
    field.press("Enter")
    expect(field).to_have_value("")
    expect(last_body(bob.page, alice.username)).to_have_text("にほんご")
    assert message_bodies(bob.page) == ["にほんご"]
    assert stored_bodies(server_db, room_slug) == ["にほんご"]


def test_links_and_code_reach_the_other_page_formatted(sign_up: SignUp, room_slug: str) -> None:
    alice, bob = sign_up("alice"), sign_up("bob")
    alice.open_room(room_slug)
    bob.open_room(room_slug)

    alice.send("see https://x.test/a?b=1&c=2. or run `make <test>`, javascript:alert(1)")
    body = last_body(bob.page, alice.username)
    expect(body).to_contain_text("javascript:alert(1)")
    link = body.locator("a")
    expect(link).to_have_count(1)
    expect(link).to_have_attribute("href", "https://x.test/a?b=1&c=2")
    expect(link).to_have_attribute("rel", "nofollow noopener")
    expect(link).to_have_text("https://x.test/a?b=1&c=2")
    expect(body.locator("code")).to_have_text("make <test>")
    assert body.inner_html() == (
        'see <a href="https://x.test/a?b=1&amp;c=2" rel="nofollow noopener">'
        "https://x.test/a?b=1&amp;c=2</a>. or run <code>make &lt;test&gt;</code>, "
        "javascript:alert(1)"
    )

    alice.send("```python\ndef f():\n    return '<b>'\n```\nafter")
    body = last_body(bob.page, alice.username)
    expect(body.locator("pre > code")).to_have_text("def f():\n    return '<b>'")
    assert body.inner_html() == (
        "<pre tabindex=\"0\"><code>def f():\n    return '&lt;b&gt;'</code></pre>after"
    )
    field = composer(alice.page)
    field.fill("a draft\nof three\nlines")  # the composer grows with it
    screenshot(alice.page, "composer-formatting")


def test_a_long_code_line_scrolls_and_a_long_url_wraps_on_a_phone(
    sign_up: SignUp, room_slug: str
) -> None:
    alice = sign_up("alice")
    bob = sign_up("bob", viewport=PHONE_SIZE)
    alice.open_room(room_slug)
    bob.open_room(room_slug)

    long_line = "x = [" + ", ".join(str(n) for n in range(200)) + "]"
    alice.send(f"```\n{long_line}\n```")
    alice.send("https://x.test/" + "a" * 300)
    expect(bob.page.locator("#chat-log .message-body")).to_have_count(2)

    # The code block scrolls sideways, and nothing around it does: not the message, not
    # the log, not its column; both stay inside the screen. The URL wraps in its message.
    # (The page as a whole is e2e/test_layout.py's: this is about what a message holds.)
    overflowing = bob.page.evaluate(
        """() => {
          const pre = document.querySelector("#chat-log .message-body pre");
          const link = document.querySelector("#chat-log .message-body a");
          const wider = (el) => el.scrollWidth > el.clientWidth;
          const around = [];
          for (let el = pre.parentElement; el; el = el.parentElement) {
            if (wider(el)) around.push(el.className || el.localName);
            if (el.matches(".conversation")) break;
          }
          const screen = document.documentElement.clientWidth;
          return {
            pre: wider(pre),
            around: around,
            inScreen: pre.getBoundingClientRect().right <= screen
              && link.getBoundingClientRect().right <= screen,
            linkInside: link.getBoundingClientRect().right
              <= link.closest(".message").getBoundingClientRect().right,
            screen: screen,
          };
        }"""
    )
    assert overflowing == {
        "pre": True,
        "around": [],
        "inScreen": True,
        "linkInside": True,
        "screen": PHONE_SIZE["width"],
    }
    screenshot(bob.page, "composer-formatting-phone")


def test_without_javascript_a_multi_line_message_posts_with_the_send_button(
    sign_up: SignUp, room_slug: str, server_db: ServerDatabase
) -> None:
    reader = sign_up("js")
    plain = sign_up("nojs", java_script_enabled=False)
    reader.open_room(room_slug)
    page = plain.page
    page.goto(f"{plain.base_url}/rooms/{room_slug}/")
    field = composer(page)

    field.press_sequentially("first line")
    field.press("Enter")  # no script: Enter is a line break, nothing is sent
    field.press_sequentially("second line")
    expect(field).to_have_value("first line\nsecond line")
    with page.expect_navigation():
        page.get_by_role("button", name="Send").click()

    expect(page).to_have_url(f"{plain.base_url}/rooms/{room_slug}/")
    assert last_body(page, plain.username).inner_html() == "first line<br>second line"
    expect(composer(page)).to_have_value("")
    # The browser posted the line break as CRLF; it is stored as "\n".
    assert stored_bodies(server_db, room_slug) == ["first line\nsecond line"]
    body = last_body(reader.page, plain.username)
    expect(body).to_have_text("first linesecond line")
    assert body.inner_html() == "first line<br>second line"
    expect_socket(reader.page, "open")


def test_the_private_conversation_composer_sends_on_enter_and_keeps_lines(sign_up: SignUp) -> None:
    alice, bob = sign_up("alice"), sign_up("bob")
    page = alice.page
    page.goto(f"{alice.base_url}/messages/{bob.username}/")
    field = page.locator("#pm-composer textarea[name=body]")
    field.press_sequentially("hi <b>Bob</b>")
    field.press("Shift+Enter")
    field.press_sequentially("`code` https://x.test/")
    field.press("Enter")  # sent (over the page's socket, or posted: either way it shows)

    body = page.locator("#pm-log .message-body")
    expect(body).to_have_count(1)
    expect(body).to_contain_text("hi <b>Bob</b>")
    assert body.inner_html() == (
        "hi &lt;b&gt;Bob&lt;/b&gt;<br><code>code</code> "
        '<a href="https://x.test/" rel="nofollow noopener">https://x.test/</a>'
    )
    expect(page.locator("#pm-composer textarea[name=body]")).to_have_value("")
