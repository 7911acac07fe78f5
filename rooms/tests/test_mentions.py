"""Mentions (issue 13): what "@name" means in a message, what is stored, how it renders.

The syntax (rooms/formatting.py) without a database; who it names (rooms/attention.py)
with one: unknown names stay text, case does not matter, punctuation ends a name, code is
never a mention, "@here" is whoever is online, and only people who may enter the room.
"""

from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from rooms import attention, changes, presence, services
from rooms.formatting import format_body, mention_names
from rooms.models import Message, MessageMention, ReadPosition, Room
from rooms.tests import fragments

pytestmark = pytest.mark.django_db

# The syntax --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("hi @bob", ["bob"]),
        ("@bob, @carol: and @dave!", ["bob", "carol", "dave"]),
        ("thanks @bob.", ["bob"]),
        ("thanks @bob...", ["bob"]),
        ("@bob's idea", ["bob"]),
        ("(@bob)", ["bob"]),
        ("@bob.smith and @ann-marie and @a_b and @x+y", ["bob.smith", "ann-marie", "a_b", "x+y"]),
        ("@Bob and @BOB and @bob", ["Bob"]),  # each name once, whatever its case
        ("@here", ["here"]),
        ("mail bob@example.test", []),  # inside a word: an address, not a mention
        ("@@bob", []),
        ("@ alone, @. and @", []),
        ("`@bob` in code", []),
        ("```\n@bob in a fence\n```\n@carol after it", ["carol"]),
        ("https://x.test/@bob is a link", []),
        ("@émile and @ÉMILE", ["émile"]),
    ],
)
def test_mention_names(text: str, names: list[str]) -> None:
    assert mention_names(text) == names


def test_only_known_names_are_links_shown_as_typed() -> None:
    html = format_body("hi @Bob, @nobody and `@bob`. @here!", "bob")
    assert html == (
        'hi <a class="mention" href="/messages/bob/">@Bob</a>, @nobody and <code>@bob</code>. '
        '<span class="mention mention--here">@here</span>!'
    )


def test_without_known_names_nothing_is_a_link() -> None:
    assert (
        format_body("hi @bob @here", "")
        == 'hi @bob <span class="mention mention--here">@here</span>'
    )
    assert format_body("hi @bob @here") == "hi @bob @here"  # (not a message: no mentions)


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


NAMES = ["bob", "Ann", "x.y", "émile"]


@hypothesis_settings(max_examples=500, deadline=None)
@given(
    text=st.lists(
        st.one_of(
            st.sampled_from(["@", "@bob", "@ANN", "@x.y.", "@here", "`", "<", '"', ".", " ", "\n"]),
            st.text(max_size=4),
        ),
        max_size=20,
    ).map("".join)
)
def test_mention_links_are_only_to_known_people_and_keep_the_text(text: str) -> None:
    html = format_body(text, " ".join(NAMES))
    tags = Tags()
    tags.feed(html)
    for tag, attrs in tags.tags:
        if tag == "a" and attrs.get("class") == "mention":
            assert attrs["href"] in {f"/messages/{name}/" for name in NAMES}, html
    if "`" not in text and "http" not in text:
        assert "".join(tags.text) == text.replace("\r\n", "\n").replace("\r", "\n").replace(
            "\n", ""
        )


# Who a message mentions --------------------------------------------------------------------


def post(room: Room, author, body: str) -> Message:
    services.post_message(room, author, body)
    return Message.objects.filter(room=room).latest("seq")


def mentioned(message: Message) -> list[str]:
    return sorted(message.mentions.values_list("user__username", flat=True))


def test_a_mention_is_stored_and_rendered_as_a_link_with_data_mentions(lobby, alice, bob, carol):
    posted = services.post_message(lobby, alice, "@Bob, see this. @nobody, @CAROL.")
    message = Message.objects.get()
    assert message.mentioned == "bob carol"
    assert mentioned(message) == ["bob", "carol"]
    assert list(MessageMention.objects.values_list("room_id", "seq")) == [
        (lobby.pk, message.seq),
        (lobby.pk, message.seq),
    ]
    (article,) = fragments.messages_in(posted.html)
    assert article.attrs["data-mentions"] == "bob carol"
    links = article.one(class_="message-body").find_all("a", class_="mention")
    assert [(a.attrs["href"], a.text) for a in links] == [
        ("/messages/bob/", "@Bob"),
        ("/messages/carol/", "@CAROL"),
    ]
    assert "@nobody" in article.one(class_="message-body").text


def test_names_in_code_and_the_author_are_not_mentions(lobby, alice, bob):
    message = post(lobby, alice, "`@bob` and\n```\n@bob\n```\nme: @alice")
    assert message.mentioned == ""
    assert mentioned(message) == []
    article = fragments.messages_in(services.render_fragment("message", message=message))[0]
    assert "data-mentions" not in article.attrs


def test_inactive_people_are_not_mentioned(lobby, alice, make_user):
    make_user("gone", is_active=False)
    assert post(lobby, alice, "@gone").mentioned == ""


def test_only_people_who_may_enter_the_room_are_mentioned(
    secret, ops, alice, bob, carol, make_user
):
    # secret: alice's private room with bob as a member; carol is not in it.
    assert post(secret, alice, "@bob @carol").mentioned == "bob"
    staff = make_user("sam", is_staff=True)
    assert post(ops, staff, "@alice @sam @carol").mentioned == ""
    other_staff = make_user("tess", is_staff=True)
    assert post(ops, staff, "@tess").mentioned == other_staff.username


def test_here_mentions_whoever_is_online_in_the_room(
    lobby, other_room, alice, bob, carol, make_user
):
    make_user("dave")
    presence.arrive(lobby, alice, "s:1")
    presence.arrive(lobby, bob, "s:2")
    presence.arrive(other_room, carol, "s:3")  # online, but elsewhere
    message = post(lobby, alice, "@here lunch? also @dave")
    assert message.mentioned == "bob dave"  # not the author, not carol
    html = services.render_fragment("message", message=message)
    assert 'class="mention mention--here"' in html


def test_an_edit_reads_the_mentions_again(lobby, alice, bob, carol):
    message = post(lobby, alice, "hi @bob")
    posted = changes.edit_message(message, alice, "hi @carol")
    message.refresh_from_db()
    assert message.mentioned == "carol"
    assert mentioned(message) == ["carol"]
    assert fragments.messages_in(posted.html)[0].attrs["data-mentions"] == "carol"


def test_a_deleted_message_mentions_nobody(lobby, alice, bob):
    message = post(lobby, alice, "hi @bob")
    changes.delete_message(message, alice)
    message.refresh_from_db()
    assert message.mentioned == "" and mentioned(message) == []


def test_mentions_are_read_once_per_message_however_many(
    lobby, alice, make_user, django_assert_max_num_queries
):
    for n in range(30):
        make_user(f"user{n}")
    body = " ".join(f"@user{n}" for n in range(30))
    with django_assert_max_num_queries(12):
        message = post(lobby, alice, body)
    assert len(message.mentioned.split()) == 30


def test_level_nothing_is_not_notified(lobby, alice, bob, carol):
    ReadPosition.objects.create(user=bob, room=lobby, level=ReadPosition.Level.NOTHING)
    message = post(lobby, alice, "@bob @carol")
    publications = attention.notify(message, [bob, carol])
    assert len(publications) == 1  # carol's
