"""Private-message conversations page like rooms: /messages/<user>/ opens at the newest 50
(oldest first), `?before=<pm id>` pages back (a keyset on (sender, recipient, id)), and
/messages/<user>/<pm id>/ is a permalink; a message between other people is a 404."""

from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Preferences
from rooms import services
from rooms.models import PrivateMessage
from rooms.tests import fragments

pytestmark = pytest.mark.django_db


def exchange(alice: Any, bob: Any, count: int) -> list[PrivateMessage]:
    """`count` messages "pm 1".."pm <count>", alternating alice → bob and bob → alice."""
    return [
        PrivateMessage.objects.create(
            sender=alice if i % 2 else bob, recipient=bob if i % 2 else alice, body=f"pm {i}"
        )
        for i in range(1, count + 1)
    ]


def page(response: Any) -> fragments.Element:
    assert response.status_code == 200, response.status_code
    return fragments.parse(response.content.decode())


def shown_ids(document: fragments.Element) -> list[int]:
    return [int(a.attr("data-pm-id")) for a in document.find_all("article", class_="message")]


def link(document: fragments.Element, rel: str) -> str | None:
    found = document.find("a", rel=rel)
    return found.attr("href") if found else None


def test_conversation_opens_at_the_newest_50_oldest_first(alice_client, alice, bob, carol) -> None:
    pms = exchange(alice, bob, 120)
    PrivateMessage.objects.create(sender=carol, recipient=alice, body="someone else")

    document = page(alice_client.get("/messages/bob/"))

    assert shown_ids(document) == [pm.pk for pm in pms[70:]]
    assert link(document, "prev") == f"/messages/bob/?before={pms[70].pk}"
    assert link(document, "next") is None
    assert document.find("nav", class_="chat-newer") is None


def test_a_short_conversation_has_no_older_link(alice_client, alice, bob) -> None:
    pms = exchange(alice, bob, 50)

    document = page(alice_client.get("/messages/bob/"))

    assert shown_ids(document) == [pm.pk for pm in pms]
    assert link(document, "prev") is None


def test_before_pages_reach_the_first_message_from_either_side(
    alice_client, login, alice, bob
) -> None:
    pms = exchange(alice, bob, 120)

    for client, other in ((alice_client, "bob"), (login(bob), "alice")):
        pages: list[list[int]] = []
        url: str | None = f"/messages/{other}/"
        while url:
            document = page(client.get(url))
            pages.append(shown_ids(document))
            url = link(document, "prev")
        assert [len(ids) for ids in pages] == [50, 50, 20]
        assert [pk for ids in reversed(pages) for pk in ids] == [pm.pk for pm in pms]


def test_a_before_page_links_newer_and_to_the_newest(alice_client, alice, bob) -> None:
    pms = exchange(alice, bob, 120)

    document = page(alice_client.get(f"/messages/bob/?before={pms[70].pk}"))

    assert shown_ids(document) == [pm.pk for pm in pms[20:70]]
    assert link(document, "prev") == f"/messages/bob/?before={pms[20].pk}"
    assert link(document, "next") == f"/messages/bob/{pms[69].pk}/#pm-{pms[69].pk}"
    newest = document.one("nav", class_="chat-newer").one("a", href="/messages/bob/")
    assert newest.text == "Jump to the newest"
    # Posting from an older page goes to the conversation, not to this page's URL.
    assert document.one("form", id="pm-composer").attr("action") == "/messages/bob/"


def test_a_permalink_marks_its_message_among_its_neighbours(alice_client, alice, bob) -> None:
    pms = exchange(alice, bob, 120)
    target = pms[60]

    document = page(alice_client.get(f"/messages/bob/{target.pk}/"))

    assert shown_ids(document) == [pm.pk for pm in pms[35:86]]
    marked = document.one(aria_current="true")
    assert marked.id == f"pm-{target.pk}"
    assert "message--focus" in marked.attr("class")
    assert link(document, "prev") == f"/messages/bob/?before={pms[35].pk}"
    assert link(document, "next") == f"/messages/bob/{pms[85].pk}/#pm-{pms[85].pk}"


def test_each_time_on_the_conversation_page_links_to_its_permalink(
    alice_client, login, alice, bob
) -> None:
    mine, theirs = exchange(alice, bob, 2)

    for client, other in ((alice_client, "bob"), (login(bob), "alice")):
        document = page(client.get(f"/messages/{other}/"))
        for pm in (mine, theirs):
            href = document.one_by_id(f"pm-{pm.pk}").one("a", class_="message-permalink")
            assert href.attr("href") == f"/messages/{other}/{pm.pk}/#pm-{pm.pk}"


def test_a_pushed_private_message_has_no_per_viewer_permalink(alice, bob) -> None:
    # Rendered once for both ends: a link naming one end's "other" would be wrong for one.
    pm = PrivateMessage.objects.create(sender=alice, recipient=bob, body="pushed")

    html = services.render_fragment("private-message-oob", pm=pm)

    assert "message-permalink" not in html and "pushed" in html


def test_a_message_between_other_people_is_404(alice_client, alice, bob, carol) -> None:
    exchange(alice, bob, 3)
    elsewhere = PrivateMessage.objects.create(sender=bob, recipient=carol, body="not alice's")
    own = PrivateMessage.objects.create(sender=alice, recipient=carol, body="to carol")

    for path in (
        f"/messages/bob/{elsewhere.pk}/",
        f"/messages/carol/{elsewhere.pk}/",
        f"/messages/bob/?before={elsewhere.pk}",
        f"/messages/bob/{own.pk}/",  # alice's, but with carol, not bob
        f"/messages/bob/?before={own.pk}",
        "/messages/bob/999999999/",
        "/messages/bob/?before=abc",
        "/messages/bob/?before=99999999999999999999999",
        "/messages/nobody/1/",
    ):
        response = alice_client.get(path)
        assert response.status_code == 404, path
        assert b"not alice's" not in response.content
    assert alice_client.get(f"/messages/carol/{own.pk}/").status_code == 200


def test_a_permalink_is_get_only_and_for_signed_in_users(client, alice_client, alice, bob) -> None:
    (pm,) = exchange(alice, bob, 1)

    assert alice_client.post(f"/messages/bob/{pm.pk}/", {"body": "x"}).status_code == 405
    response = client.get(f"/messages/bob/{pm.pk}/")
    assert response.status_code == 302 and "/login" in response["Location"]


def test_conversation_pages_are_keyset_queries_of_bounded_count(alice, bob) -> None:
    pms = exchange(alice, bob, 300)

    def queries(call: Any) -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            call()
        return [query["sql"].upper() for query in captured.captured_queries]

    latest = queries(lambda: services.latest_private_messages(alice, bob))
    deep = queries(lambda: services.private_messages_before(alice, bob, pms[60].pk))
    shallow = queries(lambda: services.private_messages_before(alice, bob, pms[280].pk))
    around = queries(lambda: services.private_messages_around(alice, bob, pms[150].pk))

    assert len(latest) == 2  # one per direction of the conversation
    assert len(deep) == len(shallow) == 3  # the message (is it theirs?), then both sides
    assert len(around) == 5
    for sql in latest + deep + shallow + around:
        assert "OFFSET" not in sql
    assert all("LIMIT 51" in sql and '"ID" <' in sql for sql in deep[1:])


def test_a_conversation_with_oneself_shows_each_message_once(login, alice) -> None:
    for i in range(60):
        PrivateMessage.objects.create(sender=alice, recipient=alice, body=f"note {i}")

    document = page(login(alice).get("/messages/alice/"))

    assert len(set(shown_ids(document))) == len(shown_ids(document)) == 50


# Days and local time, as in rooms ------------------------------------------------------


def dated(sender: Any, recipient: Any, *moments: datetime) -> list[PrivateMessage]:
    """Private messages at these UTC moments (created_at is auto_now_add: set afterwards)."""
    made = []
    for moment in moments:
        pm = PrivateMessage.objects.create(sender=sender, recipient=recipient, body=f"{moment}")
        PrivateMessage.objects.filter(pk=pm.pk).update(created_at=moment)
        made.append(pm)
    return made


def conversation_log(response: Any) -> list[str]:
    """The conversation in order: "day <data-day> <label>" and "pm <shown time>"."""
    shown = []
    for element in page(response).one_by_id("pm-log").top_level:
        if "day-divider" in (element.attrs.get("class") or ""):
            shown.append(f"day {element.attr('data-day')} {element.attr('aria-label')}")
        elif element.tag == "article":
            shown.append(f"pm {element.one('time').text.strip()}")
    return shown


def choose(user: Any, zone: str) -> None:
    Preferences.objects.update_or_create(user=user, defaults={"time_zone": zone})


def test_pm_dividers_at_a_day_boundary_follow_each_viewers_zone(
    alice_client, login, alice, bob
) -> None:
    first, _ = dated(
        alice,
        bob,
        datetime(2026, 3, 10, 23, 59, tzinfo=UTC),
        datetime(2026, 3, 11, 0, 0, tzinfo=UTC),
    )
    choose(bob, "Asia/Tokyo")
    bob_client = login(bob)

    utc_view = [
        "day 2026-03-10 Tuesday 10 March 2026",
        "pm 23:59",
        "day 2026-03-11 Wednesday 11 March 2026",
        "pm 00:00",
    ]
    tokyo_view = ["day 2026-03-11 Wednesday 11 March 2026", "pm 08:59", "pm 09:00"]
    assert conversation_log(alice_client.get("/messages/bob/")) == utc_view
    assert conversation_log(bob_client.get("/messages/alice/")) == tokyo_view
    # The permalink page and older pages render in the viewer's zone too.
    assert conversation_log(bob_client.get(f"/messages/alice/{first.pk}/")) == tokyo_view
    choose(alice, "America/New_York")  # UTC-4 since 8 March
    assert conversation_log(alice_client.get(f"/messages/bob/{first.pk}/")) == [
        "day 2026-03-10 Tuesday 10 March 2026",
        "pm 19:59",
        "pm 20:00",
    ]


def test_an_older_pm_page_starts_with_its_days_divider(alice_client, alice, bob) -> None:
    dated(alice, bob, *(datetime(2026, 3, 10, 12, i, tzinfo=UTC) for i in range(51)))
    newest = PrivateMessage.objects.order_by("-pk").first()
    assert newest is not None

    log = conversation_log(alice_client.get(f"/messages/bob/?before={newest.pk}"))

    assert log[0] == "day 2026-03-10 Tuesday 10 March 2026"
    assert log.count("day 2026-03-10 Tuesday 10 March 2026") == 1 and len(log) == 51


def test_pm_times_carry_utc_in_their_markup_and_the_full_local_date_on_hover(
    alice_client, alice, bob
) -> None:
    (pm,) = dated(bob, alice, datetime(2026, 3, 29, 23, 30, tzinfo=UTC))
    choose(alice, "Europe/London")

    article = page(alice_client.get("/messages/bob/")).one_by_id(f"pm-{pm.pk}")

    time = article.one("time")
    assert article.attr("data-day") == "2026-03-29"  # UTC, for the page's script
    assert article.attr("data-pm-id") == str(pm.pk)
    assert time.attr("datetime") == "2026-03-29T23:30:00+00:00"
    assert time.attr("title") == "Monday 30 March 2026, 00:30 BST"
    assert time.text.strip() == "00:30"


def test_a_pushed_private_message_is_in_utc_for_the_page_to_convert(alice, bob) -> None:
    (pm,) = dated(alice, bob, datetime(2026, 3, 29, 23, 30, tzinfo=UTC))
    pm.refresh_from_db()
    choose(alice, "Europe/London")  # a push is rendered once for both: never in a zone

    article = fragments.parse(services.render_fragment("private-message-oob", pm=pm)).one("article")

    assert article.attr("data-day") == "2026-03-29"
    assert article.one("time").attr("datetime") == "2026-03-29T23:30:00+00:00"
    assert article.one("time").text.strip() == "23:30"
