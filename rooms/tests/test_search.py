"""Search (rooms/search.py, `GET /search/`): who finds what, the filters, the highlighting,
queries that are FTS syntax, paging, and that the database's full-text index does the work.

Runs on SQLite (FTS5) in `make test-sqlite` and on PostgreSQL (tsvector, GIN) in
`make test-postgres`."""

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import pytest
from django.db import connection
from django.utils import timezone

from rooms import changes, search
from rooms.models import Message, PrivateMessage, Room
from rooms.tests import fragments

pytestmark = pytest.mark.django_db


RESULT = "search-result"


def results(client: Any, **params: str) -> fragments.Element:
    response = client.get("/search/", params)
    assert response.status_code == 200, (response.status_code, response.content[:2000])
    return fragments.parse(response.content.decode())


def found(client: Any, **params: str) -> list[int]:
    """The ids (data-message-id) of the results, in order."""
    document = results(client, **params)
    return [int(item.attr("data-message-id")) for item in document.find_all("li", class_=RESULT)]


def hits(client: Any, **params: str) -> list[fragments.Element]:
    return results(client, **params).find_all("li", class_=RESULT)


def raw_text(element: fragments.Element) -> str:
    """The text as it is, whitespace and all."""
    return "".join(c if isinstance(c, str) else raw_text(c) for c in element.children)


def say(room: Room, author: Any, body: str, **fields: Any) -> Message:
    message = Message.objects.create(room=room, author=author, body=body)
    if fields:
        Message.objects.filter(pk=message.pk).update(**fields)
    return message


# Who finds what -------------------------------------------------------------------------


def test_finds_a_word_in_a_public_room_linking_to_its_permalink(lobby, alice, bob, login):
    message = say(lobby, alice, "The deploy went fine")
    say(lobby, alice, "nothing to see here")
    (hit,) = hits(login(bob), q="deploy")
    assert int(hit.attr("data-message-id")) == message.pk
    link = hit.one("a", class_="message-permalink")
    assert link.attr("href") == f"/rooms/lobby/messages/{message.pk}/#message-{message.pk}"
    assert login(bob).get(link.attr("href").split("#")[0]).status_code == 200
    assert "#lobby" in hit.text and "alice" in hit.text


def test_needs_a_login(client):
    response = client.get("/search/", {"q": "deploy"})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_private_rooms_for_their_members_only(secret, alice, bob, carol, login):
    message = say(secret, alice, "the secret plan")
    assert found(login(alice), q="plan") == [message.pk]  # the owner
    assert found(login(bob), q="plan") == [message.pk]  # a member
    assert found(login(carol), q="plan") == []
    assert found(login(carol), q="plan in:secret") == []


def test_a_removed_member_loses_the_room_at_once(secret, alice, bob, login):
    say(secret, alice, "the secret plan")
    client = login(bob)
    assert len(found(client, q="plan")) == 1
    secret.members.remove(bob)
    assert found(client, q="plan") == []


def test_staff_rooms_for_staff_only(ops, alice, make_user, login):
    boss = make_user("boss", is_staff=True)
    message = say(ops, boss, "rotate the keys")
    assert found(login(boss), q="keys") == [message.pk]
    assert found(login(alice), q="keys") == []


def test_deleted_messages_never_appear(lobby, alice, login):
    message = say(lobby, alice, "an embarrassing typo")
    client = login(alice)
    assert found(client, q="embarrassing") == [message.pk]
    changes.delete_message(message, alice)
    assert found(client, q="embarrassing") == []
    # Not even as a tombstone with its old text gone: its deleted_at alone excludes it.
    Message.objects.filter(pk=message.pk).update(body="embarrassing again")
    assert found(client, q="embarrassing") == []


def test_an_edit_is_found_by_its_new_words_only(lobby, alice, login):
    message = say(lobby, alice, "meet at noon")
    changes.edit_message(message, alice, "meet at midnight")
    client = login(alice)
    assert found(client, q="midnight") == [message.pk]
    assert found(client, q="noon") == []


def test_private_messages_between_their_two_people_only(alice, bob, carol, login):
    pm = PrivateMessage.objects.create(sender=alice, recipient=bob, body="my pin is 4321")
    for user in (alice, bob):
        (hit,) = hits(login(user), q="pin")
        assert int(hit.attr("data-message-id")) == pm.pk
        other = "bob" if user == alice else "alice"
        href = hit.one("a", class_="message-permalink").attr("href")
        assert href == f"/messages/{other}/{pm.pk}/#pm-{pm.pk}"
        assert login(user).get(href.split("#")[0]).status_code == 200
        assert "search-result--private" in hit.classes()
    assert found(login(carol), q="pin") == []


# Filters --------------------------------------------------------------------------------


def test_in_and_from(lobby, other_room, alice, bob, login):
    a_lobby = say(lobby, alice, "release today")
    b_lobby = say(lobby, bob, "release tomorrow")
    a_other = say(other_room, alice, "release never")
    pm = PrivateMessage.objects.create(sender=bob, recipient=alice, body="release notes")
    client = login(alice)
    assert found(client, q="release") == [pm.pk, a_other.pk, b_lobby.pk, a_lobby.pk]
    assert found(client, q="release in:lobby") == [b_lobby.pk, a_lobby.pk]
    assert found(client, q="release in:#lobby from:alice") == [a_lobby.pk]
    assert found(client, q="release from:@bob") == [pm.pk, b_lobby.pk]
    # The same as form fields.
    assert found(client, q="release", **{"in": "lobby", "from": "bob"}) == [b_lobby.pk]
    assert found(client, q="release in:nowhere") == []


def test_after_and_before_are_days_in_the_viewers_zone(lobby, alice, login):
    old = say(lobby, alice, "standup notes", created_at=datetime(2026, 11, 1, 12, tzinfo=UTC))
    mid = say(lobby, alice, "standup notes", created_at=datetime(2026, 11, 10, 12, tzinfo=UTC))
    new = say(lobby, alice, "standup notes", created_at=datetime(2026, 11, 20, 12, tzinfo=UTC))
    client = login(alice)
    assert found(client, q="standup after:2026-11-10") == [new.pk, mid.pk]
    assert found(client, q="standup before:2026-11-10") == [old.pk]
    assert found(client, q="standup after:2026-11-02 before:2026-11-20") == [mid.pk]
    assert found(client, q="standup", after="2026-11-11") == [new.pk]
    response = client.get("/search/", {"q": "standup before:2026-13-45"})
    assert response.status_code == 400
    assert "is not a day" in response.content.decode()


# Highlighting ---------------------------------------------------------------------------


def test_markup_in_a_body_is_text_and_only_matches_are_marked(lobby, alice, login):
    say(lobby, alice, 'a <b>bold</b> claim & <script>alert("deploy")</script> deploy')
    response = login(alice).get("/search/", {"q": "deploy"})
    html = response.content.decode()
    assert "<b>bold</b>" not in html and "<script>alert" not in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "&amp;" in html
    (hit,) = fragments.parse(html).find_all("li", class_=RESULT)
    marks = hit.find_all("mark")
    assert [mark.text for mark in marks] == ["deploy", "deploy"]
    assert raw_text(hit.one("p", class_="search-snippet")) == (
        'a <b>bold</b> claim & <script>alert("deploy")</script> deploy'
    )


def test_marks_whole_words_whatever_their_case(lobby, alice, login):
    say(lobby, alice, "Deploy deployed DEPLOY redeploy")
    (hit,) = hits(login(alice), q="deploy")
    assert [mark.text for mark in hit.find_all("mark")] == ["Deploy", "DEPLOY"]


def test_highlight_cuts_a_long_body_around_the_first_match() -> None:
    body = "x " * 400 + "needle" + " y" * 400
    parts = search.highlight(body, frozenset({"needle"}))
    assert parts[0] == search.Part("…", False) and parts[-1] == search.Part("…", False)
    assert search.Part("needle", True) in parts
    assert sum(len(part.text) for part in parts) <= search.SNIPPET_CHARS + 2


# The query language ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        '"',
        '"""',
        '"unclosed phrase',
        "*",
        "deploy*",
        "OR",
        "deploy OR",
        "OR deploy",
        "NEAR(deploy went",
        "NEAR(",
        "-",
        "--deploy",
        "-deploy",
        "deploy AND",
        "NOT deploy",
        "body:deploy",
        "{body}: deploy",
        "^deploy",
        "deploy + went",
        "(deploy",
        "deploy)",
        "'deploy'",
        "\\",
        "deploy\x00went",
        "🙂",
        "in: from: after: before:",
        "deploy " * 200,
    ],
)
def test_fts_syntax_in_a_query_is_not_an_error(lobby, alice, login, query):
    say(lobby, alice, "The deploy went fine")
    results(login(alice), q=query)


def test_the_web_search_language(lobby, alice, login):
    fine = say(lobby, alice, "The deploy went fine")
    failed = say(lobby, alice, "The deploy failed")
    rollback = say(lobby, alice, "rollback now")
    client = login(alice)
    assert found(client, q="deploy") == [failed.pk, fine.pk]
    assert found(client, q="deploy -failed") == [fine.pk]
    assert found(client, q="deploy OR rollback") == [rollback.pk, failed.pk, fine.pk]
    assert found(client, q='"went fine"') == [fine.pk]
    assert found(client, q='"fine went"') == []
    assert found(client, q="deploy went") == [fine.pk]
    assert found(client, q="-deploy") == []  # nothing that must be there: no search


def test_fts5_expression_quotes_every_word() -> None:
    criteria = search.parse({"q": 'a"b NEAR( -c OR "d e'})
    assert criteria.fts5() == '("a b" AND "NEAR" NOT "c") OR ("d e")'
    assert criteria.marked == {"a", "b", "near", "d", "e"}


# Order and pages ------------------------------------------------------------------------


def test_newest_first_in_keyset_pages_across_rooms_and_private_messages(
    lobby, alice, bob, login, monkeypatch
):
    monkeypatch.setattr(search, "PAGE_SIZE", 3)
    start = timezone.now() - timedelta(hours=1)
    expected = []
    for i in range(8):
        when = start + timedelta(minutes=i)
        if i % 3 == 0:
            pm = PrivateMessage.objects.create(sender=bob, recipient=alice, body=f"report {i}")
            PrivateMessage.objects.filter(pk=pm.pk).update(created_at=when)
            expected.append(pm.pk)
        else:
            expected.append(say(lobby, bob, f"report {i}", created_at=when).pk)
    expected.reverse()
    client = login(alice)
    seen: list[int] = []
    params = {"q": "report"}
    for _ in range(5):
        document = results(client, **params)
        seen += [int(li.attr("data-message-id")) for li in document.find_all("li", class_=RESULT)]
        more = document.find("a", rel="next")
        if more is None:
            break
        params = dict(parse_qsl(more.attr("href").removeprefix("?")))
    assert seen == expected


def test_best_first_ranks_the_closer_match_higher(lobby, alice, login):
    weak = say(lobby, alice, "deploy " + "filler " * 60)
    strong = say(lobby, alice, "deploy deploy deploy")
    assert found(login(alice), q="deploy", order="best") == [strong.pk, weak.pk]
    assert found(login(alice), q="deploy") == [strong.pk, weak.pk]  # (newest too)
    older = say(lobby, alice, "deploy " + "filler " * 60)
    assert found(login(alice), q="deploy", order="best")[0] == strong.pk
    assert found(login(alice), q="deploy")[0] == older.pk


def test_best_first_ranks_the_newest_matches(lobby, alice, login, monkeypatch):
    monkeypatch.setattr(search, "BEST_WINDOW", 2)
    say(lobby, alice, "deploy deploy deploy")  # the best, but older than the window
    weak = [say(lobby, alice, "deploy " + "filler " * 30) for _ in range(2)]
    assert found(login(alice), q="deploy", order="best") == [weak[1].pk, weak[0].pk]


def test_a_bad_cursor_is_the_first_page(lobby, alice, login):
    message = say(lobby, alice, "deploy")
    for cursor in ("x", "-1", "9" * 40, ""):
        assert found(login(alice), q="deploy", m=cursor, p=cursor, page=cursor) == [message.pk]


# The index ------------------------------------------------------------------------------


def _plan(sql: str, params: Any) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN {sql}", params)
        else:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        return "\n".join(" ".join(str(col) for col in row) for row in cursor.fetchall())


@pytest.mark.parametrize("order", ["new", "best"])
def test_the_query_plan_uses_the_full_text_index(lobby, alice, order):
    # Enough rows for the planner to choose (3,000; the word in 10), stored in bulk.
    Message.objects.bulk_create(
        Message(
            room=lobby,
            author=alice,
            body=f"message {i} about {'rollbacks' if i % 300 == 0 else 'deploys'}",
            seq=i + 1,
            changed_seq=i + 1,
        )
        for i in range(3000)
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Into the index proper (a bulk insert waits in GIN's pending list until a
            # VACUUM, which a test's transaction cannot run).
            cursor.execute("SELECT gin_clean_pending_list('rooms_message_search')")
        cursor.execute("ANALYZE")
    criteria = search.parse({"q": "rollbacks", "order": order})
    rows = search._room_messages(alice, criteria, UTC)
    sql, params = search.statement(rows, criteria, best=order == "best", before=None, limit=21)
    plan = _plan(sql, params)
    if connection.vendor == "postgresql":
        assert "rooms_message_search" in plan, plan  # the GIN index
    else:
        assert "rooms_message_fts VIRTUAL TABLE INDEX" in plan, plan
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        assert len(cursor.fetchall()) == 10


def test_private_messages_use_an_index(alice, bob):
    PrivateMessage.objects.create(sender=alice, recipient=bob, body="hello there")
    criteria = search.parse({"q": "hello"})
    rows = search._private_messages(alice, criteria, UTC)
    sql, params = search.statement(rows, criteria, best=False, before=None, limit=21)
    plan = _plan(sql, params)
    if connection.vendor == "postgresql":
        # The GIN index, or (the planner's choice for one person's messages) the pair
        # indexes with the text as a filter: never a scan of everyone's.
        assert "Seq Scan on rooms_privatemessage" not in plan, plan
        assert "rooms_privatemessage_search" in plan or "sender" in plan, plan
    else:
        assert "rooms_privatemessage_fts VIRTUAL TABLE INDEX" in plan, plan


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's FTS5 triggers")
def test_lost_triggers_are_put_back_after_a_migration(lobby, alice, login):
    say(lobby, alice, "before the loss")
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER rooms_message_fts_insert")
        cursor.execute("DROP TRIGGER rooms_message_fts_update")
    lost = say(lobby, alice, "written while the index was not kept")
    assert found(login(alice), q="written") == []
    assert search.ensure_sqlite_triggers(connection) is True
    assert search.ensure_sqlite_triggers(connection) is False
    assert found(login(alice), q="written") == [lost.pk]
    edited = say(lobby, alice, "and then")
    Message.objects.filter(pk=edited.pk).update(body="and then edited")
    assert found(login(alice), q="edited") == [edited.pk]
