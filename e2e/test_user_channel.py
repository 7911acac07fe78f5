"""Every page is live (issue 13, part A): private conversations both ways, the unread
count of private messages and notifications on the room list, "is typing…", and
`manage.py say` reaching an open page from another process (through Redis)."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from e2e import servers
from e2e.chat import Chatter, expect_message, expect_socket

pytestmark = pytest.mark.e2e


def open_conversation(person: Chatter, other: Chatter, page: Page | None = None) -> Page:
    """Open the conversation with `other` and wait for its socket."""
    page = page or person.page
    page.goto(f"{person.base_url}/messages/{other.username}/")
    expect(page.locator("h1")).to_have_text(other.username)
    expect_socket(page, "open")
    return page


def send_privately(page: Page, text: str) -> None:
    """Type into the conversation's composer and press Enter, as a person does."""
    composer = page.locator("#pm-composer [name=body]")
    composer.fill(text)
    composer.press("Enter")
    # The answer over the socket is a fresh composer: emptied once the message was taken.
    expect(page.locator("#pm-composer [name=body]")).to_have_value("")


def pm_bodies(page: Page) -> list[str]:
    return page.locator("#pm-log .message--private .message-body").all_inner_texts()


SEED_CONVERSATION = """
import json, sys
from django.contrib.auth import get_user_model
from django.utils import timezone
from rooms.models import PrivateMessage
one, two, count = json.loads(sys.stdin.read())
users = get_user_model().objects
a, b = users.get(username=one), users.get(username=two)
for n in range(1, count + 1):
    sender, recipient = (a, b) if n % 2 else (b, a)
    PrivateMessage.objects.create(
        sender=sender, recipient=recipient, body=f"Earlier {n}", read_at=timezone.now()
    )
print(json.dumps(count))
"""


def test_a_private_conversation_is_live_on_both_pages(sign_up, e2e_env):
    ann, bob = sign_up("ann"), sign_up("bob")
    servers.run_shell(e2e_env, SEED_CONVERSATION, [ann.username, bob.username, 40])
    ann_page = open_conversation(ann, bob)
    # It opens at the newest, scrolled to the end (the log is anchored at its bottom).
    expect(ann_page.locator("#pm-log .message-body").last).to_have_text("Earlier 40")
    expect(ann_page.locator("#pm-log .message--private").last).to_be_in_viewport()
    expect(ann_page.locator("#pm-log .message--private").first).not_to_be_in_viewport()
    bob_page = open_conversation(bob, ann)
    # A page that reloads loses this mark: the messages below must come without one.
    for page in (ann_page, bob_page):
        page.evaluate("window.stillTheSamePage = true")

    send_privately(ann_page, "hello bob, <b>not bold</b>")
    expect(bob_page.locator("#pm-log .message-body").last).to_have_text(
        "hello bob, <b>not bold</b>"
    )
    send_privately(bob_page, "hi ann")

    for page in (ann_page, bob_page):
        bodies = page.locator("#pm-log .message-body")
        expect(bodies).to_have_count(42)
        expect(bodies.nth(40)).to_have_text("hello bob, <b>not bold</b>")
        expect(bodies.nth(41)).to_have_text("hi ann")
        # What arrives stays in view: the log still shows its end.
        expect(page.locator("#pm-log .message--private").last).to_be_in_viewport()
        assert page.evaluate("window.stillTheSamePage") is True
    # Each name links to the conversation with that person: bob's link on ann's page.
    bobs_reply = ann_page.locator("#pm-log .message--private").last
    expect(bobs_reply.locator("a.pm-sender")).to_have_attribute(
        "href", f"/messages/{bob.username}/"
    )
    # Read as it arrived: nothing unread for either; the notification of it is hidden on
    # the page of the conversation it belongs to (it would only repeat the log).
    for page in (ann_page, bob_page):
        expect(page.locator("#pm-unread")).to_have_attribute("data-unread", "0")
        notification = page.locator("#notifications .notification")
        expect(notification).to_have_count(1)
        assert notification.evaluate("el => getComputedStyle(el).display") == "none"


def test_the_room_list_counts_a_private_message_live_and_notifies(sign_up, room_slug):
    ann, bob = sign_up("ann"), sign_up("bob")
    ann.open_room(room_slug)
    # bob is on the room list (where sign_up leaves him), its socket open.
    expect_socket(bob.page, "open")
    count = bob.page.locator("#pm-unread")
    expect(count).to_have_attribute("data-unread", "0")
    expect(count).to_have_text("")

    ann.send(f"/pm {bob.username} are you there?")

    expect(count).to_have_attribute("data-unread", "1")
    expect(count).to_have_text("1 unread")
    notification = bob.page.locator("#notifications .notification")
    expect(notification).to_contain_text(f"Private message from {ann.username}")
    expect(notification).to_contain_text("are you there?")
    # It goes away by itself (a CSS animation; no timer in JavaScript).
    expect(notification).to_be_hidden(timeout=20_000)
    # ann's page shows the message as delivered, and counts nothing for her.
    expect(ann.page.locator("#chat-log .message--private .pm-delivered")).to_be_visible()
    expect(ann.page.locator("#pm-unread")).to_have_attribute("data-unread", "0")

    # Reading the conversation clears the count, on the page that reads and live elsewhere.
    room_list = bob.page
    conversation = bob.new_tab()
    open_conversation(bob, ann, conversation)
    expect(conversation.locator("#pm-log .message-body")).to_have_text(["are you there?"])
    expect(conversation.locator("#pm-unread")).to_have_attribute("data-unread", "0")
    expect(room_list.locator("#pm-unread")).to_have_attribute("data-unread", "0")
    expect(room_list.locator("#pm-unread")).to_have_text("")


def test_typing_shows_on_the_other_page_and_goes_away_by_itself(sign_up, room_slug):
    ann, bob = sign_up("ann"), sign_up("bob")
    ann.open_room(room_slug)
    bob.open_room(room_slug)

    ann.page.locator("#composer [name=body]").press_sequentially("hel")

    typing = bob.page.locator("#typing .typing-notice")
    expect(typing).to_have_text(f"{ann.username} is typing…")
    expect(typing).to_be_visible()
    expect(bob.page.locator("#typing")).to_have_attribute("aria-hidden", "true")
    # ann's own page gets the same line, and hides it from her.
    expect(ann.page.locator("#typing .typing-notice")).to_have_count(1)
    expect(ann.page.locator("#typing .typing-notice")).to_be_hidden()
    # Nobody types any more: it fades out by itself.
    expect(typing).to_be_hidden(timeout=20_000)
    # Sending still works, and the composer keeps signalling after it was replaced.
    ann.page.locator("#composer [name=body]").press_sequentially("lo")
    ann.page.locator("#composer [name=body]").press("Enter")
    expect_message(bob.page, ann.username, "hello")


def test_a_pm_sent_without_javascript_is_confirmed(sign_up, room_slug):
    bob = sign_up("bob")
    ann = sign_up("ann", java_script_enabled=False)
    ann.page.goto(f"{ann.base_url}/rooms/{room_slug}/")
    ann.create_room(room_slug, from_its_address=True)
    ann.page.locator("#composer [name=body]").fill(f"/pm {bob.username} see you at noon")
    ann.page.get_by_role("button", name="Send").click()

    status = ann.page.locator(".composer-status")
    expect(status).to_contain_text(f"Private message sent to {bob.username}: “see you at noon”")
    assert "noon" not in ann.page.url  # the confirmation names the message by its id only
    status.get_by_role("link", name="see the conversation").click()
    expect(ann.page.locator("#pm-log .message-body")).to_have_text(["see you at noon"])


# manage.py say --------------------------------------------------------------------------


def say(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "say", *args],
        cwd=servers.PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )


@pytest.fixture(scope="module")
def redis_env(
    redis_server: servers.RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """A server's settings with Redis as the channel layer (SQLite for the rest)."""
    root: Path = tmp_path_factory.mktemp("say-server")
    env = servers.server_env(
        DATABASE_URL=f"sqlite:///{root / 'say.sqlite3'}",
        REDIS_URL=redis_server.url,
        STATIC_ROOT=servers.collected_static_root(),
    )
    servers.migrate(env)
    return env


@pytest.fixture(scope="module")
def redis_chat_server(redis_env: dict[str, str]) -> Iterator[servers.DaphneProcess]:
    with servers.daphne(redis_env) as server:
        yield server


def test_say_from_another_process_appears_on_an_open_page(
    sign_up, redis_env, redis_chat_server, room_slug
):
    ann = sign_up("ann", server=redis_chat_server)
    ann.open_room(room_slug)

    done = say(redis_env, room_slug, "The server restarts at <noon>.")

    expect_message(ann.page, "system", "The server restarts at <noon>.")
    assert f"in #{room_slug} as system" in done.stdout
    # Through Redis: nothing to warn about (stderr has the log's lines only).
    assert "REDIS_URL" not in done.stderr and "did not take it" not in done.stderr

    say(redis_env, room_slug, "and ann agrees", "--as", ann.username)
    expect_message(ann.page, ann.username, "and ann agrees")


def test_say_without_redis_stores_the_message_and_says_it_is_not_live(
    sign_up, e2e_env, chat_server, room_slug
):
    ann = sign_up("ann")
    ann.open_room(room_slug)

    done = say(e2e_env, room_slug, "stored, not pushed")

    assert "REDIS_URL is not set" in done.stderr
    ann.page.reload()  # the page's next load shows it
    expect_message(ann.page, "system", "stored, not pushed")
