"""/styleguide/ (site_config/styleguide.py): a sample of every partial in templates/, for
staff (or anyone signed in with DEBUG on), a 404 for everyone else, and no writes."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from rooms.tests.fragments import parse

pytestmark = pytest.mark.django_db

TEMPLATES = Path(settings.BASE_DIR) / "templates"
PARTIALDEF = re.compile(r"\{%-?\s*partialdef\s+([\w-]+)")

# The styleguide's own frames (templates/styleguide/) are the markup round samples, not
# partials of the chat: they need no sample of their own.
NOT_THE_CHATS = {"styleguide"}

# Partials that cannot be shown meaningfully, each with the reason. None so far: those that
# render nothing visible (cursor, room-activity, room-read) still have a sample, with
# their markup under it.
EXEMPT: dict[str, str] = {}


def partials_in_templates() -> set[str]:
    """Every "<template>#<name>" that a {% partialdef %} in templates/ defines."""
    found = set()
    for path in TEMPLATES.rglob("*.html"):
        relative = path.relative_to(TEMPLATES)
        if relative.parts[0] in NOT_THE_CHATS:
            continue
        for name in PARTIALDEF.findall(path.read_text(encoding="utf-8")):
            found.add(f"{relative.as_posix()}#{name}")
    return found


def samples_of(document, partial: str | None = None) -> list:
    """The samples on the page (elements with data-partial), or those of one partial."""
    return [
        element
        for element in document.iter()
        if "data-partial" in element.attrs
        and (partial is None or element.attrs["data-partial"] == partial)
    ]


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("sam", password="pw", is_staff=True)


@pytest.fixture
def member(django_user_model):
    return django_user_model.objects.create_user("mo", password="pw")


def test_the_scan_finds_the_partials_of_the_room_page_and_of_search() -> None:
    found = partials_in_templates()
    # (So that an empty scan cannot pass the test below.)
    assert {"rooms/room.html#message", "rooms/room.html#composer"} <= found
    assert "rooms/search.html#search-result" in found
    assert "rooms/message_action.html#action-panel" in found


def test_every_partial_has_a_sample_on_the_page(client, staff) -> None:
    client.force_login(staff)
    response = client.get("/styleguide/")
    assert response.status_code == 200
    document = parse(response.content.decode())
    samples = samples_of(document)
    shown = {sample.attrs["data-partial"] for sample in samples}
    missing = sorted(partials_in_templates() - shown - EXEMPT.keys())
    assert not missing, f"partials with no sample on /styleguide/: {missing}"
    for sample in samples:
        # Each names its state, and has a heading naming the partial and the state.
        assert sample.attrs["data-state"], sample.attrs["data-partial"]
        heading = sample.one("h3").text
        assert sample.attrs["data-partial"] in heading
        assert sample.attrs["data-state"] in heading


def test_samples_are_the_states_the_brief_lists(client, staff) -> None:
    """A few states that only sample data can show: spot checks of the rendering."""
    client.force_login(staff)
    html = client.get("/styleguide/").content.decode()
    document = parse(html)

    def sample(partial: str, state: str):
        found = [
            s
            for s in samples_of(document, f"rooms/room.html#{partial}")
            if s.attrs["data-state"].startswith(state)
        ]
        assert found, (partial, state)
        return found[0]

    assert sample("message", "mine").one("article").attrs["data-author"] == "sam"
    assert len(sample("message", "long name").one(class_="message-author").text) == 150
    assert sample("message", "deleted").find(class_="message-tombstone")
    assert sample("message", "a reply to a deleted").find(class_="message-quote--gone")
    pressed = sample("message", "reactions").find_all("button", class_="reaction")
    assert [b.attrs["aria-pressed"] for b in pressed][:2] == ["true", "false"]
    assert sample("composer", "error").find(class_="composer-error")
    assert sample("composer", "replying").find(class_="composer-reply")
    assert len(sample("online-users", "60").find_all("li")) == 60
    assert "9 others" in sample("presence-line", "many").text
    states = [
        s.one(class_="styleguide-frame").attrs.get("data-socket", "")
        for s in samples_of(document, "rooms/room.html#connection-status")
    ]
    assert states == ["", "reconnecting", "closed"]
    # User text is escaped in samples too; the markup under each sample is escaped again.
    assert "<b>no</b>" not in html
    assert "&lt;Monday&gt;" in html


def test_it_renders_without_writing_to_the_database(client, staff) -> None:
    client.force_login(staff)
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/styleguide/")
    assert response.status_code == 200
    statements = [query["sql"].lstrip().split(None, 1)[0].upper() for query in queries]
    assert statements, "no query at all: the session and user were not read"
    assert set(statements) <= {"SELECT"}, [q["sql"] for q in queries]


def test_debug_off_anyone_but_staff_gets_a_404(client, member) -> None:
    assert settings.DEBUG is False
    assert client.get("/styleguide/").status_code == 404
    client.force_login(member)
    response = client.get("/styleguide/")
    assert response.status_code == 404
    assert b"data-partial" not in response.content


@override_settings(DEBUG=True)
def test_debug_on_any_signed_in_user_sees_it(client, member) -> None:
    response = client.get("/styleguide/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/accounts/login/?next=/styleguide/"
    client.force_login(member)
    assert client.get("/styleguide/").status_code == 200


def test_it_is_read_only(client, staff) -> None:
    client.force_login(staff)
    assert client.post("/styleguide/").status_code == 405
