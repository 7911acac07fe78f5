"""Nothing lost, nothing doubled: the cursor a page catches up from, on every connect.

A page's position is the room's sequence number up to which it has everything
(#chat-cursor, moved by the server), plus what it holds past a gap (?have=). Every
connect gets what changed after it, then the cursor and the online list.
"""

import threading

import pytest
from channels.db import database_sync_to_async as db
from django.db import close_old_connections, connection, transaction

import realtime
from rooms import presence, services
from rooms.models import Message, Room
from rooms.tests import fragments
from rooms.tests.databases import concurrent_writers


def bodies(html: str) -> list[str]:
    return [article.one(class_="message-body").text for article in fragments.messages_in(html)]


def bodies_of(element) -> list[str]:
    return [article.find(class_="message-body").text for article in element.find_all("article")]


async def post(room: Room, author, *texts: str) -> list[services.Posted]:
    return [await db(services.post_message)(room, author, text) for text in texts]


async def test_a_reconnecting_page_gets_exactly_what_it_missed_once(
    gather, connect, alice, bob, lobby
):
    (bob_socket,) = await gather("lobby", bob)
    *_, last = await post(lobby, bob, "message 1", "message 2", "message 3")
    await bob_socket.receive_frames(3)

    alice_socket = await connect(alice, "lobby", after=1)

    assert [bodies(frame) for frame in alice_socket.catch_up] == [["message 2", "message 3"]]
    assert fragments.message_seqs(alice_socket.catch_up[0]) == [2, 3]
    assert fragments.cursor_of(alice_socket.settled) == 3
    await alice_socket.expect_presence("alice", "joined")
    await bob_socket.expect_presence("alice", "joined")

    # The live copy of a message the catch-up held (stored just before this socket joined
    # the room's group, broadcast just after) is not sent again...
    await realtime.publish(services.room_group(lobby.pk), last.html, seq=3)
    assert await bob_socket.receive() == last.html
    # ...so the next frame is the next message.
    (posted,) = await post(lobby, bob, "message 4")
    assert await alice_socket.receive() == posted.html


async def test_what_the_page_holds_past_a_gap_is_not_sent_again(connect, alice, bob, lobby):
    # Alice's page has 1-2 and her own 5 (shown at once while the live stream was down);
    # 3 and 4 (bob's) never reached it. Counting the highest id on the page as the cursor
    # skipped 3 and 4 for good.
    await post(lobby, bob, "1", "2", "3", "4")
    await post(lobby, alice, "5")
    await post(lobby, bob, "6")
    fifth = await db(Message.objects.get)(room=lobby, seq=5)

    socket = await connect(alice, "lobby", after=2, query="have=5")

    (frame,) = socket.catch_up
    assert bodies(frame) == ["3", "4", "6"]
    before_fifth, at_the_end = fragments.parse(frame).top_level
    # 3 and 4 go where they belong, before the 5 the page shows; 6 after everything.
    assert before_fifth.attrs["hx-swap-oob"] == f"beforebegin:#message-{fifth.pk}"
    assert bodies_of(before_fifth) == ["3", "4"]
    assert (at_the_end.id, at_the_end.attrs["hx-swap-oob"]) == ("chat-live", "beforeend")
    assert bodies_of(at_the_end) == ["6"]
    assert fragments.cursor_of(socket.settled) == 6


async def test_a_cursor_past_the_end_is_moved_back_and_live_messages_still_come(
    connect, alice, bob, lobby
):
    await post(lobby, bob, "1", "2")
    socket = await connect(alice, "lobby", after=10**15)
    assert socket.catch_up == []
    assert fragments.cursor_of(socket.settled) == 2
    await socket.expect_presence("alice", "joined")

    (posted,) = await post(lobby, bob, "3")
    assert await socket.receive() == posted.html


@pytest.mark.parametrize("query", ["after=", "after=x", "after=1.5", "after=-4", "after=²"])
async def test_a_malformed_cursor_counts_as_the_start(connect, alice, lobby, query):
    await post(lobby, alice, "old")
    socket = await connect(alice, "lobby", query=f"{query}&have=1x,,²,-1,{'9' * 40}")
    assert [bodies(frame) for frame in socket.catch_up] == [["old"]]
    assert fragments.cursor_of(socket.settled) == 1


async def test_a_page_that_saw_the_latest_message_gets_no_catch_up(connect, alice, lobby):
    await post(lobby, alice, "seen")
    socket = await connect(alice, "lobby", after=1)
    assert socket.catch_up == []
    assert fragments.cursor_of(socket.settled) == 1


async def test_a_long_catch_up_comes_whole_in_frames_daphne_can_send(
    settings, connect, alice, bob, lobby
):
    # 120 bodies that escape to 6x their length: ~2.9 MB in all, over Daphne's 1 MiB
    # outgoing limit. Each frame stays far under it, and nothing is lost or reordered.
    settings.CHAT_SOCKET_MAX_BUFFERED_BYTES = 16 * 1024 * 1024  # a reader that keeps up
    for _ in range(120):
        await db(Message.objects.create)(room=lobby, author=bob, body='"' * 4000)

    socket = await connect(alice, "lobby", after=0)

    assert all(len(frame.encode()) < 512 * 1024 for frame in socket.catch_up)
    assert [s for frame in socket.catch_up for s in fragments.message_seqs(frame)] == list(
        range(1, 121)
    )
    assert fragments.cursor_of(socket.settled) == 120


async def test_a_catch_up_of_more_bytes_than_a_slow_reader_may_hold_ends_in_a_reload_notice(
    connect, alice, bob, lobby
):
    # Sent whole, ~2.9 MB could pass the 1 MiB a socket may have unread
    # (CHAT_SOCKET_MAX_BUFFERED_BYTES) and get it dropped, and its reconnect would ask for
    # the same again: it gets what fits in half of that, in order, then the notice.
    for _ in range(120):
        await db(Message.objects.create)(room=lobby, author=bob, body='"' * 4000)

    socket = await connect(alice, "lobby", after=0)

    *frames, notice = socket.catch_up
    sent = [s for frame in frames for s in fragments.message_seqs(frame)]
    assert sent == list(range(1, len(sent) + 1)) and 0 < len(sent) < 120
    assert sum(len(frame.encode()) for frame in frames) <= 512 * 1024
    gap = fragments.parse(notice).one(class_="chat-gap")
    assert f"{120 - len(sent)} messages arrived or changed while you were away" in gap.text
    assert fragments.cursor_of(socket.settled) == 120


async def test_a_catch_up_past_the_limit_tells_the_page_to_reload(
    settings, connect, alice, bob, lobby
):
    # It was the oldest 500, silently, with everything newer skipped.
    settings.CHAT_CATCHUP_LIMIT = 5
    await post(lobby, bob, *(str(n) for n in range(1, 9)))

    socket = await connect(alice, "lobby", after=1)

    (notice,) = socket.catch_up
    assert fragments.messages_in(notice) == []
    gap = fragments.parse(notice).one(class_="chat-gap")
    assert "7 messages arrived or changed while you were away" in gap.text
    assert gap.one("a").attrs["href"] == "/rooms/lobby/"
    assert fragments.cursor_of(socket.settled) == 8
    await socket.expect_presence("alice", "joined")
    (posted,) = await post(lobby, bob, "9")  # and the page stays live from there
    assert await socket.receive() == posted.html


async def test_every_connect_brings_the_online_list_not_only_reconnects(connect, alice, bob, lobby):
    # Bob's socket opened (and his "joined" went out) after Alice's page was rendered
    # but before her socket joined the room: only the list at connect can tell her.
    await db(presence.arrive)(lobby, bob, "bobs-socket-elsewhere")

    socket = await connect(alice, "lobby", after=0)

    assert fragments.online_usernames(socket.settled) == ["alice", "bob"]


# The sequence itself --------------------------------------------------------------------


@concurrent_writers
@pytest.mark.django_db(transaction=True)
def test_a_number_is_taken_under_the_rooms_lock_so_numbers_commit_in_order(alice) -> None:
    """On PostgreSQL ids are taken at insert and may commit out of order (a reader saw 12
    before 11 existed). A room's numbers are taken under its row lock, held to commit:
    a second writer waits, so nobody can see N without N-1."""
    room = Room.objects.create(slug="busy")
    first_taken, first_may_commit, second_done = (threading.Event() for _ in range(3))
    seqs: dict[str, int] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                seqs["first"] = Message.objects.create(room=room, author=alice, body="1").seq
                first_taken.set()
                first_may_commit.wait(10)
        finally:
            connection.close()

    def second() -> None:
        first_taken.wait(10)
        try:
            seqs["second"] = Message.objects.create(room=room, author=alice, body="2").seq
            second_done.set()
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    assert first_taken.wait(10)
    # The second writer is blocked on the room's row until the first commits.
    assert not second_done.wait(0.5)
    assert not Message.objects.filter(room=room).exists()
    first_may_commit.set()
    for thread in threads:
        thread.join(10)
    close_old_connections()

    assert seqs == {"first": 1, "second": 2}
    assert list(Message.objects.filter(room=room).values_list("seq", flat=True)) == [1, 2]
