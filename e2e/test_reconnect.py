"""Sockets that drop come back with exactly what they missed.

(a) One viewer's network drops while another user keeps posting (the socket is routed
    through Playwright and cut there: see SocketLink), then comes back.
(b) The server restarts (SIGTERM, then a new Daphne on the same port and database):
    every socket drops for real, as in a deploy.
(c) Redis, the channel layer, stops and starts again mid-conversation.
(d) A send is taken but its answer is lost with the network, and is sent again.
Each ends with every page showing every stored message exactly once, in order.
"""

import json
import threading
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from playwright.sync_api import Page, expect
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from e2e import servers
from e2e.chat import (
    Chatter,
    SocketLink,
    expect_message,
    expect_socket,
    messages,
    online_usernames,
    screenshot,
    wait_until,
)

pytestmark = pytest.mark.e2e

# After an outage ends, how long pages may take to show everything: the reconnect
# backoff is capped at 5 s, Redis is probed every 2 s (CHAT_LAYER_CHECK_SECONDS).
RECOVERY_TIMEOUT_MS = 20_000


def print_log_tail(server: servers.DaphneProcess, lines: int = 80) -> None:
    print(f"--- last {lines} lines of {server.log_path}")
    print("\n".join(server.log().splitlines()[-lines:]))


def reconnecting_banner(page: Page):
    return page.locator("#connection-status").get_by_text("Reconnecting…")


def assert_shows_exactly(page: Page, stored: list[tuple[int, str, str]]) -> None:
    """The page's room messages are the stored ones: each once, in id order, same text."""
    shown = messages(page)
    ids = [message["id"] for message in shown]
    assert len(ids) == len(set(ids)), f"duplicated messages: {ids}"
    assert ids == sorted(ids), f"out of order: {ids}"
    assert [(m["id"], m["author"], m["body"]) for m in shown] == stored
    dom_ids = page.locator("#chat-log [id]").evaluate_all("els => els.map(el => el.id)")
    assert len(dom_ids) == len(set(dom_ids)), "an element id appears twice in the log"


def wait_for_everything(page: Page, stored: list[tuple[int, str, str]]) -> None:
    try:
        wait_until(
            page,
            lambda: [(m["id"], m["author"], m["body"]) for m in messages(page)] == stored,
            f"{len(stored)} stored messages on {page.url}",
            RECOVERY_TIMEOUT_MS,
        )
    except AssertionError as timeout:
        shown = [m["id"] for m in messages(page)]
        stored_ids = [pk for pk, _, _ in stored]
        socket = page.locator("body").get_attribute("data-socket")
        raise AssertionError(
            f"{timeout}\n  socket: {socket}; {len(stored_ids)} stored, {len(shown)} shown"
            f"\n  missing: {sorted(set(stored_ids) - set(shown))}"
            f"\n  shown twice: {sorted({pk for pk in shown if shown.count(pk) > 1})}"
            f"\n  not stored: {sorted(set(shown) - set(stored_ids))}"
            f"\n  out of order: {shown != sorted(shown)}"
        ) from None
    assert_shows_exactly(page, stored)


class BusyTabs:
    """More tabs of one user, as raw room sockets, each posting a burst when told to.

    Sent all at once, the bursts keep the server busy storing and broadcasting while
    another page's reconnect handshake runs: lines stored between its joining the
    room's group and its catch-up query reach it twice (once caught up, once live)
    unless the server leaves one copy out. Use as a context manager (it closes them).
    """

    def __init__(self, person: Chatter, slug: str, tabs: int = 3, burst: int = 25) -> None:
        self.cookie = "; ".join(f"{c['name']}={c['value']}" for c in person.context.cookies())
        self.origin = person.base_url
        self.url = person.base_url.replace("http://", "ws://") + f"/ws/rooms/{slug}/?after=0"
        self.texts = [
            [f"burst from tab {tab} #{n}" for n in range(1, burst + 1)] for tab in range(tabs)
        ]
        self.sockets: list[ClientConnection] = []
        self.threads: list[threading.Thread] = []
        self._stack = ExitStack()

    def __enter__(self) -> "BusyTabs":
        for _ in self.texts:
            socket = connect(
                self.url,
                origin=Origin(self.origin),
                additional_headers={"Cookie": self.cookie},
                proxy=None,
            )
            self.sockets.append(self._stack.enter_context(socket))
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def post(self) -> None:
        """Start every tab's burst (in threads: this returns at once)."""
        for socket, texts in zip(self.sockets, self.texts, strict=True):
            thread = threading.Thread(target=self._burst, args=(socket, texts), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _burst(self, socket: ClientConnection, texts: list[str]) -> None:
        for text in texts:
            socket.send(json.dumps({"body": text, "HEADERS": {"HX-Request": "true"}}))
        answered = 0
        while answered < len(texts):  # each accepted line is answered with a fresh composer
            answered += 'id="composer"' in socket.recv(timeout=20)

    def posted(self) -> list[str]:
        """Wait until every line of the bursts was answered; return them all."""
        for thread in self.threads:
            thread.join(timeout=30)
        assert self.threads and not any(thread.is_alive() for thread in self.threads)
        return [text for texts in self.texts for text in texts]


def test_viewer_whose_network_drops_gets_each_missed_message_once_in_order(
    sign_up, room_slug, server_db
):
    alice, bob = sign_up("alice"), sign_up("bob")
    link = SocketLink(bob.page)
    alice.open_room(room_slug)
    bob.open_room(room_slug)
    alice.send("before the drop")
    expect_message(bob.page, alice.username, "before the drop")

    link.drop()
    expect_socket(bob.page, "reconnecting")
    expect(reconnecting_banner(bob.page)).to_be_visible()
    screenshot(bob.page, "08-room-reconnecting")

    missed = [f"missed while Bob was away #{n}" for n in range(1, 6)]
    for text in missed:
        alice.send(text)
        expect_message(alice.page, alice.username, text)
    # Bob's page really was cut off: nothing arrived, and it still says so.
    wait_until(bob.page, lambda: link.refused >= 1, "Bob's page to try to reconnect (and fail)")
    assert [m["body"] for m in messages(bob.page)] == ["before the drop"]
    expect(reconnecting_banner(bob.page)).to_be_visible()

    # As Bob's page comes back, Alice's other tabs post a burst, so that lines are
    # stored and broadcast all through its reconnect handshake.
    with BusyTabs(alice, room_slug) as tabs:
        link.before_reconnect = tabs.post
        link.restore()
        expect_socket(bob.page, "open", timeout=RECOVERY_TIMEOUT_MS)
        expect(reconnecting_banner(bob.page)).to_be_hidden()
        burst = tabs.posted()
    alice.send("the last line")
    expect_message(bob.page, alice.username, "the last line")

    stored = server_db.room_messages(room_slug)
    bodies = [body for _, _, body in stored]
    assert bodies[: len(missed) + 1] == ["before the drop", *missed]
    assert sorted(bodies[len(missed) + 1 : -1]) == sorted(burst)  # the tabs interleave
    assert bodies[-1] == "the last line"
    wait_for_everything(bob.page, stored)
    assert_shows_exactly(alice.page, stored)
    assert link.connections == 2
    expect(reconnecting_banner(bob.page)).to_be_hidden()


def test_a_send_whose_answer_was_lost_and_is_sent_again_is_stored_once(
    sign_up, room_slug, server_db
):
    """Alice sends; the server stores it; her network goes before the answer (the emptied
    composer) reaches her. Back online, her page shows the message (the catch-up) while
    her composer still holds the text, so she presses Enter again: it is the same send
    (the composer's send id), stored and shown once, and her composer empties."""
    alice, bob = sign_up("alice"), sign_up("bob")
    link = SocketLink(alice.page)
    alice.open_room(room_slug)
    bob.open_room(room_slug)

    link.drop_after_next_send()
    alice.send("only once", expect_cleared=False)
    expect_socket(alice.page, "reconnecting")
    expect_message(bob.page, alice.username, "only once")
    composer = alice.page.locator("#composer [name=body]")
    expect(composer).to_have_value("only once")
    link.restore()
    expect_socket(alice.page, "open", timeout=RECOVERY_TIMEOUT_MS)
    expect_message(alice.page, alice.username, "only once")

    composer.press("Enter")
    expect(composer).to_have_value("")
    # The same text sent on purpose, twice, from the emptied composer: two sends (the
    # page makes each its own id), two messages.
    alice.send("on purpose")
    alice.send("on purpose")
    wait_until(
        bob.page,
        lambda: [m["body"] for m in messages(bob.page)].count("on purpose") == 2,
        "both of Alice's messages on Bob's page",
    )

    stored = server_db.room_messages(room_slug)
    assert [body for _, _, body in stored] == ["only once", "on purpose", "on purpose"]
    assert_shows_exactly(alice.page, stored)
    assert_shows_exactly(bob.page, stored)


@pytest.fixture
def own_server(e2e_env) -> Iterator[list[servers.DaphneProcess]]:
    """A Daphne of the test's own on the session's database: [current process].

    The test may stop it and put a new one in the list (servers.daphne_again); whatever
    is last in the list is stopped at the end.
    """
    with servers.daphne(e2e_env) as server:
        running = [server]
        yield running
        running[-1].stop()
        for process in running:
            print_log_tail(process)  # pytest shows it when the test failed


@pytest.mark.console_errors(
    "the server is stopped under the pages: their sockets fail to reconnect until it is back"
)
def test_server_restart_drops_every_socket_and_all_come_back(
    sign_up, room_slug, server_db, own_server, e2e_env
):
    server = own_server[0]
    alice, bob = sign_up("alice", server=server), sign_up("bob", server=server)
    alice.open_room(room_slug)
    bob.open_room(room_slug)
    alice.send("before the restart")
    expect_message(bob.page, alice.username, "before the restart")

    server.stop()  # SIGTERM, as a deploy does
    for page in (alice.page, bob.page):
        expect_socket(page, "reconnecting")
        expect(reconnecting_banner(page)).to_be_visible()
    # Alice keeps typing: htmx queues what is sent while the socket is closed.
    alice.send("typed while the server was down", expect_cleared=False)

    own_server.append(servers.daphne_again(server, e2e_env))
    for page in (alice.page, bob.page):
        expect_socket(page, "open", timeout=RECOVERY_TIMEOUT_MS)
        expect(reconnecting_banner(page)).to_be_hidden()
    expect_message(bob.page, alice.username, "typed while the server was down")
    expect(alice.page.locator("#composer [name=body]")).to_have_value("")

    bob.send("welcome back")
    expect_message(alice.page, bob.username, "welcome back")
    stored = server_db.room_messages(room_slug)
    assert [body for _, _, body in stored] == [
        "before the restart",
        "typed while the server was down",
        "welcome back",
    ]
    for page in (alice.page, bob.page):
        wait_for_everything(page, stored)


@pytest.fixture
def private_redis() -> Iterator[servers.RedisProcess]:
    with servers.redis() as redis:
        yield redis


@pytest.fixture
def redis_server(e2e_env, private_redis) -> Iterator[servers.DaphneProcess]:
    """A Daphne whose channel layer is the test's own Redis (same database as the rest)."""
    with servers.daphne({**e2e_env, "REDIS_URL": private_redis.url}) as server:
        yield server
        print_log_tail(server)  # pytest shows it when the test failed


# The server probes the channel layer every CHAT_LAYER_CHECK_SECONDS (2 s by default):
# an outage shorter than that (a Redis restart, a failover) can fall between two probes.
OUTAGES = {"blip": 0.0, "longer-than-a-probe": 3.0}


@pytest.mark.parametrize("outage_seconds", OUTAGES.values(), ids=OUTAGES.keys())
def test_redis_outage_loses_nothing_and_live_delivery_resumes(
    sign_up, room_slug, server_db, redis_server, private_redis, outage_seconds
):
    alice = sign_up("alice", server=redis_server)
    bob = sign_up("bob", server=redis_server)
    alice.open_room(room_slug)
    bob.open_room(room_slug)
    alice.send("before the outage")
    expect_message(bob.page, alice.username, "before the outage")

    private_redis.stop()
    # Posting still works: the message is stored, and its sender sees it.
    alice.send("said while Redis was down")
    expect_message(alice.page, alice.username, "said while Redis was down")
    alice.page.wait_for_timeout(outage_seconds * 1000)  # the outage itself lasts this long
    private_redis.start()  # same port
    stored = server_db.room_messages(room_slug)
    assert [body for _, _, body in stored] == ["before the outage", "said while Redis was down"]
    for page in (alice.page, bob.page):
        wait_for_everything(page, stored)

    # Live delivery is back: the next line reaches Bob without a reload.
    alice.send("after the outage")
    expect_message(bob.page, alice.username, "after the outage", timeout=RECOVERY_TIMEOUT_MS)
    stored = server_db.room_messages(room_slug)
    assert len(stored) == 3
    for page in (alice.page, bob.page):
        wait_for_everything(page, stored)
        expect_socket(page, "open")
        expect(reconnecting_banner(page)).to_be_hidden()


@pytest.mark.console_errors(
    "the server is stopped under the pages: their sockets fail to reconnect until it is back"
)
def test_after_a_restart_whoever_did_not_come_back_is_not_shown_online(
    sign_up, room_slug, own_server, e2e_env
):
    server = own_server[0]
    alice, bob = sign_up("alice", server=server), sign_up("bob", server=server)
    alice.open_room(room_slug)
    bob.open_room(room_slug)
    bob_online = alice.page.locator(f'#online-users li[data-username="{bob.username}"]')
    expect(bob_online).to_have_count(1)

    server.stop()
    bob.context.close()  # Bob closes his laptop during the deploy and does not return
    own_server.append(servers.daphne_again(server, e2e_env))

    expect_socket(alice.page, "open", timeout=RECOVERY_TIMEOUT_MS)
    # The reconnect asks for the online list afresh (resync): it must not list Bob.
    expect(bob_online).to_have_count(0, timeout=RECOVERY_TIMEOUT_MS)
    assert online_usernames(alice.page) == [alice.username]
