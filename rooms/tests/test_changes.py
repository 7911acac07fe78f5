"""A message's life after it is posted (rooms/changes.py): who may edit, delete and react,
what each change stores, the sequence number it takes, and how it reaches open pages and
pages that were offline (the catch-up covers changes, not only new messages)."""

from datetime import UTC, timedelta

import pytest
from channels.db import database_sync_to_async as db
from django.utils import timezone

from rooms import changes, services
from rooms.models import Message, MessageRevision, Reaction, Room
from rooms.tests import fragments


def last_seq(room: Room) -> int:
    return services.room_cursor(room)


def reload(message: Message) -> Message:
    return Message.objects.get(pk=message.pk)


@pytest.fixture
def hello(lobby, alice) -> Message:
    return Message.objects.create(room=lobby, author=alice, body="helo")


# Edit ----------------------------------------------------------------------------------


def test_the_author_edits_and_the_old_text_is_kept_for_staff(hello, alice, lobby):
    before = last_seq(lobby)

    posted = changes.edit_message(hello, alice, "hello")

    edited = reload(hello)
    assert (edited.body, edited.seq) == ("hello", hello.seq)
    assert edited.edited_at is not None
    assert edited.changed_seq == before + 1 == last_seq(lobby)
    assert list(MessageRevision.objects.values_list("body", flat=True)) == ["helo"]
    article = fragments.messages_in(posted.html)[0]
    assert article.attrs["data-edited"] and article.attrs["data-change"] == str(before + 1)
    assert article.attrs["hx-swap-oob"] == "true"  # replaces the page's copy, by id
    assert article.one(class_="message-body").text == "hello"
    assert "edited" in article.one(class_="message-edited").text
    # The change's number is left on every page, for the cursor.
    marker = fragments.parse(posted.html).one_by_id("chat-changes")
    assert marker.attrs["hx-swap-oob"] == "beforeend"
    assert [e.attrs["data-seq"] for e in marker.iter() if "data-seq" in e.attrs] == [
        str(before + 1)
    ]


def test_an_edit_to_the_same_text_changes_nothing_and_spends_no_number(hello, alice, lobby):
    before = last_seq(lobby)
    changes.edit_message(hello, alice, "helo")
    assert last_seq(lobby) == before
    assert reload(hello).edited_at is None
    assert not MessageRevision.objects.exists()


def test_only_the_author_edits_not_even_staff(hello, bob, make_user):
    moderator = make_user("mod", is_staff=True)
    for user in (bob, moderator):
        with pytest.raises(changes.NotYours):
            changes.edit_message(hello, user, "changed")
    assert reload(hello).body == "helo"


def test_the_edit_window_closes(hello, alice, lobby, settings):
    Message.objects.filter(pk=hello.pk).update(created_at=timezone.now() - timedelta(minutes=16))
    before = last_seq(lobby)
    with pytest.raises(changes.EditWindowClosed, match="15 minutes after they are sent"):
        changes.edit_message(reload(hello), alice, "hello")
    settings.CHAT_EDIT_WINDOW_MINUTES = 30
    changes.edit_message(reload(hello), alice, "hello")
    assert last_seq(lobby) == before + 1


def test_a_deleted_message_cannot_be_edited(hello, alice):
    changes.delete_message(hello, alice)
    with pytest.raises(Message.DoesNotExist):
        changes.edit_message(hello, alice, "back")


# Delete --------------------------------------------------------------------------------


def test_deleting_leaves_a_tombstone_without_text_reactions_or_versions(hello, alice, bob, lobby):
    changes.edit_message(hello, alice, "hello")
    changes.toggle_reaction(hello, bob, "👍")
    before = last_seq(lobby)

    posted = changes.delete_message(hello, alice)

    gone = reload(hello)
    assert (gone.body, gone.changed_seq) == ("", before + 1)
    assert gone.deleted_at is not None
    assert not MessageRevision.objects.exists() and not Reaction.objects.exists()
    article = fragments.messages_in(posted.html)[0]
    assert "data-deleted" in article.attrs and "helo" not in posted.html
    assert article.text == "Message deleted"
    with pytest.raises(Message.DoesNotExist):
        services.find_message(lobby, hello.pk)


def test_staff_delete_anyones_message_members_only_their_own(hello, bob, make_user):
    with pytest.raises(changes.NotYours):
        changes.delete_message(hello, bob)
    changes.delete_message(hello, make_user("mod", is_staff=True))
    assert reload(hello).deleted_at is not None


def test_deleted_messages_leave_history_permalinks_and_transcripts(hello, alice, lobby):
    kept = Message.objects.create(room=lobby, author=alice, body="kept")
    changes.delete_message(hello, alice)

    assert services.recent_messages(lobby).messages == [kept]
    with pytest.raises(Message.DoesNotExist):
        services.messages_around(lobby, hello.pk)
    day = timezone.localdate(kept.created_at, UTC)
    assert services.day_transcript(lobby, day).messages == [kept]


# React ---------------------------------------------------------------------------------


def test_a_reaction_toggles_and_each_shows_once_with_who_gave_it(hello, alice, bob, carol, lobby):
    changes.toggle_reaction(hello, bob, "👍")
    changes.toggle_reaction(hello, carol, "👍")
    posted = changes.toggle_reaction(hello, alice, "+1")

    buttons = fragments.parse(posted.html).find_all("button", class_="reaction")
    assert [
        (b.attrs["data-emoji"], b.attrs["data-count"], b.attrs["data-by"]) for b in buttons
    ] == [
        ("👍", "2", "bob carol"),
        ("+1", "1", "alice"),
    ]
    assert buttons[0].attrs["title"] == "bob and carol"
    # A push is rendered for no one in particular: whether it is pressed is per viewer.
    assert "aria-pressed" not in buttons[0].attrs

    before = last_seq(lobby)
    changes.toggle_reaction(hello, bob, "👍")  # again: taken back
    assert list(Reaction.objects.values_list("user__username", "emoji")) == [
        ("carol", "👍"),
        ("alice", "+1"),
    ]
    assert reload(hello).changed_seq == before + 1


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "Choose a reaction"),
        ("   ", "Choose a reaction"),
        ("x" * 17, "at most 16 characters"),
        ("a\nb", "line breaks or control characters"),
        ("\u202eabc", "line breaks or control characters"),
        ("\x00", "line breaks or control characters"),
    ],
)
def test_reactions_that_are_refused(hello, bob, lobby, text, error):
    before = last_seq(lobby)
    with pytest.raises(changes.InvalidReaction, match=error):
        changes.toggle_reaction(hello, bob, text)
    assert last_seq(lobby) == before and not Reaction.objects.exists()


def test_reactions_are_kept_normalised_and_emoji_sequences_allowed(hello, bob):
    family = "👨\u200d👩\u200d👧"  # joined by ZWJ: one emoji
    changes.toggle_reaction(hello, bob, f"  {family} ")
    changes.toggle_reaction(hello, bob, "e\u0301")  # é, decomposed
    assert list(Reaction.objects.values_list("emoji", flat=True)) == [family, "é"]


def test_reactions_are_read_for_a_page_in_one_query(lobby, alice, bob, django_assert_num_queries):
    messages = [Message.objects.create(room=lobby, author=alice, body=str(i)) for i in range(30)]
    for message in messages[::3]:
        changes.toggle_reaction(message, bob, "🎉")
    with django_assert_num_queries(3):  # the cursor, the page with authors, its reactions
        view = services.recent_messages(lobby)
    assert sum(len(m.reaction_summary) for m in view.messages) == 10


# Reply ---------------------------------------------------------------------------------


def test_a_reply_quotes_what_it_answers_and_links_to_it(hello, bob, lobby):
    form, posted = services.submit_composer(
        lobby, bob, {"body": "did you mean hello?", "reply_to": str(hello.pk)}
    )
    assert posted is not None, form.errors
    reply = Message.objects.get(body="did you mean hello?")
    assert reply.reply_to == hello
    quote = fragments.parse(posted.html).one("blockquote", class_="message-quote")
    assert quote.one("a").attrs["href"] == f"/rooms/lobby/messages/{hello.pk}/#message-{hello.pk}"
    assert "alice" in quote.text and "helo" in quote.text


def test_a_reply_to_a_deleted_or_foreign_message_is_refused_keeping_the_text(
    hello, alice, bob, lobby, other_room
):
    elsewhere = Message.objects.create(room=other_room, author=alice, body="elsewhere")
    changes.delete_message(hello, alice)
    for target in (hello.pk, elsewhere.pk, 10**15):
        form, posted = services.submit_composer(
            lobby, bob, {"body": "answer", "reply_to": str(target)}
        )
        assert posted is None
        assert form.non_field_errors() == [services.REPLY_GONE]
    form, posted = services.submit_composer(lobby, bob, {"body": "x", "reply_to": "abc"})
    assert posted is None and "reply_to" in form.errors
    assert not Message.objects.filter(author=bob).exists()


def test_a_quote_of_a_message_deleted_later_says_so(hello, alice, bob, lobby):
    services.submit_composer(lobby, bob, {"body": "answer", "reply_to": str(hello.pk)})
    changes.delete_message(hello, alice)
    (reply,) = services.recent_messages(lobby).messages
    html = services.render_fragment("message", message=reply)
    assert "The original message was deleted." in html and "helo" not in html


# Catch-up ------------------------------------------------------------------------------


def frames_of(room: Room, state: services.CatchUp) -> list[str]:
    frames, position = services.catch_up_frames(room, state)
    html = [frame for frame, _ in frames]
    while position is not None:
        more, position = services.catch_up_frames(room, state, position)
        html += [frame for frame, _ in more]
    return html


def test_a_page_behind_is_sent_what_is_new_then_what_changed_as_it_is_now(
    lobby, alice, bob, django_assert_max_num_queries
):
    edited, deleted, reacted, untouched = (
        Message.objects.create(room=lobby, author=alice, body=text)
        for text in ("typo", "oops", "nice", "same")
    )
    cursor = last_seq(lobby)  # what the offline page had
    changes.edit_message(edited, alice, "fixed")
    changes.delete_message(deleted, alice)
    changes.toggle_reaction(reacted, bob, "👍")
    new = Message.objects.create(room=lobby, author=bob, body="new")
    gone_before_seen = Message.objects.create(room=lobby, author=bob, body="regret")
    changes.delete_message(gone_before_seen, bob)
    changes.edit_message(reload(new), bob, "new, edited")

    state = services.catch_up(lobby, cursor)
    assert state.missed == 4  # the new one (as edited), and the three it had that changed
    frames = frames_of(lobby, state)

    inserted = [m for f in frames for m in fragments.messages_in(f) if "hx-swap-oob" not in m.attrs]
    replaced = [m for f in frames for m in fragments.messages_in(f) if "hx-swap-oob" in m.attrs]
    assert [m.one(class_="message-body").text for m in inserted] == ["new, edited"]
    assert [m.id for m in replaced] == [f"message-{m.pk}" for m in (edited, deleted, reacted)]
    assert replaced[0].one(class_="message-body").text == "fixed"
    assert "data-deleted" in replaced[1].attrs
    assert replaced[2].one("button", class_="reaction").attrs["data-count"] == "1"
    assert f"message-{untouched.pk}" not in "".join(frames)
    assert "regret" not in "".join(frames)
    # Nothing more once caught up.
    assert services.catch_up(lobby, state.cursor).missed == 0


def test_a_message_the_page_holds_past_its_cursor_is_replaced_only_if_it_changed(lobby, alice, bob):
    first = Message.objects.create(room=lobby, author=alice, body="1")
    cursor = last_seq(lobby)
    Message.objects.create(room=lobby, author=bob, body="2")  # missed
    held = Message.objects.create(room=lobby, author=alice, body="3, shown early")
    held_unchanged = Message.objects.create(room=lobby, author=alice, body="4, shown early")
    changes.edit_message(held, alice, "3, edited")

    state = services.catch_up(lobby, cursor, frozenset({held.seq, held_unchanged.seq}))
    frames = frames_of(lobby, state)

    texts = [
        (("replace" if "hx-swap-oob" in m.attrs else "insert"), m.one(class_="message-body").text)
        for f in frames
        for m in fragments.messages_in(f)
    ]
    assert texts == [("insert", "2"), ("replace", "3, edited")]
    assert f"message-{first.pk}" not in "".join(frames)


def test_a_catch_up_of_many_changes_is_paged(lobby, alice, bob):
    messages = [Message.objects.create(room=lobby, author=alice, body=str(i)) for i in range(120)]
    cursor = last_seq(lobby)
    for message in messages:
        changes.toggle_reaction(message, bob, "👍")

    state = services.catch_up(lobby, cursor)
    first_page, position = services.catch_up_frames(lobby, state)
    assert first_page == [] and position is not None and position.changes  # (none new)
    pages = []
    while position is not None:
        page, position = services.catch_up_frames(lobby, state, position)
        pages.append(page)
    counts = [sum(count for _, count in page) for page in pages]
    assert sum(counts) == state.missed == 120
    assert max(counts) <= services.CATCH_UP_PAGE


# Live ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_each_change_is_pushed_once_to_the_room_only(
    gather, connect, alice, bob, carol, lobby, other_room
):
    alice_socket, bob_socket = await gather("lobby", alice, bob)
    carol_socket = await connect(carol, "other")
    await carol_socket.expect_presence("carol", "joined")
    await db(services.post_message)(lobby, alice, "typo")
    for socket in (alice_socket, bob_socket):
        await socket.receive()
    message = await db(Message.objects.get)(body="typo")

    for change in (
        lambda: changes.edit_message(message, alice, "fixed"),
        lambda: changes.toggle_reaction(message, bob, "🎉"),
        lambda: changes.delete_message(message, alice),
    ):
        posted = await db(change)()
        assert await posted.sent()
        assert await alice_socket.receive() == posted.html == await bob_socket.receive()
    await alice_socket.assert_quiet()
    await bob_socket.assert_quiet()
    await carol_socket.assert_quiet()


@pytest.mark.django_db(transaction=True)
async def test_a_reaction_burst_is_one_render_per_change_whoever_watches(
    gather, lobby, alice, make_user, monkeypatch
):
    people = [await db(make_user)(f"fan{i}") for i in range(20)]
    watchers = await gather("lobby", alice, *people[:5])
    await db(services.post_message)(lobby, alice, "ship it")
    for socket in watchers:
        await socket.receive()
    message = await db(Message.objects.get)(body="ship it")
    renders = []
    real_render = services.render_fragment

    def counting_render(partial, **context):
        renders.append(partial)
        return real_render(partial, **context)

    monkeypatch.setattr(changes, "render_fragment", counting_render)

    for person in people:
        await db(changes.toggle_reaction)(message, person, "🎉")

    assert renders == ["message-change"] * 20
    for socket in watchers:
        frames = await socket.receive_frames(20)
        last = fragments.parse(frames[-1]).one("button", class_="reaction")
        assert last.attrs["data-count"] == "20"
    await watchers[0].assert_quiet()


@pytest.mark.django_db(transaction=True)
async def test_a_reconnecting_page_is_sent_the_changes_it_missed(connect, alice, bob, lobby):
    kept, edited, deleted = [
        await db(Message.objects.create)(room=lobby, author=alice, body=text)
        for text in ("kept", "typo", "oops")
    ]
    cursor = await db(last_seq)(lobby)
    await db(changes.edit_message)(edited, alice, "fixed")
    await db(changes.delete_message)(deleted, alice)
    await db(changes.toggle_reaction)(kept, alice, "👀")

    bob_socket = await connect(bob, "lobby", after=cursor)

    html = "".join(bob_socket.catch_up)
    replaced = {m.id: m for m in fragments.messages_in(html)}
    assert set(replaced) == {f"message-{m.pk}" for m in (kept, edited, deleted)}
    assert replaced[f"message-{edited.pk}"].one(class_="message-body").text == "fixed"
    assert "data-deleted" in replaced[f"message-{deleted.pk}"].attrs
    assert fragments.cursor_of(bob_socket.settled) == cursor + 3


@pytest.mark.django_db(transaction=True)
async def test_a_reply_sent_over_the_socket_quotes_its_message(gather, alice, bob, lobby):
    alice_socket, bob_socket = await gather("lobby", alice, bob)
    await db(services.post_message)(lobby, alice, "hello")
    await alice_socket.receive()
    await bob_socket.receive()
    hello = await db(Message.objects.get)(body="hello")

    await bob_socket.send_text(f'{{"body": "hi!", "reply_to": "{hello.pk}"}}')
    _, pushed = await bob_socket.receive_sent()

    quote = fragments.parse(pushed).one("blockquote", class_="message-quote")
    assert quote.attr("data-quote-of") == str(hello.pk)
    assert await alice_socket.receive() == pushed
    reply = await db(Message.objects.get)(body="hi!")
    assert reply.reply_to_id == hello.pk


def test_a_change_to_a_message_updates_every_quote_of_it_on_the_page(hello, alice, bob, lobby):
    services.submit_composer(lobby, bob, {"body": "answer", "reply_to": str(hello.pk)})

    edited = changes.edit_message(hello, alice, "hello")
    quotes = fragments.parse(edited.html).find_all("blockquote")
    assert [q.attrs["hx-swap-oob"] for q in quotes] == [f"outerHTML:[data-quote-of='{hello.pk}']"]
    assert "hello" in quotes[0].text

    deleted = changes.delete_message(hello, alice)
    (quote,) = fragments.parse(deleted.html).find_all("blockquote")
    assert quote.text == "The original message was deleted." and "hello" not in deleted.html
    # A page that was away gets the same with the tombstone.
    state = services.catch_up(lobby, hello.seq)
    assert "The original message was deleted." in "".join(frames_of(lobby, state))


def test_staff_see_earlier_versions_in_the_admin_and_cannot_rewrite_there(
    hello, alice, login, make_user
):
    changes.edit_message(hello, alice, "hello")
    staff = login(make_user("admin", is_staff=True, is_superuser=True))

    page = staff.get(f"/admin/rooms/message/{hello.pk}/change/").content.decode()

    assert "helo" in page and "hello" in page  # the earlier version, and the text now
    assert 'name="body"' not in page  # edits go through the chat, where pages learn of them
    assert staff.post(f"/admin/rooms/message/{hello.pk}/delete/").status_code == 403
