"""A day's transcript (/rooms/<slug>/<yyyy>/<mm>/<dd>/): the whole day of a room as a plain
page, in seq order, linked to the nearest days that had messages; 404 for a day that is no
date and for rooms the reader may not enter; a bounded number of range queries."""

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Preferences
from rooms import services
from rooms.models import Message, Room
from rooms.tests import fragments

pytestmark = pytest.mark.django_db


def post_at(room: Room, author: Any, when: datetime, body: str) -> Message:
    """A message stored as usual (taking the room's next seq), then dated `when`."""
    message = Message.objects.create(room=room, author=author, body=body)
    Message.objects.filter(pk=message.pk).update(created_at=when)
    message.refresh_from_db()
    return message


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def page(response: Any) -> fragments.Element:
    assert response.status_code == 200, response.status_code
    return fragments.parse(response.content.decode())


def shown(document: fragments.Element) -> list[str]:
    return [
        a.one(class_="message-body").text for a in document.find_all("article", class_="message")
    ]


def day_link(document: fragments.Element, rel: str) -> str | None:
    link = document.find("a", rel=rel)
    return link.attr("href") if link else None


def test_transcript_shows_the_whole_day_in_seq_order(alice_client, lobby, alice, bob) -> None:
    post_at(lobby, alice, at(25, 23, 59), "the day before")
    first = post_at(lobby, alice, at(26, 0, 0), "at midnight")
    # Stored later (a higher seq) but dated a moment earlier: the room's order is seq's.
    post_at(lobby, bob, at(26, 12), "noon")
    post_at(lobby, alice, at(26, 11, 59), "stored after noon")
    last = post_at(lobby, bob, at(26, 23, 59), "last of the day")
    post_at(lobby, bob, at(27, 0, 0), "the day after")

    response = alice_client.get("/rooms/lobby/2026/11/26/")
    document = page(response)

    assert shown(document) == ["at midnight", "noon", "stored after noon", "last of the day"]
    assert document.one("h1").text.split() == ["#lobby", "on", "Thursday", "26", "November", "2026"]
    # A plain page: no socket to connect, nothing to post with.
    assert b'ws-connect="/ws/rooms/' not in response.content  # (the user's own socket only)
    assert document.find("form", id="composer") is None
    # Each message's time links to its permalink.
    for message in (first, last):
        link = document.one_by_id(f"message-{message.pk}").one("a", class_="message-permalink")
        assert link.attr("href") == f"/rooms/lobby/messages/{message.pk}/#message-{message.pk}"


def test_user_text_is_escaped_in_the_transcript(alice_client, lobby, alice) -> None:
    post_at(lobby, alice, at(26, 9), "<script>alert(1)</script>")

    response = alice_client.get("/rooms/lobby/2026/11/26/")

    assert b"<script>alert(1)</script>" not in response.content
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in response.content


def test_prev_and_next_link_the_nearest_days_with_messages(
    alice_client, lobby, other_room, alice
) -> None:
    post_at(lobby, alice, at(2, 10), "long ago")
    post_at(lobby, alice, at(20, 10), "before the gap")
    post_at(lobby, alice, at(26, 10), "today")
    post_at(lobby, alice, at(3, 10, month=12), "after the gap")
    # Another room's days in between are not this room's.
    post_at(other_room, alice, at(23, 10), "elsewhere")
    post_at(other_room, alice, at(28, 10), "elsewhere")

    document = page(alice_client.get("/rooms/lobby/2026/11/26/"))

    assert day_link(document, "prev") == "/rooms/lobby/2026/11/20/"
    assert day_link(document, "next") == "/rooms/lobby/2026/12/03/"
    first = page(alice_client.get("/rooms/lobby/2026/11/02/"))
    assert day_link(first, "prev") is None
    assert day_link(first, "next") == "/rooms/lobby/2026/11/20/"
    last = page(alice_client.get("/rooms/lobby/2026/12/03/"))
    assert day_link(last, "prev") == "/rooms/lobby/2026/11/26/"
    assert day_link(last, "next") is None


def test_an_empty_day_says_so_and_still_links_onward(alice_client, lobby, alice) -> None:
    post_at(lobby, alice, at(20, 10), "before")
    post_at(lobby, alice, at(28, 10), "after")

    document = page(alice_client.get("/rooms/lobby/2026/11/24/"))

    assert shown(document) == []
    assert "No messages in #lobby on this day." in document.text
    assert day_link(document, "prev") == "/rooms/lobby/2026/11/20/"
    assert day_link(document, "next") == "/rooms/lobby/2026/11/28/"


@pytest.mark.parametrize(
    "path",
    [
        "/rooms/lobby/2026/02/30/",  # no such date
        "/rooms/lobby/2026/13/01/",
        "/rooms/lobby/2026/00/10/",
        "/rooms/lobby/0000/01/01/",  # no year 0
        "/rooms/lobby/2026/1/5/",  # one address per day: zero-padded only
        "/rooms/lobby/20261/01/05/",
        "/rooms/lobby/2026/11/26",  # (no slash: redirected, see below)
        "/rooms/nowhere/2026/11/26/",  # no such room
    ],
)
def test_a_day_that_is_no_date_or_a_missing_room_is_404(alice_client, lobby, alice, path) -> None:
    post_at(lobby, alice, at(26, 10), "here")

    response = alice_client.get(path)

    expected = 301 if not path.endswith("/") else 404
    assert response.status_code == expected, (path, response.status_code)


def test_private_rooms_transcripts_are_for_members_only(login, alice, bob, carol, secret) -> None:
    post_at(secret, alice, at(26, 10), "secret words")

    assert page(login(bob).get("/rooms/secret/2026/11/26/")).text.count("secret words") == 1
    response = login(carol).get("/rooms/secret/2026/11/26/")
    assert response.status_code == 404
    assert b"secret words" not in response.content


def test_staff_rooms_transcripts_are_404_for_others(alice_client, ops, alice) -> None:
    post_at(ops, alice, at(26, 10), "staff only")

    response = alice_client.get("/rooms/ops/2026/11/26/")

    assert response.status_code == 404
    assert b"staff only" not in response.content


def test_transcript_queries_are_a_bounded_few_range_queries(
    alice_client, lobby, alice, bob
) -> None:
    post_at(lobby, alice, at(25, 10), "before")
    for i in range(5):
        post_at(lobby, alice if i % 2 else bob, at(26, 10, i), f"small {i}")
    with CaptureQueriesContext(connection) as small:
        page(alice_client.get("/rooms/lobby/2026/11/26/"))
    for i in range(60):
        post_at(lobby, alice if i % 2 else bob, at(26, 12, i), f"large {i}")
    with CaptureQueriesContext(connection) as large:
        document = page(alice_client.get("/rooms/lobby/2026/11/26/"))

    assert len(shown(document)) == 65
    assert len(large.captured_queries) == len(small.captured_queries)
    with CaptureQueriesContext(connection) as service:
        services.day_transcript(lobby, date(2026, 11, 26))
    sqls = [query["sql"].upper() for query in service.captured_queries]
    reactions = [sql for sql in sqls if 'FROM "ROOMS_REACTION"' in sql]
    sqls = [sql for sql in sqls if sql not in reactions]
    assert len(reactions) == 1  # the day's reactions, for all its messages at once
    assert len(sqls) == 3  # the day (with authors), the day before, the day after
    assert all("OFFSET" not in sql and '"CREATED_AT"' in sql for sql in sqls)
    assert all("LIMIT 1" in sql for sql in sqls[1:])


@pytest.mark.skipif(connection.vendor != "sqlite", reason="reads SQLite's query plan")
def test_transcript_queries_use_the_room_and_created_at_index(lobby, alice) -> None:
    post_at(lobby, alice, at(26, 10), "here")
    with CaptureQueriesContext(connection) as captured:
        services.day_transcript(lobby, date(2026, 11, 26))

    with connection.cursor() as cursor:
        for query in captured.captured_queries:
            if 'FROM "rooms_reaction"' in query["sql"]:
                continue  # (by message id: rooms_reaction's message index)
            cursor.execute(f"EXPLAIN QUERY PLAN {query['sql']}")
            plan = " ".join(str(row) for row in cursor.fetchall())
            assert "message_room_created_at" in plan, (query["sql"], plan)


def test_days_follow_the_zone_given_including_a_clock_change() -> None:
    london = ZoneInfo("Europe/London")

    start, end = services.day_bounds(date(2026, 3, 29), london)  # clocks go forward
    assert (start, end) == (at(29, 0, month=3), at(29, 23, month=3))
    start, end = services.day_bounds(date(2026, 10, 25), london)  # clocks go back
    assert (start, end) == (at(24, 23, month=10), at(26, 0, month=10))
    assert services.day_bounds(date(2026, 11, 26)) == (at(26, 0), at(27, 0))


def test_the_neighbouring_days_are_the_zones_days(lobby, alice) -> None:
    tokyo = ZoneInfo("Asia/Tokyo")  # UTC+9
    post_at(lobby, alice, at(25, 14, 59), "25th in Tokyo")
    post_at(lobby, alice, at(25, 15), "26th in Tokyo, 25th in UTC")
    post_at(lobby, alice, at(26, 16), "27th in Tokyo")

    transcript = services.day_transcript(lobby, date(2026, 11, 26), tokyo)

    assert [m.body for m in transcript.messages] == ["26th in Tokyo, 25th in UTC"]
    assert transcript.previous_day == date(2026, 11, 25)
    assert transcript.next_day == date(2026, 11, 27)


def test_a_permalink_links_to_its_days_transcript(alice_client, lobby, alice) -> None:
    message = post_at(lobby, alice, at(26, 23, 30), "late")

    document = page(alice_client.get(f"/rooms/lobby/messages/{message.pk}/"))

    assert document.one("a", class_="transcript-link").attr("href") == "/rooms/lobby/2026/11/26/"


def choose(user: Any, zone: str) -> None:
    Preferences.objects.update_or_create(user=user, defaults={"time_zone": zone})


def test_the_transcript_page_is_the_viewers_day(alice_client, lobby, alice) -> None:
    post_at(lobby, alice, at(25, 14, 59), "25th in Tokyo")
    post_at(lobby, alice, at(25, 20), "26th in Tokyo, 25th in UTC")
    post_at(lobby, alice, at(26, 16), "27th in Tokyo, 26th in UTC")

    utc_page = page(alice_client.get("/rooms/lobby/2026/11/26/"))
    assert shown(utc_page) == ["27th in Tokyo, 26th in UTC"]
    assert "times in UTC" in utc_page.text
    choose(alice, "Asia/Tokyo")
    tokyo_page = page(alice_client.get("/rooms/lobby/2026/11/26/"))

    assert shown(tokyo_page) == ["26th in Tokyo, 25th in UTC"]
    assert tokyo_page.one("article", class_="message").one("time").text.strip() == "05:00"
    assert "times in Asia/Tokyo" in tokyo_page.text
    assert day_link(tokyo_page, "prev") == "/rooms/lobby/2026/11/25/"
    assert day_link(tokyo_page, "next") == "/rooms/lobby/2026/11/27/"


def test_a_permalinks_day_link_is_the_viewers_day(alice_client, lobby, alice) -> None:
    message = post_at(lobby, alice, at(25, 20), "the 26th in Tokyo")
    choose(alice, "Asia/Tokyo")

    document = page(alice_client.get(f"/rooms/lobby/messages/{message.pk}/"))

    link = document.one("a", class_="transcript-link")
    assert link.attr("href") == "/rooms/lobby/2026/11/26/"
    assert "26 Nov 2026" in link.text
