"""Nothing lost or doubled when the channel layer fails between two processes.

Two Daphnes share PostgreSQL and Redis; Alice's browser is on one, Bob's on the other.
Redis stops while both post: each sees their own lines at once (stored, then shown to
the sender), and nobody sees the other's. When Redis is back every page must show every
stored message exactly once, in the room's order. With "the highest id on the page" as
the cursor, Bob's page skipped Alice's lines from the outage for good: his own, shown at
once, had higher ids.
"""

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from playwright.sync_api import Page

from e2e import servers
from e2e.chat import Chatter, expect_message, expect_socket, messages, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.multiprocess]

RECOVERY_TIMEOUT_MS = 20_000


@pytest.fixture
def two_processes(
    database_url: str, redis_server: servers.RedisProcess
) -> Iterator[list[servers.DaphneProcess]]:
    env = servers.server_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_server.url,
        STATIC_ROOT=servers.collected_static_root(),
        CHAT_LAYER_CHECK_SECONDS="0.5",
        CHAT_RATE_BURST="100",
    )
    servers.migrate(env)
    with servers.daphne(env) as one, servers.daphne(env) as two:
        yield [one, two]
        for server in (one, two):
            print(f"--- {server.log_path}\n" + "\n".join(server.log().splitlines()[-60:]))


def stored(database_url: str, slug: str) -> list[tuple[int, str, str]]:
    with psycopg.connect(database_url) as connection:
        return connection.execute(
            "SELECT m.id, u.username, m.body FROM rooms_message m "
            "JOIN rooms_room r ON r.id = m.room_id JOIN auth_user u ON u.id = m.author_id "
            "WHERE r.slug = %s ORDER BY m.seq",
            (slug,),
        ).fetchall()


def shown(page: Page) -> list[tuple[int, str, str]]:
    return [(m["id"], m["author"], m["body"]) for m in messages(page)]


def wait_for_exactly(page: Page, expected: list[tuple[int, str, str]]) -> None:
    try:
        wait_until(
            page, lambda: shown(page) == expected, "every stored message", RECOVERY_TIMEOUT_MS
        )
    except AssertionError:
        ids, wanted = [m[0] for m in shown(page)], [m[0] for m in expected]
        raise AssertionError(
            f"{page.url}: shown {ids}, stored {wanted}; missing {sorted(set(wanted) - set(ids))}"
        ) from None
    dom_ids = page.locator("#chat-log [id]").evaluate_all("els => els.map(el => el.id)")
    assert len(dom_ids) == len(set(dom_ids)), "an element id appears twice in the log"


def test_a_redis_outage_while_both_processes_post_loses_nothing_on_any_page(
    sign_up, two_processes, database_url, redis_server
):
    one, two = two_processes
    redis = redis_server
    slug = f"room-{uuid.uuid4().hex[:10]}"
    alice: Chatter = sign_up("alice", server=one)
    bob: Chatter = sign_up("bob", server=two)
    alice.open_room(slug)
    bob.open_room(slug)
    alice.send("before the outage")
    expect_message(bob.page, alice.username, "before the outage")

    redis.stop()
    for n in range(1, 4):  # interleaved: the room's order is a1 b1 a2 b2 a3 b3
        alice.send(f"alice during the outage {n}")
        expect_message(alice.page, alice.username, f"alice during the outage {n}")
        bob.send(f"bob during the outage {n}")
        expect_message(bob.page, bob.username, f"bob during the outage {n}")
    redis.start()  # same port

    everything = stored(database_url, slug)
    assert len(everything) == 7
    for page in (alice.page, bob.page):
        wait_for_exactly(page, everything)

    # And live delivery is back, across processes, with nothing doubled.
    bob.send("after the outage")
    expect_message(alice.page, bob.username, "after the outage", timeout=RECOVERY_TIMEOUT_MS)
    everything = stored(database_url, slug)
    for page in (alice.page, bob.page):
        wait_for_exactly(page, everything)
        expect_socket(page, "open")
