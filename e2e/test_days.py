"""Days and local time in a real browser: a pushed message (rendered once, in UTC) shows
its time in the reader's zone, and a day divider appears where the day changes."""

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from playwright.sync_api import Locator, expect

from e2e import servers
from e2e.chat import expect_message
from e2e.conftest import SignUp

SEED_YESTERDAY = (
    "import json, sys\n"
    "from datetime import timedelta\n"
    "from django.contrib.auth import get_user_model\n"
    "from django.utils import timezone\n"
    "from rooms.models import Message, Room\n"
    "data = json.load(sys.stdin)\n"
    "author = get_user_model().objects.get(username=data['author'])\n"
    "room, _ = Room.objects.get_or_create(slug=data['slug'], defaults={'owner': author})\n"
    "message = Message.objects.create(room=room, author=author, body='from yesterday')\n"
    "Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(days=1))\n"
    "for i in range(data.get('today', 0)):\n"
    "    Message.objects.create(room=room, author=author, body=f'today {i}')\n"
    "print(json.dumps(message.pk))\n"
)
READER_ZONE = "Asia/Tokyo"  # UTC+9 all year: its day differs from UTC's for 9 hours of each


def expect_local_time(time: Locator) -> None:
    """A pushed <time>: UTC in its markup, shown (and titled) in the reader's zone."""
    when = datetime.fromisoformat(time.get_attribute("datetime") or "")
    assert when.utcoffset() is not None and when.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    local = when.astimezone(ZoneInfo(READER_ZONE))
    expect(time).to_have_text(local.strftime("%H:%M"))
    expect(time).to_have_attribute("title", re.compile(f"{local.day}.*{local.year}"))


def test_a_pushed_message_shows_local_time_under_a_new_day(
    sign_up: SignUp, e2e_env: dict[str, str], room_slug: str
) -> None:
    reader = sign_up("tokyo", timezone_id=READER_ZONE)
    writer = sign_up("writer")
    servers.run_shell(e2e_env, SEED_YESTERDAY, {"slug": room_slug, "author": writer.username})
    page = reader.open_room(room_slug)
    writer.open_room(room_slug)
    expect(page.locator("#chat-log .day-divider")).to_have_count(1)  # yesterday's

    writer.send("hello from today")
    expect_message(page, writer.username, "hello from today")

    pushed = page.locator("#chat-live .message").last
    expect_local_time(pushed.locator("time"))
    divider = page.locator("#chat-live .day-divider")
    expect(divider).to_have_count(1)
    expect(divider).to_have_text("Today")
    expect(divider).to_have_attribute("role", "separator")
    # The divider stands right before the pushed message, and not before the next one.
    assert pushed.evaluate("m => m.previousElementSibling.classList.contains('day-divider')")

    writer.send("and again")
    expect_message(page, writer.username, "and again")
    expect(divider).to_have_count(1)


def test_an_older_page_joins_the_days_without_a_second_divider(
    sign_up: SignUp, e2e_env: dict[str, str], room_slug: str
) -> None:
    reader = sign_up("scroller")
    servers.run_shell(
        e2e_env, SEED_YESTERDAY, {"slug": room_slug, "author": reader.username, "today": 69}
    )
    page = reader.open_room(room_slug)
    dividers = page.locator("#chat-log .day-divider")
    expect(dividers).to_have_text(["Today"])

    page.locator(".chat-scroll").evaluate("el => { el.scrollTop = -el.scrollHeight; }")
    expect(page.locator("#chat-log .message")).to_have_count(70)

    # The older page ends on today: the "Today" atop the first page went, its own came.
    expect(dividers).to_have_text(["Yesterday", "Today"])


def test_the_settings_page_offers_the_browsers_zone_and_pages_then_use_it(
    sign_up: SignUp, e2e_env: dict[str, str], room_slug: str
) -> None:
    reader = sign_up("settler", timezone_id=READER_ZONE)
    servers.run_shell(e2e_env, SEED_YESTERDAY, {"slug": room_slug, "author": reader.username})
    page = reader.page
    page.get_by_role("link", name="Settings").click()
    expect(page.get_by_label("Time zone")).to_have_value(READER_ZONE)

    page.get_by_role("button", name="Save").click()
    expect(page.locator("main").get_by_role("status")).to_have_text("Saved.")
    page.reload()  # chosen now: the page keeps it, no longer guessing
    expect(page.get_by_label("Time zone")).to_have_value(READER_ZONE)

    reader.open_room(room_slug)
    time = page.locator("#chat-log .message time").first
    when = datetime.fromisoformat(time.get_attribute("datetime") or "")
    expect(time).to_have_text(when.astimezone(ZoneInfo(READER_ZONE)).strftime("%H:%M"))


def test_a_pushed_private_message_shows_local_time_too(sign_up: SignUp, room_slug: str) -> None:
    reader = sign_up("tokyopm", timezone_id=READER_ZONE)
    writer = sign_up("pmwriter")
    page = reader.open_room(room_slug)
    writer.open_room(room_slug)

    writer.send(f"/pm {reader.username} a private hello")

    pushed = page.locator(f'#chat-live .message--private[data-sender="{writer.username}"]')
    expect(pushed.locator(".message-body")).to_have_text("a private hello")
    expect_local_time(pushed.locator("time"))
    # The first message in the log: a divider stands right before it.
    expect(page.locator("#chat-live .day-divider")).to_have_count(1)
    assert pushed.evaluate("m => m.previousElementSibling.classList.contains('day-divider')")
