"""What a person does in the chat, as the browser suite drives it: open a room, send, read.

Every helper goes through the page the way a user would (typing into the composer,
following links); the assertions wait with Playwright's `expect` (or `wait_until` for what
`expect` cannot say), never with a fixed sleep.
"""

import re
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from playwright.sync_api import BrowserContext, Page, WebSocketRoute, expect

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"

# How long a live update may take to reach another browser before a test gives up.
LIVE_TIMEOUT_MS = 10_000

# Browser-context options, for `sign_up(..., **PHONE)`, `log_in(..., **NO_JAVASCRIPT)`, or
# for every context of a test: `@pytest.mark.browser_context_args(**PHONE)`.
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 3,
}
NO_JAVASCRIPT: dict[str, Any] = {"java_script_enabled": False}

T = TypeVar("T")


@dataclass
class ServerDatabase:
    """The server's SQLite file, opened read-only: what was stored, as the server sees it."""

    path: Path

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        uri = f"file:{self.path}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=10)) as connection:
            return connection.execute(sql, params).fetchall()

    def room_messages(self, slug: str) -> list[tuple[int, str, str]]:
        """(id, author, body) of every message stored in the room, in the room's order."""
        return self.query(
            "SELECT m.id, u.username, m.body FROM rooms_message m "
            "JOIN rooms_room r ON r.id = m.room_id JOIN auth_user u ON u.id = m.author_id "
            "WHERE r.slug = ? ORDER BY m.seq",
            slug,
        )


@dataclass
class Chatter:
    """A signed-up user with a browser context of their own and a first tab in it."""

    username: str
    password: str
    context: BrowserContext
    page: Page
    base_url: str
    dialogs: list[str] = field(default_factory=list)

    def new_tab(self) -> Page:
        page = self.context.new_page()
        watch_dialogs(page, self.dialogs)
        return page

    def open_room(self, slug: str, page: Page | None = None) -> Page:
        """Open a room and wait until its socket is open (so nothing live is missed).

        A room nobody has made yet is created first, as a person does: its address
        answers "No room #slug" (404) with a "Create #slug" button.
        """
        page = page or self.page
        response = page.goto(f"{self.base_url}/rooms/{slug}/")
        if response is not None and response.status == 404:
            self.create_room(slug, page, from_its_address=True)
        expect(page.locator("#room-title")).to_have_text(f"#{slug}")
        expect_socket(page, "open")
        return page

    def create_room(
        self,
        slug: str,
        page: Page | None = None,
        *,
        private: bool = False,
        from_its_address: bool = False,
    ) -> Page:
        """Create a room through a form, as a person does: the room list's "Open a room"
        form, or (`from_its_address`) the "Create #slug" button of the room's own address.
        Returns once the new room's page is shown."""
        page = page or self.page
        if from_its_address:
            if not page.url.endswith(f"/rooms/{slug}/"):
                page.goto(f"{self.base_url}/rooms/{slug}/")
            form = page.locator("#create-room")
            button = form.get_by_role("button", name=f"Create #{slug}")
        else:
            page.goto(f"{self.base_url}/rooms/")
            form = page.locator("#open-room")
            form.get_by_label("Room name").fill(slug)
            button = form.get_by_role("button", name="Open")
        if private:
            form.get_by_label("Members only").check()
        button.click()
        expect(page).to_have_url(f"{self.base_url}/rooms/{slug}/")
        expect(page.locator("#room-title")).to_have_text(f"#{slug}")
        return page

    def send(self, text: str, page: Page | None = None, *, expect_cleared: bool = True) -> None:
        """Type into the composer and press Enter, as a person does."""
        page = page or self.page
        composer = page.locator("#composer [name=body]")
        composer.fill(text)
        composer.press("Enter")
        if expect_cleared:
            # The server answers a send with a fresh composer (out of band): the input
            # empties only once the message was accepted.
            expect(page.locator("#composer [name=body]")).to_have_value("")


class SocketLink:
    """The network between one page and the server, for its room sockets only.

    Chromium keeps open WebSockets alive through `context.set_offline(True)`, so the
    page's room socket is routed through Playwright instead (`page.route_web_socket`,
    Playwright >= 1.48), which passes every frame through unchanged until `drop()`:
    then the page sees close code 1006 (abnormal closure, as when a network goes away),
    the server sees the socket close, and every reconnect attempt fails with 1006 too,
    as a refused connection would, until `restore()`. `before_reconnect`, if set, is
    called as a reconnect attempt goes through, just before it reaches the server.
    """

    def __init__(self, page: Page) -> None:
        self.up = True
        self.connections = 0
        self.refused = 0
        self.before_reconnect: Callable[[], None] | None = None
        self._current: tuple[WebSocketRoute, WebSocketRoute] | None = None
        page.route_web_socket(re.compile(r"/ws/rooms/"), self._route)

    def _route(self, socket: WebSocketRoute) -> None:
        if not self.up:
            self.refused += 1
            socket.close(code=1006, reason="network down (simulated)")
            return
        if self.connections and self.before_reconnect:
            self.before_reconnect()
        self.connections += 1
        self._current = (socket, socket.connect_to_server())

    def drop(self) -> None:
        assert self._current is not None, "the page has no routed socket to drop"
        self.up = False
        page_side, server_side = self._current
        self._current = None
        page_side.close(code=1006, reason="network down (simulated)")
        server_side.close()

    def restore(self) -> None:
        self.up = True

    def drop_after_next_send(self) -> None:
        """The page's next send (a frame with a "body": not the typing signal) reaches the
        server, then the network goes (`drop`) before any answer gets back: a send that
        was taken, and its answer lost."""
        assert self._current is not None, "the page has no routed socket"
        page_side, server_side = self._current
        server_side.on_message(lambda _: None)  # from now on, the server's frames are lost

        def forward_then_drop(frame: str | bytes) -> None:
            server_side.send(frame)
            if isinstance(frame, str) and '"body"' in frame:
                self.drop()

        page_side.on_message(forward_then_drop)


def watch_dialogs(page: Page, seen: list[str]) -> None:
    """Record (and dismiss) every alert/confirm/prompt: a payload that ran would open one."""

    def on_dialog(dialog: Any) -> None:
        seen.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)


def expect_socket(page: Page, state: str, timeout: float = LIVE_TIMEOUT_MS) -> None:
    """Wait for <body data-socket="open|reconnecting|closed"> (set by static/js/chat.js)."""
    expect(page.locator("body")).to_have_attribute("data-socket", state, timeout=timeout)


def messages(page: Page) -> list[dict[str, Any]]:
    """Every room message the page shows, in document order: id, author, exact body text
    (a deleted message's tombstone: no author, body None)."""
    return page.locator("#chat-log article.message:not(.message--private)").evaluate_all(
        """els => els.map(el => ({
            id: Number(el.dataset.messageId),
            author: el.dataset.author,
            body: el.querySelector('.message-body')?.textContent ?? null,
        }))"""
    )


def message_bodies(page: Page) -> list[str]:
    return [message["body"] for message in messages(page)]


def expect_message(page: Page, author: str, body: str, timeout: float = LIVE_TIMEOUT_MS) -> None:
    """Wait until a room message by `author` with exactly this text is on the page."""
    wait_until(
        page,
        lambda: any(m["author"] == author and m["body"] == body for m in messages(page)),
        f"{author}'s message {body[:60]!r} on {page.url}",
        timeout,
    )


def online_usernames(page: Page) -> list[str]:
    return page.locator("#online-users li[data-username]").evaluate_all(
        "els => els.map(el => el.dataset.username)"
    )


def wait_until(
    page: Page, check: Callable[[], T | None], what: str, timeout: float = LIVE_TIMEOUT_MS
) -> T:
    """Poll `check` until it returns something truthy; for conditions `expect` cannot say.

    It waits with `page.wait_for_timeout`, not time.sleep: Playwright's sync API runs its
    event handlers (dialogs, WebSocket routes) only while the test is inside a Playwright
    call, so a plain sleep would stall them.
    """
    deadline = time.monotonic() + timeout / 1000
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout / 1000:.0f}s waiting for {what}")
        page.wait_for_timeout(50)


def screenshot(page: Page, name: str) -> Path:
    """A full-page PNG under e2e/screenshots/ (git-ignored), for a person to look at."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=True, animations="disabled")
    return path
