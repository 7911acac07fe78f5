"""Unread counts, read positions, levels and the mentions page (issue 13, rooms/attention.py).

Counting is one query for a page of rooms however many rooms, users and messages there are;
positions move when the newest messages are shown (a page view, or a socket's batch:
rooms/tests/test_attention_sockets.py) and never back; levels decide what is loud.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pytest_django.asserts import assertRedirects

from rooms import attention, changes, services
from rooms.models import Message, MessageMention, ReadPosition, Room
from rooms.tests import fragments

pytestmark = pytest.mark.django_db

Level = ReadPosition.Level


def page(response) -> fragments.Element:
    assert response.status_code == 200, response
    return fragments.parse(response.content.decode())


def say(room: Room, author, body: str = "hi") -> Message:
    services.post_message(room, author, body)
    return room.messages.latest("seq")


def read(user, room: Room) -> None:
    """The user opens the room's newest page (as a GET of it does)."""
    attention.mark_read(user, room, services.room_cursor(room))


def counts(user) -> dict[str, tuple[int, int, str, bool]]:
    """Each visible room's (unread, mentions, level, following) for `user`."""
    return {
        room.slug: (room.unread, room.mentions, room.level, room.read_seq is not None)  # type: ignore[attr-defined]
        for room in services.visible_rooms(user)
    }


# Counting ------------------------------------------------------------------------------------


def test_unread_counts_messages_past_the_position_not_deleted_not_ones_own(
    lobby, alice, bob, carol
):
    say(lobby, alice, "before bob read")
    read(bob, lobby)
    first = say(lobby, alice, "one")
    say(lobby, carol, "two @bob")
    gone = say(lobby, alice, "three")
    say(lobby, bob, "bob's own")
    # Changes take numbers from the same sequence: they are not messages.
    changes.edit_message(first, alice, "one, edited")
    changes.toggle_reaction(first, carol, "👍")
    changes.delete_message(gone, alice)

    assert counts(bob)["lobby"] == (2, 1, Level.EVERYTHING, True)
    assert counts(carol)["lobby"] == (0, 0, Level.MENTIONS, False)  # never opened


def test_a_room_never_opened_counts_only_mentions(lobby, alice, bob):
    say(lobby, alice, "hello")
    say(lobby, alice, "@bob look")
    assert counts(bob)["lobby"] == (0, 1, Level.MENTIONS, False)
    read(bob, lobby)
    assert counts(bob)["lobby"] == (0, 0, Level.EVERYTHING, True)


def make_world(rooms: int, users: int, alice, make_user) -> None:
    """`rooms` rooms alice opened, then each of `users` others posted in (mentioning her)
    and read."""
    people = [make_user(f"u{Room.objects.count()}-{n}") for n in range(users)]
    for n in range(rooms):
        room = Room.objects.create(slug=f"r{Room.objects.count()}-{n}")
        read(alice, room)
        for person in people:
            say(room, person, f"hello from {person}, @alice")
            read(person, room)


def test_a_page_of_rooms_is_counted_in_one_query_however_many_rooms_and_users(
    alice, make_user, settings
):
    settings.CHAT_ROOMS_PAGE_SIZE = 100

    def evaluated() -> tuple[int, list[tuple[int, int]]]:
        with CaptureQueriesContext(connection) as queries:
            listed = list(services.room_list_page(alice, 1).object_list)
        return len(queries), [(room.unread, room.mentions) for room in listed]  # type: ignore[attr-defined]

    make_world(2, 1, alice, make_user)
    few, few_counts = evaluated()
    make_world(40, 4, alice, make_user)
    many, many_counts = evaluated()

    assert many == few == 2  # the page's rooms with their counts, and the paginator's count
    assert few_counts == [(1, 1)] * 2
    assert sorted(many_counts) == [(1, 1)] * 2 + [(4, 4)] * 40


def test_the_room_list_and_sidebar_show_the_counts_on_each_entry(
    alice_client, login, lobby, other_room, alice, bob
):
    read(alice, lobby)
    read(alice, other_room)
    say(lobby, bob, "one")
    say(lobby, bob, "two @alice")
    say(lobby, alice, "mine")

    entry = page(alice_client.get("/rooms/")).one("li", data_room="lobby")
    assert entry.attrs["data-unread"] == "2"
    assert entry.attrs["data-mentions"] == "1"
    assert entry.attrs["data-level"] == "everything"
    assert "data-following" in entry.attrs
    assert entry.one(class_="unread-count").one(class_="count-number").text == "2"
    assert entry.one(class_="mention-count").one(class_="count-number").text == "1"
    quiet = page(alice_client.get("/rooms/")).one("li", data_room="other")
    assert (quiet.attrs["data-unread"], quiet.attrs["data-mentions"]) == ("0", "0")

    # The sidebar of another room: the same entry (rooms alice is in: she owns lobby)
    say(other_room, alice, "so other is one of mine")
    sidebar = page(alice_client.get("/rooms/other/")).one("nav", class_="room-nav")
    assert sidebar.one("li", data_room="lobby").attrs["data-unread"] == "2"


def test_the_title_carries_the_total_of_what_is_loud(
    alice_client, lobby, other_room, alice, bob, carol
):
    read(alice, lobby)
    read(alice, other_room)
    quiet = Room.objects.create(slug="quiet")
    read(alice, quiet)
    attention.set_level(alice, other_room, Level.MENTIONS)
    attention.set_level(alice, quiet, Level.NOTHING)
    for room in (lobby, other_room, quiet):
        say(room, bob, "news")
        say(room, carol, "@alice news")
    never = Room.objects.create(slug="never")
    say(never, bob, "@alice in a room she never opened")

    # lobby: 2 unread (everything); other: 1 mention (mentions only); quiet: nothing;
    # never opened: its 1 mention.
    assert attention.unread_total(alice) == 4
    document = page(alice_client.get("/rooms/"))
    assert document.one("title").text == "(4) Rooms · Hypertalk"
    assert document.one_by_id("room-activity").attrs["data-unread-total"] == "4"
    # Opening lobby reads it: its page's title counts the rest.
    assert page(alice_client.get("/rooms/lobby/")).one("title").text == "(2) #lobby · Hypertalk"


def test_no_title_count_when_nothing_is_unread(alice_client, lobby):
    assert page(alice_client.get("/rooms/")).one("title").text == "Rooms · Hypertalk"


def test_rooms_one_may_no_longer_enter_count_nothing(secret, alice, bob):
    read(bob, secret)
    say(secret, alice, "@bob secret")
    assert attention.unread_total(bob) == 1
    secret.members.remove(bob)
    assert attention.unread_total(bob) == 0
    assert "secret" not in counts(bob)


# Reading ---------------------------------------------------------------------------------


def test_viewing_the_newest_page_moves_the_position_and_never_back(alice_client, lobby, alice, bob):
    say(lobby, bob, "one")
    alice_client.get("/rooms/lobby/")
    assert ReadPosition.objects.get(user=alice, room=lobby).seq == services.room_cursor(lobby)
    older = say(lobby, bob, "two")
    for _ in range(60):
        say(lobby, bob, "more")
    # An older page and a permalink read nothing.
    alice_client.get(f"/rooms/lobby/?before={older.pk}")
    alice_client.get(f"/rooms/lobby/messages/{older.pk}/")
    assert ReadPosition.objects.get(user=alice, room=lobby).seq == 1
    alice_client.get("/rooms/lobby/")
    end = services.room_cursor(lobby)
    assert ReadPosition.objects.get(user=alice, room=lobby).seq == end
    # A batch from a socket that had seen less never moves it back.
    attention.save_positions({(alice.pk, lobby.pk): 3})
    assert ReadPosition.objects.get(user=alice, room=lobby).seq == end


@pytest.mark.parametrize(("chunk", "queries"), [(500, 5), (1, 6)])
def test_a_batch_of_positions_moves_each_forward_in_a_few_queries(
    lobby, other_room, alice, bob, carol, django_assert_max_num_queries, monkeypatch, chunk, queries
):
    monkeypatch.setattr(attention, "SAVE_CHUNK", chunk)
    for _ in range(5):
        say(lobby, carol)
        say(other_room, carol)
    ReadPosition.objects.create(user=alice, room=lobby, seq=2)
    ReadPosition.objects.create(user=carol, room=lobby, seq=1)
    ReadPosition.objects.create(user=bob, room=lobby, seq=4)
    batch = {
        (alice.pk, lobby.pk): 5,  # forward
        (carol.pk, lobby.pk): 3,  # forward
        (bob.pk, lobby.pk): 3,  # behind what is stored: stays
        (bob.pk, other_room.pk): 4,  # none yet: made
        (carol.pk, other_room.pk): 5,
    }
    # Read, insert, one update per chunk (and the transaction's two statements).
    with django_assert_max_num_queries(queries):
        moved = attention.save_positions(batch)
    assert {room: sorted(users) for room, users in moved.items()} == {
        lobby.pk: sorted([alice.pk, carol.pk]),
        other_room.pk: sorted([bob.pk, carol.pk]),
    }
    assert dict(ReadPosition.objects.values_list("user__username", "seq").filter(room=lobby)) == {
        "alice": 5,
        "bob": 4,
        "carol": 3,
    }
    assert ReadPosition.objects.get(user=bob, room=other_room).seq == 4


def test_the_new_messages_divider_is_above_the_first_unread_not_ones_own(
    alice_client, lobby, alice, bob
):
    say(lobby, bob, "read already")
    read(alice, lobby)
    say(lobby, alice, "my own, after")
    first = say(lobby, bob, "first unread")
    say(lobby, bob, "second unread")

    log = page(alice_client.get("/rooms/lobby/")).one_by_id("chat-log")
    items = [e for e in log.iter() if "message" in e.classes() or e.id == "unread-divider"]
    ids = [e.id for e in items]
    assert ids.count("unread-divider") == 1
    assert ids[ids.index("unread-divider") + 1] == f"message-{first.pk}"
    divider = log.one_by_id("unread-divider")
    assert divider.attrs["role"] == "separator" and divider.text == "New messages"

    # Read now: no divider on the next view; nor on a first visit (everything is new).
    assert page(alice_client.get("/rooms/lobby/")).by_id("unread-divider") is None


def test_a_first_visit_has_no_divider(login, lobby, alice, bob):
    say(lobby, alice, "hello")
    assert page(login(bob).get("/rooms/lobby/")).by_id("unread-divider") is None


# Levels --------------------------------------------------------------------------------------


def test_the_level_form_works_without_javascript(alice_client, lobby, alice):
    form = page(alice_client.get("/rooms/lobby/")).one("form", id="notification-level")
    assert form.attrs["action"] == "/rooms/lobby/notifications/"
    options = form.find_all("option")
    assert [o.attrs["value"] for o in options] == ["everything", "mentions", "nothing"]
    assert [o.attrs["value"] for o in options if "selected" in o.attrs] == ["everything"]

    response = alice_client.post("/rooms/lobby/notifications/", {"level": "mentions"})
    assertRedirects(response, "/rooms/lobby/", fetch_redirect_response=False)
    assert ReadPosition.objects.get(user=alice, room=lobby).level == Level.MENTIONS
    form = page(alice_client.get("/rooms/lobby/")).one("form", id="notification-level")
    assert [o.attrs["value"] for o in form.find_all("option") if "selected" in o.attrs] == [
        "mentions"
    ]


def test_the_level_form_answers_htmx_with_itself_saved(alice_client, lobby, alice):
    response = alice_client.post(
        "/rooms/lobby/notifications/", {"level": "nothing"}, HTTP_HX_REQUEST="true"
    )
    form = page(response).one("form", id="notification-level")
    assert form.one(class_="level-saved").text == "Saved"
    assert ReadPosition.objects.get(user=alice, room=lobby).level == Level.NOTHING


@pytest.mark.parametrize("level", ["", "loud", "EVERYTHING"])
def test_an_unknown_level_is_refused(alice_client, lobby, alice, level):
    response = alice_client.post("/rooms/lobby/notifications/", {"level": level})
    assert response.status_code == 400
    assert not ReadPosition.objects.filter(user=alice).exists()


def test_the_level_of_a_room_one_may_not_enter_is_404(login, secret, carol):
    assert (
        login(carol).post("/rooms/secret/notifications/", {"level": "nothing"}).status_code == 404
    )


def test_setting_a_level_first_starts_reading_at_the_end(lobby, alice, bob):
    say(lobby, bob)
    position = attention.set_level(alice, lobby, Level.EVERYTHING)
    assert position.seq == services.room_cursor(lobby)


# The mentions page --------------------------------------------------------------------------


def test_the_mentions_page_lists_mine_newest_first_with_permalinks(
    login, lobby, secret, alice, bob, carol
):
    first = say(lobby, alice, "hello @bob")
    say(lobby, alice, "not you")
    say(lobby, carol, "hello @carol? no, @alice")
    in_secret = say(secret, alice, "@bob secret")
    deleted = say(lobby, carol, "@bob oops")
    changes.delete_message(deleted, carol)

    items = page(login(bob).get("/mentions/")).find_all("li", class_="mention-item")
    assert [int(i.attr("data-message-id")) for i in items] == [in_secret.pk, first.pk]
    link = items[1].one("a", class_="message-permalink")
    assert link.attrs["href"] == f"/rooms/lobby/messages/{first.pk}/#message-{first.pk}"
    assert items[1].one("a", class_="mention").attrs["href"] == "/messages/bob/"

    secret.members.remove(bob)  # no longer his to read
    items = page(login(bob).get("/mentions/")).find_all("li", class_="mention-item")
    assert [int(i.attr("data-message-id")) for i in items] == [first.pk]


def test_the_mentions_page_pages_by_message(login, lobby, alice, bob):
    posted = [say(lobby, alice, f"@bob {n}") for n in range(attention.MENTIONS_PAGE + 3)]
    client = login(bob)
    first = page(client.get("/mentions/"))
    ids = [int(i.attr("data-message-id")) for i in first.find_all("li", class_="mention-item")]
    assert ids == [m.pk for m in reversed(posted)][: attention.MENTIONS_PAGE]
    older = first.one("a", rel="next").attrs["href"]
    assert older == f"?before={ids[-1]}"
    second = page(client.get(f"/mentions/{older}"))
    rest = [int(i.attr("data-message-id")) for i in second.find_all("li", class_="mention-item")]
    assert rest == [m.pk for m in reversed(posted[:3])]
    assert second.find("a", rel="next") is None
    assert client.get("/mentions/?before=abc").status_code == 404


def test_the_mentions_page_is_one_query_for_the_page(login, lobby, alice, bob, make_user):
    for n in range(20):
        say(lobby, make_user(f"p{n}"), "@bob")
    with CaptureQueriesContext(connection) as queries:
        attention.mentions_page(bob)
    assert len(queries) == 1
    assert MessageMention.objects.count() == 20
