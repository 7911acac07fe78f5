"""Each message's catch-up HTML is rendered once per version and kept (services.RenderedMessages):
pages coming back from different cursors share the renders, never a stale one."""

from typing import Any

from django.utils import timezone

from rooms import changes, services
from rooms.models import Message, Room
from rooms.tests import fragments


def frames_of(room: Room, after: int) -> str:
    state = services.catch_up(room, after)
    frames, position = services.catch_up_frames(room, state)
    html = [frame for frame, _ in frames]
    while position is not None:
        more, position = services.catch_up_frames(room, state, position)
        html += [frame for frame, _ in more]
    return "".join(html)


def articles(html: str) -> dict[str | None, fragments.Element]:
    """Each message's element in `html` (its attributes and content), by id."""
    return {article.id: article for article in fragments.messages_in(html)}


def fresh(message: Message, partial: str = "message") -> str:
    """`message` rendered now from its row, as no catch-up kept it."""
    reloaded = services._shown(message.room).get(pk=message.pk)
    services.attach_reactions([reloaded])
    return services.render_fragment(partial, message=reloaded)


def test_a_kept_render_is_the_fresh_render(lobby, alice, bob):
    plain = Message.objects.create(room=lobby, author=alice, body="plain *text* <b>")
    reply = services.post_message(lobby, bob, "answer", reply_to=plain)
    changes.toggle_reaction(plain, bob, "👍")

    frames_of(lobby, 0)  # renders and keeps both
    kept = frames_of(lobby, 0)  # from what was kept

    (replied,) = Message.objects.exclude(pk=plain.pk)
    assert reply.html and articles(kept) == articles(fresh(plain) + fresh(replied))


def test_pages_at_different_cursors_render_each_message_once(lobby, alice, renders):
    messages = [Message.objects.create(room=lobby, author=alice, body=str(i)) for i in range(12)]

    every_page = [frames_of(lobby, after) for after in range(len(messages))]  # 12 cursors

    assert renders["message"] == len(messages)
    for after, html in enumerate(every_page):
        assert fragments.message_seqs(html) == [m.seq for m in messages[after:]]
    # Each frame is still assembled by its partial, per page.
    assert renders["catch-up"] == len(messages)


def test_an_edit_a_reaction_and_a_deletion_are_never_served_stale(lobby, alice, bob):
    message = Message.objects.create(room=lobby, author=alice, body="typo")
    seen = services.room_cursor(lobby)  # a page that showed it
    assert "typo" in frames_of(lobby, 0)

    changes.edit_message(message, alice, "fixed")
    new_to_the_page, changed_for_it = frames_of(lobby, 0), frames_of(lobby, seen)
    assert "typo" not in new_to_the_page + changed_for_it
    assert "fixed" in new_to_the_page and "fixed" in changed_for_it

    changes.toggle_reaction(message, bob, "🎉")
    for html in (frames_of(lobby, 0), frames_of(lobby, seen)):
        (article,) = fragments.messages_in(html)
        assert article.one("button", class_="reaction").attrs["data-emoji"] == "🎉"

    changes.delete_message(message, alice)
    assert frames_of(lobby, 0) == ""  # (a page that never saw it need not)
    (article,) = fragments.messages_in(frames_of(lobby, seen))
    assert "data-deleted" in article.attrs and "fixed" not in article.text


def test_a_reply_is_rendered_again_when_what_it_quotes_changes(lobby, alice, bob):
    original = Message.objects.create(room=lobby, author=alice, body="the original")
    services.post_message(lobby, bob, "an answer", reply_to=original)
    after_original = original.seq
    assert "the original" in frames_of(lobby, after_original)  # the reply's quote

    changes.edit_message(original, alice, "the original, reworded")
    assert "reworded" in frames_of(lobby, after_original)

    changes.delete_message(Message.objects.get(pk=original.pk), alice)
    reply = fragments.messages_in(frames_of(lobby, after_original))[0]
    assert "The original message was deleted." in reply.text and "reworded" not in reply.text


def test_the_zone_a_catch_up_is_rendered_in_is_part_of_the_key(lobby, alice):
    Message.objects.create(room=lobby, author=alice, body="when?")
    in_utc = frames_of(lobby, 0)
    with timezone.override("Asia/Kolkata"):  # +05:30: every time differs
        in_kolkata = frames_of(lobby, 0)
    assert in_utc != in_kolkata and "IST" in in_kolkata
    assert frames_of(lobby, 0) == in_utc


def test_what_is_kept_is_bounded_and_the_least_recently_sent_goes_first(lobby, alice, renders):
    messages = [Message.objects.create(room=lobby, author=alice, body=str(i)) for i in range(5)]
    kept = services.RenderedMessages(size=3)

    kept.render(messages[:3], "message")
    kept.render(messages[:1], "message")  # the first is sent again: now the newest
    kept.render(messages[3:], "message")  # two more: the second and third go

    assert len(kept) == 3 and renders["message"] == 5
    kept.render([messages[0], messages[3], messages[4]], "message")
    assert renders["message"] == 5  # all three still kept
    kept.render(messages[1:2], "message")
    assert renders["message"] == 6 and len(kept) == 3


def test_pages_coming_back_from_one_place_share_how_far_behind_they_are(
    lobby, alice, bob, django_assert_max_num_queries
):
    """entering.arrive_many reckons a catch-up's state once per room, cursor and place,
    across batches; a change (a new room sequence number) is reckoned afresh."""
    from rooms import entering

    for i in range(5):
        Message.objects.create(room=lobby, author=alice, body=str(i))
    entering.reset()

    def arrive(user: Any, socket_id: str, after: int = 2) -> services.CatchUp:
        (arrived,) = entering.arrive_many(
            [entering.Arrival(lobby, user, socket_id, after=after, have=frozenset())]
        )
        return arrived.state

    first = arrive(alice, "s:1")
    assert (first.after, first.missed) == (2, 3)
    with django_assert_max_num_queries(20) as counted:
        again = arrive(bob, "s:2")
    assert again == first
    counts = [q["sql"] for q in counted.captured_queries if "COUNT" in q["sql"].upper()]
    assert not [sql for sql in counts if "rooms_message" in sql]  # (no messages counted)

    message = Message.objects.get(room=lobby, seq=4)
    changes.edit_message(message, alice, "edited")  # a change: the room's cursor moves on
    after_edit = arrive(bob, "s:3")
    assert after_edit.cursor == services.room_cursor(lobby) > first.cursor
    assert after_edit.missed == 3  # seq 3, 4 (edited) and 5, each once
