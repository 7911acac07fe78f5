"""A page on another port of the same host cannot use a signed-in person's socket,
in a real Chromium.

Cookies do not care about ports, and another port of the same host is the same site, so
the browser sends the victim's session cookie (SameSite=Lax) with a handshake that a page
on http://127.0.0.1:<other port> opens to the chat. Before realtime/origins.py the
Origin check compared only the host: such a page read a private room's history and sent
a private message as its victim. The page here tries exactly that, from a second local
HTTP server, in the victim's own browser context.
"""

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Page, expect

from e2e import servers
from e2e.chat import LIVE_TIMEOUT_MS, expect_message, expect_socket, wait_until

pytestmark = pytest.mark.e2e

# The page another site serves: it opens the victim's private room's socket, sends a
# private message as the victim once open, and writes down everything that happens.
ATTACK_PAGE = """<!doctype html><meta charset="utf-8"><title>Cute cats</title>
<pre id="events"></pre>
<script>
  const events = document.getElementById("events");
  const note = (line) => { events.textContent += line + "\\n"; };
  const socket = new WebSocket(%(socket_url)s);
  socket.onopen = () => {
    note("open");
    socket.send(JSON.stringify({body: %(pm)s, HEADERS: {"HX-Request": "true"}}));
  };
  socket.onmessage = (event) => note("frame " + event.data);
  socket.onclose = (event) => note("closed " + event.code);
</script>
"""


class OtherSite:
    """A plain HTTP server on another port of 127.0.0.1, serving one page."""

    def __init__(self, page: str) -> None:
        body = page.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "OtherSite":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def private_room_slug() -> str:
    return f"secret-{uuid.uuid4().hex[:10]}"


def create_private_room(page: Page, base_url: str, slug: str) -> None:
    """With the room list's form, as its owner does: a name and "Members only"."""
    page.goto(f"{base_url}/rooms/")
    form = page.locator("#open-room")
    form.get_by_label("Room name").fill(slug)
    form.get_by_label("Members only").check()
    form.get_by_role("button", name="Open").click()
    expect(page).to_have_url(f"{base_url}/rooms/{slug}/")
    expect_socket(page, "open")


def events(page: Page) -> list[str]:
    return page.locator("#events").inner_text().splitlines()


@pytest.mark.console_errors("the handshake from another origin is refused (403)")
def test_a_page_on_another_port_cannot_open_the_victims_socket(
    sign_up, chat_server: servers.DaphneProcess, server_db, private_room_slug
) -> None:
    victim = sign_up("victim")
    accomplice = sign_up("accomplice")
    create_private_room(victim.page, victim.base_url, private_room_slug)
    victim.send("the launch code is 0000")
    expect_message(victim.page, victim.username, "the launch code is 0000")

    socket_url = f"ws://127.0.0.1:{chat_server.port}/ws/rooms/{private_room_slug}/?after=0"
    attack = ATTACK_PAGE % {
        "socket_url": json.dumps(socket_url),
        "pm": json.dumps(f"/pm {accomplice.username} stolen"),
    }
    with OtherSite(attack) as other_site:
        assert other_site.url != victim.base_url  # same host, another port
        page = victim.new_tab()  # the victim's browser: their cookies go along
        page.goto(other_site.url)
        # Until the socket closes, or a frame shows it got in (before the fix: the
        # room's history, then the sent private message came back as delivered).
        wait_until(
            page,
            lambda: any(e.startswith(("closed", "frame")) for e in events(page)),
            "the socket to close or to receive",
        )
        seen = events(page)

    # The handshake failed: never open, no frame (no history, no online list), and the
    # browser reports an abnormal closure (the server answered 403, not 101).
    assert seen == ["closed 1006"], seen
    refusal = (
        f"Origin '{other_site.url}' is neither this site (http://127.0.0.1:{chat_server.port})"
    )
    wait_until(victim.page, lambda: refusal in chat_server.log(), "the refusal in the server log")
    stolen = server_db.query("SELECT COUNT(*) FROM rooms_privatemessage WHERE body = ?", "stolen")
    assert stolen == [(0,)]

    # From the chat's own origin the same socket works, in the same browser context.
    expect_socket(victim.page, "open")
    victim.send("still here")
    expect_message(victim.page, victim.username, "still here", timeout=LIVE_TIMEOUT_MS)
