"""Days and local time: the settings page's time zone, and the day dividers and times a
page render shows in it (at midnight, and across both of London's DST changes in 2026)."""

import zoneinfo
from datetime import UTC, datetime
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import Preferences
from accounts.time_zones import day_label, time_zone_of
from rooms.models import Message, Room
from rooms.tests import fragments

pytestmark = pytest.mark.django_db


def at(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def post_at(room: Room, author: Any, *moments: datetime) -> list[Message]:
    """Messages at these UTC moments (created_at is auto_now_add: set it afterwards)."""
    made = []
    for moment in moments:
        message = Message.objects.create(room=room, author=author, body=f"at {moment:%H:%M}")
        Message.objects.filter(pk=message.pk).update(created_at=moment)
        made.append(message)
    return made


def log_of(response: Any) -> list[tuple[str, str]]:
    """The log in order: ("day", its data-day and label) and ("message", id and shown time)."""
    assert response.status_code == 200, response.status_code
    document = fragments.parse(response.content.decode())
    log = document.one(id="chat-log") if document.find(id="chat-log") else document
    shown = []
    for element in log.top_level:
        if "day-divider" in (element.attrs.get("class") or ""):
            shown.append(("day", f"{element.attr('data-day')} {element.attr('aria-label')}"))
        elif element.tag == "article":
            time = element.one("time")
            shown.append(("message", time.text.strip()))
    return shown


def choose(user: Any, zone: str) -> None:
    Preferences.objects.update_or_create(user=user, defaults={"time_zone": zone})


# Dividers in the viewer's zone ---------------------------------------------------------


def test_a_divider_at_utc_midnight_only_for_viewers_whose_day_changes(
    alice_client, alice, lobby
) -> None:
    post_at(lobby, alice, at(2026, 3, 10, 23, 59), at(2026, 3, 11, 0, 0))

    assert log_of(alice_client.get("/rooms/lobby/")) == [
        ("day", "2026-03-10 Tuesday 10 March 2026"),
        ("message", "23:59"),
        ("day", "2026-03-11 Wednesday 11 March 2026"),
        ("message", "00:00"),
    ]
    choose(alice, "America/New_York")  # UTC-4 since 8 March
    assert log_of(alice_client.get("/rooms/lobby/")) == [
        ("day", "2026-03-10 Tuesday 10 March 2026"),
        ("message", "19:59"),
        ("message", "20:00"),
    ]
    choose(alice, "Asia/Tokyo")
    assert log_of(alice_client.get("/rooms/lobby/")) == [
        ("day", "2026-03-11 Wednesday 11 March 2026"),
        ("message", "08:59"),
        ("message", "09:00"),
    ]


def test_london_springs_forward_and_its_days_move_an_hour(alice_client, alice, lobby) -> None:
    # 29 March 2026: 01:00 GMT becomes 02:00 BST, so 23:30 UTC that night is already the 30th.
    post_at(lobby, alice, at(2026, 3, 28, 23, 30), at(2026, 3, 29, 0, 30), at(2026, 3, 29, 23, 30))
    choose(alice, "Europe/London")

    assert log_of(alice_client.get("/rooms/lobby/")) == [
        ("day", "2026-03-28 Saturday 28 March 2026"),
        ("message", "23:30"),
        ("day", "2026-03-29 Sunday 29 March 2026"),
        ("message", "00:30"),
        ("day", "2026-03-30 Monday 30 March 2026"),
        ("message", "00:30"),
    ]


def test_london_falls_back_and_one_day_holds_both_sides_of_the_change(
    alice_client, alice, lobby
) -> None:
    # 25 October 2026: 02:00 BST becomes 01:00 GMT; 23:30 UTC on the 24th is 00:30 BST on the 25th.
    post_at(lobby, alice, at(2026, 10, 24, 23, 30), at(2026, 10, 25, 23, 30))
    choose(alice, "Europe/London")

    assert log_of(alice_client.get("/rooms/lobby/")) == [
        ("day", "2026-10-25 Sunday 25 October 2026"),
        ("message", "00:30"),
        ("message", "23:30"),
    ]
    choose(alice, "UTC")
    assert [kind for kind, _ in log_of(alice_client.get("/rooms/lobby/"))] == [
        "day",
        "message",
        "day",
        "message",
    ]


def test_times_carry_utc_in_their_markup_and_the_full_local_date_on_hover(
    alice_client, alice, lobby
) -> None:
    (message,) = post_at(lobby, alice, at(2026, 3, 29, 23, 30))
    choose(alice, "Europe/London")

    document = fragments.parse(alice_client.get("/rooms/lobby/").content.decode())
    article = document.one(id=f"message-{message.pk}")
    time = article.one("time")
    assert article.attr("data-day") == "2026-03-29"  # UTC, for the page's script
    assert time.attr("datetime") == "2026-03-29T23:30:00+00:00"
    assert time.attr("title") == "Monday 30 March 2026, 00:30 BST"
    assert time.text.strip() == "00:30"


def test_todays_messages_are_under_today(alice_client, alice, lobby) -> None:
    post_at(lobby, alice, timezone.now())

    assert log_of(alice_client.get("/rooms/lobby/"))[0][1].endswith(" Today")


def test_an_older_page_deletes_the_divider_below_it_when_it_ends_on_the_same_day(
    alice_client, alice, lobby
) -> None:
    days = [at(2026, 3, 1, 9, 0)] * 50 + [at(2026, 3, 2, 9, 0)] * 10 + [at(2026, 3, 2, 10, 0)] * 50
    messages = post_at(lobby, alice, *days)

    same_day = alice_client.get(f"/rooms/lobby/?before={messages[60].pk}", HTTP_HX_REQUEST="true")
    other_day = alice_client.get(f"/rooms/lobby/?before={messages[50].pk}", HTTP_HX_REQUEST="true")

    deleted = fragments.parse(same_day.content.decode()).find(id=f"day-{messages[60].pk}")
    assert deleted is not None and deleted.attr("hx-swap-oob") == "delete"
    assert [kind for kind, _ in log_of(same_day)].count("day") == 2  # 1 March, then 2 March
    assert fragments.parse(other_day.content.decode()).find(id=f"day-{messages[50].pk}") is None


def test_the_page_holds_the_divider_template_for_pushed_messages(alice_client, lobby) -> None:
    document = fragments.parse(alice_client.get("/rooms/lobby/").content.decode())
    assert document.find("template", id="day-divider-template") is not None


# Labels ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "label"),
    [
        (at(2026, 11, 26, 0, 0), "Today"),
        (at(2026, 11, 25, 23, 59), "Yesterday"),
        (at(2026, 11, 25, 0, 0), "Yesterday"),
        (at(2026, 11, 23, 12, 0), "Monday 23 November"),
        (at(2026, 11, 20, 12, 0), "Friday 20 November"),
        (at(2026, 11, 19, 12, 0), "Thursday 19 November 2026"),
        (at(2025, 11, 26, 12, 0), "Wednesday 26 November 2025"),
    ],
)
def test_day_labels_in_utc(moment: datetime, label: str) -> None:
    with timezone.override(zoneinfo.ZoneInfo("UTC")):
        assert day_label(moment, at(2026, 11, 26, 15, 0)) == label


def test_day_labels_follow_the_zone_not_utc() -> None:
    now = at(2026, 11, 26, 15, 0)  # 27 November, 00:00 in Tokyo
    with timezone.override(zoneinfo.ZoneInfo("Asia/Tokyo")):
        assert day_label(at(2026, 11, 26, 14, 59), now) == "Yesterday"
        assert day_label(at(2026, 11, 26, 15, 0), now) == "Today"


# The settings page -----------------------------------------------------------------------


def test_settings_default_to_utc_and_offer_the_browsers_zone(alice_client, alice) -> None:
    response = alice_client.get("/accounts/settings/")

    document = fragments.parse(response.content.decode())
    select = document.one("select", name="time_zone")
    assert select.one("option", value="UTC").attrs.keys() >= {"selected"}
    assert select.find("option", value="Europe/London") is not None
    assert "data-prefill-time-zone" in document.one("form", class_="stacked-form").attrs
    assert time_zone_of(alice) == "UTC"


def test_a_valid_zone_is_saved_and_used(alice_client, alice) -> None:
    response = alice_client.post("/accounts/settings/", {"time_zone": "Europe/London"})

    assert response.status_code == 302
    assert time_zone_of(alice) == "Europe/London"
    document = fragments.parse(alice_client.get(response["Location"]).content.decode())
    assert document.one("option", value="Europe/London").attrs.keys() >= {"selected"}
    assert "data-prefill-time-zone" not in document.one("form", class_="stacked-form").attrs


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "../../etc/passwd", "localtime"])
def test_an_unknown_zone_is_a_form_error(alice_client, alice, zone: str) -> None:
    response = alice_client.post("/accounts/settings/", {"time_zone": zone})

    assert response.status_code == 400
    errors = fragments.parse(response.content.decode()).find_all("p", class_="field-error")
    assert errors, response.content.decode()
    assert time_zone_of(alice) == "UTC"


def test_settings_need_a_login(client) -> None:
    response = client.get("/accounts/settings/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_top_bar_links_to_settings(alice_client) -> None:
    document = fragments.parse(alice_client.get("/rooms/").content.decode())
    assert document.find("a", href="/accounts/settings/") is not None
