"""Rooms are created explicitly, never by a GET.

Creating a room is a POST of the room list's form (the "Create #name" page posts the same
form). A GET never creates; a "members only" request never reuses an existing name;
private and staff rooms look exactly like missing ones on every path; the room list is
paginated with the user's own rooms first; each user may create only so many rooms a day.
"""

import re
import threading
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_django.asserts import assertRedirects

from conftest import HttpsClient
from rooms import services
from rooms.forms import ROOM_NAME_INPUT_PATTERN, RoomNameForm
from rooms.models import Message, Room
from rooms.tests import fragments
from rooms.views import SIDEBAR_ROOMS

pytestmark = pytest.mark.django_db

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="[^"]+"')
CSRF_HEADER = re.compile(r'"X-CSRFToken": "[^"]+"')
CSP_NONCE = re.compile(r"nonce-[^']+'|nonce=\"[^\"]+\"")
TAKEN = "There is already a room named #{}: choose another name for a new room."


@pytest.fixture
def forbidden(request, alice, make_user) -> Room:
    """A room alice may not enter: a private one of zed's, or a staff-only one."""
    if request.param == "private":
        return Room.objects.create(
            slug="hidden", owner=make_user("zed"), visibility=Room.Visibility.PRIVATE
        )
    return Room.objects.create(slug="hidden", visibility=Room.Visibility.STAFF)


FORBIDDEN_KINDS = pytest.mark.parametrize("forbidden", ["private", "staff"], indirect=True)


def page(response: Any) -> fragments.Element:
    return fragments.parse(response.content.decode())


def without_random_tokens(text: str) -> str:
    """`text` with what is random per response (the CSRF token, the CSP nonce) blanked."""
    text = CSRF_INPUT.sub('name="csrfmiddlewaretoken" value="…"', text)
    text = CSRF_HEADER.sub('"X-CSRFToken": "…"', text)
    return CSP_NONCE.sub("nonce…", text)


def field_errors(response: Any) -> list[str]:
    return [p.text for p in page(response).find_all(class_="field-error")]


def submit(client: HttpsClient, form: fragments.Element, *, tick: tuple[str, ...] = ()) -> Any:
    """Submit a form of a page as a browser without JavaScript would: its action, its
    fields' values, and the checkboxes named in `tick` ticked."""
    assert form.attrs["method"] == "post", form.attrs
    data = {}
    for field in form.find_all("input"):
        name, kind = field.attrs.get("name"), field.attrs.get("type")
        if name is None:
            continue
        if kind == "checkbox":
            if name in tick:
                data[name] = field.attrs.get("value") or "on"
        else:
            data[name] = field.attrs.get("value") or ""
    return client.post(form.attr("action"), data)


def create_through_the_list(client: HttpsClient, name: str, *, private: bool = False) -> Any:
    """What a person does on /rooms/: type a name, maybe tick "Members only", press Open."""
    return client.post("/rooms/", {"name": name, **({"private": "on"} if private else {})})


# A GET never creates ----------------------------------------------------------------------


def test_a_valid_unknown_name_is_a_404_that_offers_to_create_it(alice_client) -> None:
    response = alice_client.get("/rooms/fresh-start/")

    assert response.status_code == 404
    assert not Room.objects.exists()
    document = page(response)
    assert document.one("h1").text == "No room #fresh-start"
    form = document.one_by_id("create-room")
    assert (form.attrs["method"], form.attrs["action"]) == ("post", "/rooms/")
    assert form.one("input", name="name", type="hidden").attrs["value"] == "fresh-start"
    assert form.find("input", name="csrfmiddlewaretoken") is not None
    checkbox = form.one("input", name="private", type="checkbox")
    label = form.one("label", **{"for": checkbox.attr("id")})
    assert label.text == "Members only"
    help_text = document.one_by_id(checkbox.attr("aria-describedby"))
    assert "only people you invite" in help_text.text
    assert form.one("button", type="submit").text == "Create #fresh-start"


def test_the_create_button_creates_the_room_without_javascript(alice_client, alice) -> None:
    form = page(alice_client.get("/rooms/fresh-start/")).one_by_id("create-room")

    assertRedirects(submit(alice_client, form), "/rooms/fresh-start/")

    room = Room.objects.get()
    assert (room.slug, room.owner, room.visibility) == ("fresh-start", alice, "public")


def test_the_create_button_with_members_only_ticked_creates_a_private_room(
    alice_client, alice, bob, login
) -> None:
    form = page(alice_client.get("/rooms/plans/")).one_by_id("create-room")

    assertRedirects(submit(alice_client, form, tick=("private",)), "/rooms/plans/")

    room = Room.objects.get()
    assert (room.owner, room.visibility) == (alice, Room.Visibility.PRIVATE)
    assert login(bob).get("/rooms/plans/").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/rooms/new-room/",
        "/rooms/?name=new-room",
        "/rooms/?name=new-room&private=on",
        "/rooms/new-room/messages/",
        "/rooms/new-room/members/",
    ],
)
def test_a_get_never_creates_a_room(alice_client, path) -> None:
    """A cross-site link is a GET: whatever it points at, it creates nothing."""
    response = alice_client.get(path, HTTP_SEC_FETCH_SITE="cross-site")
    assert response.status_code in {200, 404, 405}
    assert not Room.objects.exists()


def test_creating_needs_the_csrf_token(alice) -> None:
    """A cross-site form cannot create a room as its victim: the POST needs the token."""
    client = HttpsClient(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post("/rooms/", {"name": "planted"}, HTTP_ORIGIN="https://evil.example")
    assert response.status_code == 403
    assert not Room.objects.exists()


def test_an_invalid_room_address_is_a_plain_404_without_a_create_form(alice_client) -> None:
    for slug in ["Upper", "-x", "x-", "a_b", "x" * 51]:
        response = alice_client.get(f"/rooms/{slug}/")
        assert response.status_code == 404
        assert b"create-room" not in response.content
    assert not Room.objects.exists()


# Private and staff rooms look missing, everywhere -----------------------------------------


@FORBIDDEN_KINDS
def test_a_forbidden_room_page_is_byte_identical_to_a_missing_one(login, alice, forbidden):
    """Fresh clients each time, so that cookies (the CSRF cookie is set by the first
    page with a form) come out the same; the CSRF token and the CSP nonce are random per
    response."""
    forbidden_response = login(alice).get("/rooms/hidden/")
    forbidden.delete()
    missing_response = login(alice).get("/rooms/hidden/")

    assert forbidden_response.status_code == missing_response.status_code == 404
    assert without_random_tokens(forbidden_response.content.decode()) == without_random_tokens(
        missing_response.content.decode()
    )
    headers = [
        {name: without_random_tokens(value) for name, value in response.headers.items()}
        for response in (forbidden_response, missing_response)
    ]
    assert headers[0] == headers[1]
    assert set(forbidden_response.cookies) == set(missing_response.cookies)


@FORBIDDEN_KINDS
@pytest.mark.parametrize(
    "path",
    [
        "/rooms/hidden/messages/",
        "/rooms/hidden/members/",
        "/rooms/hidden/members/zed/remove/",
    ],
)
def test_posting_to_a_forbidden_room_answers_as_for_a_missing_one(
    login, alice, forbidden, path
) -> None:
    client = login(alice)
    forbidden_response = client.post(path, {"body": "hi", "username": "zed"})
    forbidden.delete()
    missing_response = client.post(path, {"body": "hi", "username": "zed"})

    assert forbidden_response.status_code == missing_response.status_code == 404
    # The styled 404 page (templates/404.html) has the top bar's forms: random tokens.
    assert without_random_tokens(forbidden_response.content.decode()) == without_random_tokens(
        missing_response.content.decode()
    )
    assert not Message.objects.exists()


@FORBIDDEN_KINDS
def test_a_forbidden_name_on_the_list_form_is_just_taken_like_any_other(
    alice_client, make_user, forbidden
) -> None:
    """Creating cannot help revealing that a name is taken; it reveals nothing more."""
    answers = {}
    for private in (False, True):
        response = create_through_the_list(alice_client, "hidden", private=private)
        answers[private] = (response.status_code, field_errors(response))
    Room.objects.create(slug="public-one", owner=make_user("pat"))
    public_taken = create_through_the_list(alice_client, "public-one", private=True)

    expected = (409, [TAKEN.format("hidden")])
    assert answers == {False: expected, True: expected}
    assert (public_taken.status_code, field_errors(public_taken)) == (
        409,
        [TAKEN.format("public-one")],
    )
    assert Room.objects.count() == 2


async def test_a_socket_to_a_missing_room_is_still_closed_with_4404_and_creates_nothing(
    connect, alice
) -> None:
    socket = await connect(alice, "never-made")
    assert await socket.receive_close() == 4404
    assert not await sync_to_async(Room.objects.exists)()


# "Members only" never reuses a name --------------------------------------------------------


def test_members_only_on_an_existing_public_name_is_refused_and_changes_nothing(
    alice_client, make_user
) -> None:
    existing = Room.objects.create(slug="general", owner=make_user("zed"))

    response = create_through_the_list(alice_client, "general", private=True)

    assert response.status_code == 409
    assert field_errors(response) == [TAKEN.format("general")]
    assert list(Room.objects.values_list("slug", "visibility", "owner")) == [
        ("general", "public", existing.owner_id)
    ]


def test_members_only_on_a_private_room_of_ones_own_is_refused_too(alice_client, alice) -> None:
    Room.objects.create(slug="plans", owner=alice, visibility=Room.Visibility.PRIVATE)
    response = create_through_the_list(alice_client, "plans", private=True)
    assert (response.status_code, field_errors(response)) == (409, [TAKEN.format("plans")])


def test_the_first_visitor_no_longer_takes_a_name(alice_client, bob, login) -> None:
    """The case in the issue: bob visits the name first; alice then asks for it members
    only and gets it, private to her."""
    assert login(bob).get("/rooms/plans/").status_code == 404
    assertRedirects(create_through_the_list(alice_client, "plans", private=True), "/rooms/plans/")
    room = Room.objects.get()
    assert room.visibility == Room.Visibility.PRIVATE


def test_opening_an_existing_visible_room_by_name_just_opens_it(alice_client, make_user) -> None:
    existing = Room.objects.create(slug="general", owner=make_user("zed"))
    assertRedirects(create_through_the_list(alice_client, "general"), "/rooms/general/")
    assert list(Room.objects.all()) == [existing]


# The daily cap ---------------------------------------------------------------------------------


def test_a_user_may_create_only_so_many_rooms_a_day(alice_client, alice, settings) -> None:
    settings.CHAT_ROOMS_PER_USER_PER_DAY = 3
    for n in range(3):
        assertRedirects(create_through_the_list(alice_client, f"r{n}"), f"/rooms/r{n}/")

    refused = create_through_the_list(alice_client, "one-more", private=True)

    assert refused.status_code == 429
    (error,) = field_errors(refused)
    assert error.startswith("You have created 3 rooms in the last 24 hours, the most allowed")
    first = Room.objects.get(slug="r0").created_at + timedelta(days=1)
    assert f"you can create another after {first:%Y-%m-%d %H:%M} UTC." in error
    assert Room.objects.count() == 3
    # Opening a room that exists is not creating one: still allowed at the cap.
    assertRedirects(create_through_the_list(alice_client, "r1"), "/rooms/r1/")


def test_rooms_older_than_a_day_no_longer_count_against_the_cap(alice, settings) -> None:
    settings.CHAT_ROOMS_PER_USER_PER_DAY = 2
    services.create_room("old-one", alice, private=False)
    services.create_room("old-two", alice, private=False)
    with pytest.raises(services.RoomLimitReached):
        services.create_room("too-many", alice, private=False)
    Room.objects.update(created_at=timezone.now() - timedelta(hours=24, minutes=1))
    assert services.create_room("next-day", alice, private=True).slug == "next-day"


def test_the_cap_is_per_user_and_staff_are_exempt(alice, bob, make_user, settings) -> None:
    settings.CHAT_ROOMS_PER_USER_PER_DAY = 1
    services.create_room("alices", alice, private=False)
    assert services.create_room("bobs", bob, private=False).owner == bob
    staff = make_user("sam", is_staff=True)
    for n in range(3):
        services.create_room(f"staff-{n}", staff, private=False)
    with pytest.raises(services.RoomLimitReached):
        services.create_room("alices-second", alice, private=False)


@pytest.mark.django_db(transaction=True)
def test_the_cap_holds_when_one_user_creates_rooms_concurrently(alice, settings) -> None:
    """Four requests at once at the cap's edge: one room, three refusals (PostgreSQL
    counts without seeing the others' uncommitted rooms: create_room locks the user)."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs one write transaction at a time (IMMEDIATE) anyway")
    settings.CHAT_ROOMS_PER_USER_PER_DAY = 1
    start = threading.Barrier(4)
    outcomes: list[str] = []

    def create(n: int) -> None:
        start.wait()
        try:
            services.create_room(f"race-{n}", alice, private=False)
            outcomes.append("created")
        except services.RoomLimitReached:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["created", "refused", "refused", "refused"]
    assert Room.objects.filter(owner=alice).count() == 1


# The room list: paginated, my rooms first -------------------------------------------------


def make_rooms(count: int, prefix: str = "room") -> None:
    Room.objects.bulk_create(Room(slug=f"{prefix}-{n:04d}") for n in range(count))


def listed(response: Any) -> list[str]:
    return [row.attr("data-room") for row in page(response).find_all(class_="room-row")]


def test_the_room_list_shows_the_rooms_a_user_is_in_first(alice_client, alice, bob) -> None:
    for slug in ["alpha", "bravo", "charlie"]:
        Room.objects.create(slug=slug)
    Room.objects.create(slug="zulu-mine", owner=alice)
    member_of = Room.objects.create(slug="yankee", owner=bob, visibility="private")
    member_of.members.add(alice)
    posted_in = Room.objects.create(slug="x-ray")
    Message.objects.create(room=posted_in, author=alice, body="hi")
    Message.objects.create(room=Room.objects.get(slug="bravo"), author=bob, body="not alice")

    response = alice_client.get("/rooms/")

    assert listed(response) == ["x-ray", "yankee", "zulu-mine", "alpha", "bravo", "charlie"]
    rows = page(response).find_all(class_="room-row")
    assert ["data-mine" in row.attrs for row in rows] == [True] * 3 + [False] * 3
    headings = [h.text for h in page(response).find_all("h2", class_="sidebar-title")]
    assert headings == ["Your rooms", "Other rooms"]


def test_the_room_list_is_paginated_with_next_and_prev_links(alice_client, alice, settings) -> None:
    settings.CHAT_ROOMS_PAGE_SIZE = 2
    make_rooms(3)
    Room.objects.create(slug="zzz-mine", owner=alice)

    first = alice_client.get("/rooms/")
    second = alice_client.get("/rooms/?page=2")

    assert listed(first) == ["zzz-mine", "room-0000"]
    assert listed(second) == ["room-0001", "room-0002"]
    assert page(first).one("a", rel="next").attrs["href"] == "?page=2"
    assert page(first).find("a", rel="prev") is None
    assert page(second).one("a", rel="prev").attrs["href"] == "?page=1"
    assert page(second).find("a", rel="next") is None
    assert "Page 2 of 2" in page(second).one("nav", class_="pager").text


@pytest.mark.parametrize("number", ["0", "3", "abc", "-1", "1e3"])
def test_a_page_of_the_room_list_that_is_not_there_is_a_404(alice_client, settings, number) -> None:
    settings.CHAT_ROOMS_PAGE_SIZE = 2
    make_rooms(3)
    assert alice_client.get(f"/rooms/?page={number}").status_code == 404


def test_a_thousand_rooms_cost_the_list_one_page_and_no_more_queries(
    alice_client, settings
) -> None:
    """The issue: every page listed every room (1,762 rooms: 596 KiB and 225 ms a page)."""
    settings.CHAT_ROOMS_PAGE_SIZE = 50
    make_rooms(3, prefix="few")
    alice_client.get("/rooms/")  # warm: the first request of a client may do extra work
    with CaptureQueriesContext(connection) as few_rooms:
        small = alice_client.get("/rooms/")
    make_rooms(1000)
    with CaptureQueriesContext(connection) as many_rooms:
        big = alice_client.get("/rooms/")

    assert len(listed(small)) == 3
    assert len(listed(big)) == 50
    assert len(many_rooms) == len(few_rooms), [q["sql"] for q in many_rooms]
    assert len(big.content) < 64 * 1024
    print(f"room list with 1,003 rooms: {len(big.content):,} bytes, {len(many_rooms)} queries")


def test_the_room_page_sidebar_lists_only_the_users_rooms_capped(alice_client, alice, bob) -> None:
    Room.objects.bulk_create(
        Room(slug=f"mine-{n:02d}", owner=alice) for n in range(SIDEBAR_ROOMS + 5)
    )
    make_rooms(30, prefix="other")
    lobby = Room.objects.create(slug="lobby", owner=bob)
    Message.objects.create(room=lobby, author=alice, body="I am in here now")

    with CaptureQueriesContext(connection) as queries:
        response = alice_client.get("/rooms/lobby/")
    nav = page(response).one("nav", class_="room-nav")

    links = [a.text for a in nav.one("ul").find_all("a")]
    assert len(links) == SIDEBAR_ROOMS
    assert links == sorted(links) and links[0] == "#lobby"
    assert all(not link.startswith("#other") for link in links)
    assert nav.one("a", class_="sidebar-link").attrs["href"] == "/rooms/"
    assert nav.one("a", **{"aria-current": "page"}).text == "#lobby"
    assert len(queries) < 20, [q["sql"] for q in queries]


# The name field's browser pattern -----------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    ["general", " Book-Club ", "a", "x" * 50, "a-b-c", "9lives", "-x", "x-", "two words", "a_b",
     "é", "", "x" * 51, "a.b"],
)  # fmt: skip
def test_the_name_fields_pattern_lets_through_exactly_what_the_form_accepts(typed) -> None:
    """The browser runs `pattern` (with the `v` flag: e2e/test_room_creation.py checks it
    compiles there) anchored, as ^(?:pattern)$; the syntax used means the same in Python."""
    browser_accepts = re.fullmatch(f"(?:{ROOM_NAME_INPUT_PATTERN})", typed) is not None
    assert browser_accepts == (len(typed) <= 50 and RoomNameForm({"name": typed}).is_valid())
    rendered = str(RoomNameForm()["name"])
    assert 'pattern="\\s*[A-Za-z0-9](?:[A-Za-z0-9\\-]{0,48}[A-Za-z0-9])?\\s*"' in rendered
