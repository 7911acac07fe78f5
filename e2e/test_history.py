"""Older history and permalinks in a real browser: with JavaScript off the rel="prev"
chain reaches message 1; with it, scrolling the log up loads older pages in place (htmx)
while someone keeps posting; a permalink opens with its message marked and in view."""

from typing import Any

from playwright.sync_api import expect

from e2e import servers
from e2e.chat import ServerDatabase, expect_message, messages, wait_until
from e2e.conftest import SignUp

SEED = (
    "import json, sys\n"
    "from django.contrib.auth import get_user_model\n"
    "from django.db import transaction\n"
    "from rooms.models import Message, Room\n"
    "data = json.load(sys.stdin)\n"
    "author = get_user_model().objects.get(username=data['author'])\n"
    "room, _ = Room.objects.get_or_create(slug=data['slug'], defaults={'owner': author})\n"
    "with transaction.atomic():\n"
    "    ids = [Message.objects.create(room=room, author=author, body=f'old {i}').pk\n"
    "           for i in range(1, data['count'] + 1)]\n"
    "print(json.dumps(ids))\n"
)


def seed(env: dict[str, str], slug: str, author: str, count: int) -> list[int]:
    """`count` messages "old 1".."old <count>" by `author` in room `slug` (made if need be),
    stored by the server's own models; their ids, oldest first."""
    ids: list[int] = servers.run_shell(env, SEED, {"slug": slug, "author": author, "count": count})
    return ids


def shown_ids(page: Any) -> list[int]:
    return [message["id"] for message in messages(page)]


def test_without_javascript_the_prev_chain_reaches_message_1(
    sign_up: SignUp, e2e_env: dict[str, str], room_slug: str
) -> None:
    reader = sign_up("plain", java_script_enabled=False)
    ids = seed(e2e_env, room_slug, reader.username, 130)
    page = reader.page
    page.goto(f"{reader.base_url}/rooms/{room_slug}/")
    pages = [shown_ids(page)]

    while page.locator("a[rel=prev]").count():
        with page.expect_navigation():
            page.locator("a[rel=prev]").click()
        expect(page.locator("nav.chat-newer")).to_be_visible()
        pages.append(shown_ids(page))

    assert [len(shown) for shown in pages] == [50, 50, 30]
    assert [pk for shown in reversed(pages) for pk in shown] == ids
    page.get_by_role("link", name="Jump to the newest").click()
    expect(page).to_have_url(f"{reader.base_url}/rooms/{room_slug}/")
    assert shown_ids(page) == ids[-50:]


def test_scrolling_up_loads_older_pages_in_order_while_someone_posts(
    sign_up: SignUp, e2e_env: dict[str, str], server_db: ServerDatabase, room_slug: str
) -> None:
    reader, poster = sign_up("reader"), sign_up("poster")
    ids = seed(e2e_env, room_slug, poster.username, 130)
    page = reader.open_room(room_slug)
    poster.open_room(room_slug)
    scroller = page.locator(".chat-scroll")
    assert shown_ids(page) == ids[-50:]

    # The first older page: the message at the top of the view stays where it was.
    scroller.evaluate("el => { el.scrollTop = -el.scrollHeight; }")
    top = page.locator(f"#message-{ids[-50]}")
    y_before = top.bounding_box()["y"]  # type: ignore[index]
    wait_until(page, lambda: len(shown_ids(page)) >= 100, "the first older page")
    assert abs(top.bounding_box()["y"] - y_before) < 2  # type: ignore[index]

    for n in range(1, 4):
        poster.send(f"live {n}")
        expect_message(page, poster.username, f"live {n}")
        scroller.evaluate("el => { el.scrollTop = -el.scrollHeight; }")

    def read_to_the_top() -> bool:
        scroller.evaluate("el => { el.scrollTop = -el.scrollHeight; }")
        return page.locator("a.chat-older").count() == 0 and len(shown_ids(page)) == 133

    wait_until(page, read_to_the_top, "every older page, down to message 1")

    stored = [pk for pk, _, _ in server_db.room_messages(room_slug)]
    assert shown_ids(page) == stored
    assert len(set(stored)) == 133 and stored[:130] == ids
    expect(page.locator(f"#message-{ids[0]}")).to_be_in_viewport()


def test_a_permalink_opens_with_its_message_marked_and_in_view(
    sign_up: SignUp, e2e_env: dict[str, str], room_slug: str
) -> None:
    reader = sign_up("linker")
    ids = seed(e2e_env, room_slug, reader.username, 130)
    page = reader.page
    target = ids[39]

    page.goto(f"{reader.base_url}/rooms/{room_slug}/messages/{target}/#message-{target}")

    marked = page.locator("[aria-current=true]")
    expect(marked).to_have_count(1)
    expect(marked).to_have_id(f"message-{target}")
    expect(marked).to_be_in_viewport()
    assert shown_ids(page) == ids[14:65]
    expect(page.locator("a[rel=prev]")).to_have_attribute(
        "href", f"/rooms/{room_slug}/?before={ids[14]}"
    )

    # Each message's time is its link: from the room page to the newest one's permalink.
    reader.open_room(room_slug)
    page.locator(f"#message-{ids[-1]} a.message-permalink").click()
    expect(page).to_have_url(
        f"{reader.base_url}/rooms/{room_slug}/messages/{ids[-1]}/#message-{ids[-1]}"
    )
    expect(page.locator(f"#message-{ids[-1]}")).to_have_attribute("aria-current", "true")
    expect(page.locator(f"#message-{ids[-1]}")).to_be_in_viewport()


def test_without_javascript_a_days_transcript_reads_whole_and_links_to_permalinks(
    sign_up: SignUp, e2e_env: dict[str, str], room_slug: str
) -> None:
    reader = sign_up("printer", java_script_enabled=False)
    ids = seed(e2e_env, room_slug, reader.username, 70)
    page = reader.page
    # From a permalink to its day (reached as a reader would, so the test needs no clock).
    page.goto(f"{reader.base_url}/rooms/{room_slug}/messages/{ids[10]}/")
    with page.expect_navigation():
        page.locator("a.transcript-link").click()

    expect(page.locator("h1")).to_contain_text(f"#{room_slug} on")
    # The whole day on one page (more than a page of the room's history), in order.
    transcript = page.locator("#transcript-log article.message").evaluate_all(
        "els => els.map(el => Number(el.dataset.messageId))"
    )
    assert transcript == ids
    assert page.locator("#composer").count() == 0
    with page.expect_navigation():
        page.locator(f"#message-{ids[42]} a.message-permalink").click()
    expect(page.locator("[aria-current=true]")).to_have_attribute("id", f"message-{ids[42]}")
    expect(page.locator(f"#message-{ids[42]} .message-body")).to_have_text("old 43")


PM_SEED = (
    "import json, sys\n"
    "from django.contrib.auth import get_user_model\n"
    "from rooms.models import PrivateMessage\n"
    "data = json.load(sys.stdin)\n"
    "users = get_user_model().objects\n"
    "one, two = users.get(username=data['one']), users.get(username=data['two'])\n"
    "ids = [PrivateMessage.objects.create(sender=(one, two)[i % 2], recipient=(two, one)[i % 2],\n"
    "                                     body=f'pm {i}').pk\n"
    "       for i in range(1, data['count'] + 1)]\n"
    "print(json.dumps(ids))\n"
)


def pm_ids(page: Any) -> list[int]:
    ids: list[int] = page.locator("#pm-log article.message").evaluate_all(
        "els => els.map(el => Number(el.dataset.pmId))"
    )
    return ids


def test_without_javascript_a_conversation_opens_newest_pages_back_and_has_permalinks(
    sign_up: SignUp, e2e_env: dict[str, str]
) -> None:
    reader = sign_up("pmreader", java_script_enabled=False)
    writer = sign_up("pmwriter")
    ids: list[int] = servers.run_shell(
        e2e_env, PM_SEED, {"one": reader.username, "two": writer.username, "count": 75}
    )
    page = reader.page
    page.goto(f"{reader.base_url}/messages/{writer.username}/")
    pages = [pm_ids(page)]
    while page.locator("a[rel=prev]").count():
        with page.expect_navigation():
            page.locator("a[rel=prev]").click()
        pages.append(pm_ids(page))

    assert [len(shown) for shown in pages] == [50, 25]
    assert [pk for shown in reversed(pages) for pk in shown] == ids
    with page.expect_navigation():
        page.locator(f"#pm-{ids[3]} a.message-permalink").click()
    marked = page.locator("[aria-current=true]")
    expect(marked).to_have_attribute("id", f"pm-{ids[3]}")
    expect(marked).to_be_in_viewport()
    page.get_by_role("link", name="Jump to the newest").click()
    expect(page).to_have_url(f"{reader.base_url}/messages/{writer.username}/")
    assert pm_ids(page) == ids[-50:]
