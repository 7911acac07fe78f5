"""Older history (`?before=`) and a link to every message (permalinks), as the views serve
them: keyset pages that reach message 1, and 404s that tell nothing about other rooms."""

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from rooms import services
from rooms.models import Message, Room
from rooms.tests import fragments

pytestmark = pytest.mark.django_db


def post_many(room: Room, author: Any, count: int) -> list[Message]:
    """`count` messages, each through Message.save (so each takes the room's next seq)."""
    return [
        Message.objects.create(room=room, author=author, body=f"{room.slug} {i}")
        for i in range(1, count + 1)
    ]


def page(response: Any) -> fragments.Element:
    assert response.status_code == 200, response.status_code
    return fragments.parse(response.content.decode())


def shown_ids(document: fragments.Element) -> list[int]:
    return [int(a.attr("data-message-id")) for a in document.find_all("article", class_="message")]


def prev_link(document: fragments.Element) -> str | None:
    link = document.find("a", rel="prev")
    return link.attr("href") if link else None


# Older history -------------------------------------------------------------------------


def test_room_page_links_to_the_page_before_its_oldest_message(alice_client, lobby, alice) -> None:
    messages = post_many(lobby, alice, 120)

    document = page(alice_client.get("/rooms/lobby/"))

    assert shown_ids(document) == [m.pk for m in messages[70:]]
    link = document.one("a", rel="prev")
    assert link.attr("href") == f"/rooms/lobby/?before={messages[70].pk}"
    # With JavaScript, htmx fetches the same page when the link scrolls into view.
    assert link.attr("hx-get") == link.attr("href")
    assert link.attr("hx-trigger") == "intersect once"
    assert document.find("a", rel="next") is None


def test_room_page_with_its_whole_history_has_no_older_link(alice_client, lobby, alice) -> None:
    post_many(lobby, alice, 50)

    document = page(alice_client.get("/rooms/lobby/"))

    assert len(shown_ids(document)) == 50
    assert prev_link(document) is None


def test_before_page_shows_the_50_messages_before_and_a_way_back(
    alice_client, lobby, alice
) -> None:
    messages = post_many(lobby, alice, 120)

    document = page(alice_client.get(f"/rooms/lobby/?before={messages[70].pk}"))

    assert shown_ids(document) == [m.pk for m in messages[20:70]]
    assert prev_link(document) == f"/rooms/lobby/?before={messages[20].pk}"
    newer = document.one("a", rel="next")
    assert (
        newer.attr("href") == f"/rooms/lobby/messages/{messages[69].pk}/#message-{messages[69].pk}"
    )
    assert document.one("nav", class_="chat-newer").one("a", href="/rooms/lobby/").text == (
        "Jump to the newest"
    )
    # The page is still a room: the composer and the live socket are there.
    assert document.one_by_id("composer").tag == "form"
    assert document.one_by_id("chat-live").tag == "div"


def test_the_prev_chain_reaches_message_1_in_order_without_duplicates(
    alice_client, lobby, alice
) -> None:
    messages = post_many(lobby, alice, 173)
    url: str | None = "/rooms/lobby/"
    pages: list[list[int]] = []

    while url is not None:
        document = page(alice_client.get(url))
        pages.append(shown_ids(document))
        url = prev_link(document)

    read = [pk for shown in reversed(pages) for pk in shown]
    assert read == [m.pk for m in messages]
    assert len(pages) == 4  # 50 + 50 + 50 + 23


def test_htmx_gets_just_the_older_messages_and_the_next_link(alice_client, lobby, alice) -> None:
    messages = post_many(lobby, alice, 120)

    response = alice_client.get(f"/rooms/lobby/?before={messages[70].pk}", HTTP_HX_REQUEST="true")

    fragment = page(response)
    assert "HX-Request" in response["Vary"]
    assert "<html" not in response.content.decode()
    first, *rest = fragment.top_level
    assert first.tag == "a" and first.attr("rel") == "prev"
    assert first.attr("href") == f"/rooms/lobby/?before={messages[20].pk}"
    # Day dividers (accounts/tests/test_days.py) stand between messages; these are the messages.
    shown = [a for a in rest if a.tag == "article"]
    assert [int(a.attr("data-message-id")) for a in shown] == [m.pk for m in messages[20:70]]


def test_htmx_gets_no_older_link_on_the_first_page(alice_client, lobby, alice) -> None:
    messages = post_many(lobby, alice, 30)

    fragment = page(
        alice_client.get(f"/rooms/lobby/?before={messages[10].pk}", HTTP_HX_REQUEST="true")
    )

    assert [int(a.attr("data-message-id")) for a in fragment.find_all("article")] == [
        m.pk for m in messages[:10]
    ]


def test_before_is_a_keyset_query_with_a_bounded_number_of_queries(lobby, alice) -> None:
    messages = post_many(lobby, alice, 300)

    def queries_for(before: Message) -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            services.messages_before(lobby, before.pk)
        return [query["sql"] for query in captured.captured_queries]

    deep, shallow = queries_for(messages[60]), queries_for(messages[280])

    # The message's seq, one page (with authors), the page's reactions.
    assert len(deep) == len(shallow) == 3
    for sql in deep + shallow:
        assert "OFFSET" not in sql.upper()
    page_sql = deep[1].upper()
    assert '"SEQ" <' in page_sql and "ORDER BY" in page_sql and "LIMIT 51" in page_sql


def test_room_page_queries_do_not_grow_with_history(alice_client, lobby, alice) -> None:
    post_many(lobby, alice, 60)
    with CaptureQueriesContext(connection) as small:
        alice_client.get("/rooms/lobby/")
    post_many(lobby, alice, 300)
    with CaptureQueriesContext(connection) as large:
        alice_client.get("/rooms/lobby/")

    assert len(large.captured_queries) == len(small.captured_queries)
    assert not any("OFFSET" in q["sql"].upper() for q in large.captured_queries)


# A link to every message ---------------------------------------------------------------


def test_each_message_time_links_to_its_permalink(alice_client, lobby, alice) -> None:
    (message,) = post_many(lobby, alice, 1)

    article = page(alice_client.get("/rooms/lobby/")).one_by_id(f"message-{message.pk}")

    link = article.one("a", class_="message-permalink")
    assert link.attr("href") == f"/rooms/lobby/messages/{message.pk}/#message-{message.pk}"
    assert link.one("time").attr("datetime")


def test_a_pushed_message_links_to_its_permalink_too(lobby, alice) -> None:
    posted = services.post_message(lobby, alice, "hello")
    (article,) = fragments.messages_in(posted.html)
    message = Message.objects.get()

    assert article.one("a", class_="message-permalink").attr("href") == (
        f"/rooms/lobby/messages/{message.pk}/#message-{message.pk}"
    )
    assert "aria-current" not in article.attrs


def test_permalink_shows_the_message_marked_with_messages_around_it(
    alice_client, lobby, alice
) -> None:
    messages = post_many(lobby, alice, 120)
    focus = messages[60]

    document = page(alice_client.get(f"/rooms/lobby/messages/{focus.pk}/"))

    assert shown_ids(document) == [m.pk for m in messages[35:86]]
    marked = document.find_all(aria_current="true")
    assert [element.id for element in marked] == [f"message-{focus.pk}"]
    assert "message--focus" in marked[0].classes()
    assert prev_link(document) == f"/rooms/lobby/?before={messages[35].pk}"
    newer = messages[85].pk
    assert document.one("a", rel="next").attr("href") == (
        f"/rooms/lobby/messages/{newer}/#message-{newer}"
    )


def test_permalink_near_the_ends_has_no_links_past_them(alice_client, lobby, alice) -> None:
    messages = post_many(lobby, alice, 10)

    first = page(alice_client.get(f"/rooms/lobby/messages/{messages[0].pk}/"))
    last = page(alice_client.get(f"/rooms/lobby/messages/{messages[-1].pk}/"))

    for document in (first, last):
        assert shown_ids(document) == [m.pk for m in messages]
        assert prev_link(document) is None
        assert document.find("a", rel="next") is None


def test_the_next_chain_from_a_permalink_reaches_the_newest(alice_client, lobby, alice) -> None:
    messages = post_many(lobby, alice, 140)
    url: str | None = f"/rooms/lobby/messages/{messages[0].pk}/"
    seen: list[int] = []

    while url is not None:
        document = page(alice_client.get(url))
        seen.extend(shown_ids(document))
        link = document.find("a", rel="next")
        url = link.attr("href").split("#")[0] if link else None

    assert sorted(set(seen)) == [m.pk for m in messages]


# What may not be read ------------------------------------------------------------------


def test_non_members_get_404_for_a_private_rooms_history_and_permalinks(
    login, carol, secret, alice
) -> None:
    messages = post_many(secret, alice, 60)
    carol_client = login(carol)

    assert carol_client.get(f"/rooms/secret/?before={messages[30].pk}").status_code == 404
    assert carol_client.get(f"/rooms/secret/messages/{messages[30].pk}/").status_code == 404
    response = carol_client.get(f"/rooms/secret/?before={messages[30].pk}", HTTP_HX_REQUEST="true")
    assert response.status_code == 404
    assert b"secret 30" not in response.content


def test_members_read_a_private_rooms_history(login, bob, secret, alice) -> None:
    messages = post_many(secret, alice, 60)
    bob_client = login(bob)

    assert shown_ids(page(bob_client.get(f"/rooms/secret/?before={messages[30].pk}"))) == [
        m.pk for m in messages[:30]
    ]
    permalink = page(bob_client.get(f"/rooms/secret/messages/{messages[30].pk}/"))
    assert permalink.one(aria_current="true").id == f"message-{messages[30].pk}"


def test_a_message_of_another_room_is_404(alice_client, lobby, other_room, alice) -> None:
    (elsewhere,) = post_many(other_room, alice, 1)
    post_many(lobby, alice, 3)

    assert alice_client.get(f"/rooms/lobby/?before={elsewhere.pk}").status_code == 404
    assert alice_client.get(f"/rooms/lobby/messages/{elsewhere.pk}/").status_code == 404
    assert alice_client.get(f"/rooms/other/messages/{elsewhere.pk}/").status_code == 200


@pytest.mark.parametrize(
    "before", ["", "abc", "-1", "1.5", "0x10", " 1", "1e3", "99999999999999999999", "٣"]
)
def test_a_bad_before_value_is_404(alice_client, lobby, alice, before) -> None:
    post_many(lobby, alice, 3)

    assert alice_client.get("/rooms/lobby/", {"before": before}).status_code == 404


@pytest.mark.parametrize("message_id", ["0", "424242", "99999999999999999999"])
def test_a_missing_message_is_404(alice_client, lobby, alice, message_id) -> None:
    post_many(lobby, alice, 3)

    assert alice_client.get(f"/rooms/lobby/messages/{message_id}/").status_code == 404
    assert alice_client.get("/rooms/lobby/", {"before": message_id}).status_code == 404


def test_history_of_a_missing_room_is_404(alice_client) -> None:
    assert alice_client.get("/rooms/nowhere/?before=1").status_code == 404
    assert alice_client.get("/rooms/nowhere/messages/1/").status_code == 404
