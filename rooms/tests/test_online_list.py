"""A bounded online list (issue 16's follow-up): the room page and every connect's catch-up
list the first CHAT_ONLINE_LIST_LIMIT people online, the exact count, and "and N more"
linking to the room's /online/ page, which lists everyone (rooms/presence.py OnlineList)."""

import pytest
from channels.db import database_sync_to_async as db
from pytest_django.asserts import assertRedirects

from rooms import presence, views
from rooms.models import Room
from rooms.presence import Change
from rooms.tests import fragments

pytestmark = pytest.mark.django_db

# Five online, by name; "<b>eve</b>" sorts first ("<" before letters) and must stay text.
NAMES = ["<b>eve</b>", "alice", "bob", "carol", "dave"]


@pytest.fixture
def limit(settings) -> int:
    settings.CHAT_ONLINE_LIST_LIMIT = 3
    return 3


@pytest.fixture
def five_online(lobby, alice, make_user) -> list:
    people = [alice] + [make_user(name) for name in NAMES if name != "alice"]
    for person in people:
        presence.arrive(lobby, person, f"socket-{person.pk}")
    return people


def more_line(html: str) -> fragments.Element:
    return fragments.parse(html).one_by_id("online-more")


# The room page ----------------------------------------------------------------------------


def test_the_page_lists_the_first_people_and_links_to_the_rest(
    login, alice, lobby, limit, five_online
) -> None:
    html = login(alice).get("/rooms/lobby/").content.decode()

    assert fragments.online_usernames(html) == NAMES[:3]  # in the list's order, escaped
    assert "<b>eve</b>" not in html
    document = fragments.parse(html)
    assert document.one_by_id("online-count").text == "5"  # everyone
    more = document.one_by_id("online-more")
    assert more.text == "and 2 more online in #lobby"  # (its last words are for screen readers)
    assert more.one("a").attr("href") == "/rooms/lobby/online/"
    assert more.one("a").one(class_="visually-hidden").text == "online in #lobby"
    # A list read between two ticks may hold one more for a moment: the page's style hides it.
    style = document.one("style").text
    assert "#online-list > li:nth-child(n+4) { display: none; }" in style
    # The list is no live region (presence is announced by the log's lines).
    section = document.one_by_id("online-users")
    assert "aria-live" not in section.attrs and "role" not in section.attrs


def test_at_the_limit_everyone_is_listed_and_there_is_no_more_line(
    login, alice, lobby, settings, five_online
) -> None:
    settings.CHAT_ONLINE_LIST_LIMIT = 5
    html = login(alice).get("/rooms/lobby/").content.decode()

    assert fragments.online_usernames(html) == NAMES
    more = more_line(html)  # still there, empty (hidden), for a presence fragment to replace
    assert more.children == [] and more.text == ""


# The presence fragment of each tick ---------------------------------------------------------


def test_the_presence_fragment_replaces_the_count_and_the_more_line(
    lobby, make_user, limit, five_online
) -> None:
    frank = make_user("frank")
    presence.arrive(lobby, frank, "franks-socket")

    html = presence.render_changes(lobby, [Change(lobby, frank, "joined")])

    update = fragments.presence_update(html)
    assert update.count == "6"
    assert update.appended_usernames == []  # the lists are full: no entry (below)
    more = more_line(html)
    assert more.attrs["hx-swap-oob"] == "true"
    assert "data-oob-optional" in more.attrs  # (a page rendered before it existed)
    assert more.text == "and 3 more online in #lobby"
    assert more.one("a").attr("href") == "/rooms/lobby/online/"


def test_past_the_limit_a_join_is_the_count_and_a_line_not_an_entry(
    lobby, make_user, settings, five_online
) -> None:
    settings.CHAT_ONLINE_LIST_LIMIT = 5  # every page's list is full
    frank, gina = make_user("frank"), make_user("gina")
    for person in (frank, gina):
        presence.arrive(lobby, person, f"socket-{person.pk}")

    html = presence.render_changes(lobby, [Change(lobby, p, "joined") for p in (frank, gina)])

    update = fragments.presence_update(html)
    assert update.appended_usernames == []  # no entry: nobody could see it
    assert "online-user-" not in html
    assert update.count == "7"
    assert more_line(html).text == "and 2 more online in #lobby"
    assert "frank" in html and "gina" in html  # the log's lines still name them


def test_a_tick_that_reaches_past_the_limit_appends_the_joins_among_the_first(
    lobby, make_user, settings, five_online
) -> None:
    settings.CHAT_ONLINE_LIST_LIMIT = 6  # room for one more: the list is not full yet
    frank, gina = make_user("frank"), make_user("gina")
    for person in (frank, gina):
        presence.arrive(lobby, person, f"socket-{person.pk}")

    html = presence.render_changes(lobby, [Change(lobby, p, "joined") for p in (frank, gina)])

    # frank is sixth by name, gina seventh: she is the "and 1 more".
    assert fragments.presence_update(html).appended_usernames == ["frank"]
    assert more_line(html).text == "and 1 more online in #lobby"


def test_past_the_limit_a_join_among_the_first_is_appended_and_pushes_the_last_off(
    lobby, make_user, limit, five_online
) -> None:
    shown = presence.online_entries(presence.online_list(lobby).users)  # the first 3
    aaron = make_user("aaron")  # second by name, after "<b>eve</b>"
    presence.arrive(lobby, aaron, "aarons-socket")

    html = presence.render_changes(lobby, [Change(lobby, aaron, "joined")])

    assert fragments.presence_update(html).appended_usernames == ["aaron"]
    assert page_list_after(shown, html) == ["<b>eve</b>", "alice", "aaron"]  # bob pushed off
    assert more_line(html).text == "and 3 more online in #lobby"


def page_list_after(page_html: str, *ticks: str) -> list[str]:
    """The usernames a page's online list holds: its entries, then each tick's deletes and
    appends (by id, as htmx applies them: an entry appended again is deleted first)."""
    entries = fragments.parse(page_html).find_all("li")
    names: dict[str | None, str | None] = {li.id: li.attrs["data-username"] for li in entries}
    listed = [li.id for li in entries]
    for html in ticks:
        update = fragments.presence_update(html)
        listed = [i for i in listed if i not in update.deleted]
        for li in update.appended:
            names[li.id] = li.attrs["data-username"]
            listed.append(li.id)
    return [names[i] or "" for i in listed]


def test_who_leaves_a_full_list_makes_room_for_the_next_by_name(lobby, limit, five_online) -> None:
    shown = presence.online_entries(presence.online_list(lobby).users)  # the first 3
    alice = next(p for p in five_online if p.username == "alice")
    lobby.connections.filter(user=alice).delete()  # (as a settled departure leaves it)

    html = presence.render_changes(lobby, [Change(lobby, alice, "left")])

    assert fragments.presence_update(html).appended_usernames == ["carol"]  # fourth, now third
    assert page_list_after(shown, html) == ["<b>eve</b>", "bob", "carol"]


def test_a_restart_s_departures_and_returns_leave_every_page_a_full_list(
    lobby, make_user, limit, five_online
) -> None:
    """The old process announces "left" for everyone not yet back, then they come back:
    each page's list ends as the first three by name, and "and 2 more"."""
    shown = presence.online_entries(presence.online_list(lobby).users)
    back_first = [p for p in five_online if p.username in ("dave", "carol")]
    gone = [p for p in five_online if p not in back_first]
    lobby.connections.filter(user__in=gone).delete()
    departures = presence.render_changes(lobby, [Change(lobby, p, "left") for p in gone])
    for person in gone:
        presence.arrive(lobby, person, f"again-{person.pk}")
    returns = presence.render_changes(lobby, [Change(lobby, p, "joined") for p in gone])

    assert page_list_after(shown, departures) == ["carol", "dave"]  # all that is online
    # Back, they are the first three again, and carol and dave are pushed off.
    listed = page_list_after(shown, departures, returns)
    assert sorted(listed) == ["<b>eve</b>", "alice", "bob"]
    assert fragments.presence_update(returns).count == "5"


def test_down_to_the_limit_the_presence_fragment_empties_the_more_line(
    lobby, limit, five_online
) -> None:
    gone = five_online[-2:]
    lobby.connections.filter(user__in=gone).delete()  # (as a settled departure leaves it)

    html = presence.render_changes(lobby, [Change(lobby, person, "left") for person in gone])

    assert fragments.presence_update(html).count == "3"
    more = more_line(html)
    assert more.attrs["hx-swap-oob"] == "true" and more.text == ""


# Everyone online: /rooms/<slug>/online/ --------------------------------------------------------


def test_the_online_page_lists_everyone_by_name_escaped(
    login, alice, lobby, limit, five_online
) -> None:
    response = login(alice).get("/rooms/lobby/online/")

    assert response.status_code == 200
    html = response.content.decode()
    document = fragments.parse(html)
    listed = document.one("ul", class_="online-page-list").find_all("li")
    assert [li.attrs["data-username"] for li in listed] == NAMES
    assert "<b>eve</b>" not in html and "&lt;b&gt;eve&lt;/b&gt;" in html
    assert document.one("h1").text == "Online in #lobby"
    assert document.one_by_id("online-page-count").text.startswith("5 people online now")
    assert document.one(class_="crumbs").one("a").attr("href") == "/rooms/lobby/"
    assert document.find("nav", class_="pager") is None  # one page


def test_the_online_page_pages_through_everyone(
    login, alice, lobby, five_online, monkeypatch
) -> None:
    assert views.ONLINE_PAGE_SIZE == 200
    monkeypatch.setattr(views, "ONLINE_PAGE_SIZE", 2)
    client = login(alice)

    pages = []
    for number in (1, 2, 3):
        document = fragments.parse(
            client.get(f"/rooms/lobby/online/?page={number}").content.decode()
        )
        listed = document.one("ul", class_="online-page-list").find_all("li")
        pages.append([li.attrs["data-username"] for li in listed])
        pager = document.one("nav", class_="pager")
        assert f"Page {number} of 3" in pager.text
        assert (pager.find("a", rel="next") is not None) == (number < 3)
        assert (pager.find("a", rel="prev") is not None) == (number > 1)
    assert pages == [NAMES[:2], NAMES[2:4], NAMES[4:]]
    for bad in ("4", "0", "x"):
        assert client.get(f"/rooms/lobby/online/?page={bad}").status_code == 404


def test_the_online_page_is_access_checked_as_the_room_is(
    client, login, alice, bob, carol, secret, ops
) -> None:
    presence.arrive(secret, alice, "alices-socket")

    # Logged out: to the log-in page, as the room page itself.
    assertRedirects(
        client.get("/rooms/secret/online/"),
        "/accounts/login/?next=/rooms/secret/online/",
        fetch_redirect_response=False,
    )
    assertRedirects(
        client.get("/rooms/secret/"),
        "/accounts/login/?next=/rooms/secret/",
        fetch_redirect_response=False,
    )
    # Not a member, staff rooms, no such room, no valid name: 404 alike.
    carols = login(carol)
    for url in ("/rooms/secret/online/", "/rooms/ops/online/", "/rooms/nowhere/online/"):
        response = carols.get(url)
        assert response.status_code == 404, url
        assert b"alice" not in response.content
    assert carols.get("/rooms/No_Such/online/").status_code == 404
    # A member sees who is there.
    response = login(bob).get("/rooms/secret/online/")
    assert response.status_code == 200
    assert b'data-username="alice"' in response.content
    assert Room.objects.count() == 2  # (looking never creates a room)


# A connect's catch-up -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_every_connect_is_sent_the_capped_list_with_the_count_and_more(
    connect, alice, lobby, limit, make_user
) -> None:
    others = [await db(make_user)(name) for name in NAMES if name != "alice"]
    for person in others:
        await db(presence.arrive)(lobby, person, f"socket-{person.pk}")

    socket = await connect(alice, "lobby", after=0)

    assert fragments.online_usernames(socket.settled) == NAMES[:3]
    document = fragments.parse(socket.settled)
    assert document.one_by_id("online-count").text == "5"
    more = document.one_by_id("online-more")
    assert more.text == "and 2 more online in #lobby"
    assert more.one("a").attr("href") == "/rooms/lobby/online/"
    await socket.expect_presence("alice", "joined")
