"""Search timings on a big room: `python -m bench.search [--rows N] [--database sqlite|postgres]`.

Makes a database of its own (SQLite: a file under a temporary directory; PostgreSQL: the
database `hypertalk_bench_search` on TEST_POSTGRES_URL's server, dropped first), migrates
it, seeds N messages (default 1,000,000) in one public room in bulk (SQLite: executemany
in one transaction, the FTS5 index rebuilt once at the end; PostgreSQL: COPY, the GIN
index made after), then times rooms/search.py's `search` (what `/search/` runs, without
the template) for a few queries: the median of 5 runs after one to warm up.

The texts are 8-16 words drawn from a vocabulary of 5,000 with a Zipf-like skew, so the
commonest words are in a large share of the messages and most are rare, plus marker
words at known rates: "needle" in 1 message in 100,000, "haystack" in 1 in 97.
"""

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

VOCABULARY = 5000
COMMON = ["deploy", "release", "meeting", "lunch", "build", "review", "coffee", "incident"]
PG_DATABASE = "hypertalk_bench_search"


def texts(rows: int, seed: int = 15) -> list[str]:
    rng = random.Random(seed)
    words = COMMON + [f"w{n}" for n in range(VOCABULARY - len(COMMON))]
    weights = [1 / (rank + 1) for rank in range(len(words))]
    cumulative = []
    total = 0.0
    for weight in weights:
        total += weight
        cumulative.append(total)
    out = []
    for i in range(rows):
        chosen = rng.choices(words, cum_weights=cumulative, k=rng.randint(8, 16))
        if i % 100_000 == 50_000:
            chosen.append("needle")
        if i % 97 == 7:
            chosen.append("haystack")
        out.append(" ".join(chosen))
    return out


def setup(database: str, directory: str) -> None:
    os.environ.setdefault("SECRET_KEY", "bench-search-only-not-a-secret")
    os.environ["DEBUG"] = "false"
    if database == "postgres":
        base = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
        server = base.rsplit("/", 1)[0]
        import psycopg

        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE}")
            admin.execute(f"CREATE DATABASE {PG_DATABASE}")
        os.environ["DATABASE_URL"] = f"{server}/{PG_DATABASE}"
    else:
        os.environ["DATABASE_URL"] = f"sqlite:///{directory}/search.sqlite3"
    os.environ["DJANGO_SETTINGS_MODULE"] = "site_config.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed(rows: int) -> tuple[Any, float]:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from rooms.models import Room

    User = get_user_model()
    people = []
    for name in ("reader", "ann", "ben", "cal", "dee"):
        user = User(username=name)
        user.set_unusable_password()
        user.save()
        people.append(user)
    room = Room.objects.create(slug="big", owner=people[0])
    start = datetime(2025, 11, 26, tzinfo=UTC)
    step = timedelta(days=365) / rows
    bodies = texts(rows)
    began = time.perf_counter()
    columns = "room_id, author_id, body, created_at, seq, changed_seq, mentioned"

    def row(i: int) -> tuple[Any, ...]:
        author = people[1 + i % 4].pk
        return (room.pk, author, bodies[i], start + step * i, i + 1, i + 1, "")

    if connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DROP INDEX rooms_message_search")
            raw = cursor.cursor
            with raw.copy(f"COPY rooms_message ({columns}) FROM STDIN") as copy:
                for i in range(rows):
                    copy.write_row(row(i))
            cursor.execute("UPDATE rooms_room SET last_seq = %s WHERE id = %s", [rows, room.pk])
        with connection.cursor() as cursor:  # (after the commit: no pending FK checks)
            cursor.execute(
                "CREATE INDEX rooms_message_search ON rooms_message USING gin (search_vector)"
            )
            cursor.execute("ANALYZE rooms_message")
    else:
        with transaction.atomic(), connection.cursor() as cursor:
            # The triggers off for the load, the index made once from the rows: what a
            # bulk import would do (the triggers are back before anything else runs).
            for kind in ("insert", "delete", "update"):
                cursor.execute(f"DROP TRIGGER rooms_message_fts_{kind}")
            for batch in range(0, rows, 50_000):
                cursor.executemany(
                    f"INSERT INTO rooms_message ({columns}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [row(i) for i in range(batch, min(rows, batch + 50_000))],
                )
            cursor.execute("INSERT INTO rooms_message_fts(rooms_message_fts) VALUES ('rebuild')")
            cursor.execute("UPDATE rooms_room SET last_seq = %s WHERE id = %s", [rows, room.pk])
        from rooms import search

        assert search.ensure_sqlite_triggers(connection) is True
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return people[0], time.perf_counter() - began


QUERIES = [
    ("a rare word (10 rows), newest", {"q": "needle"}),
    ("a 1% word, newest", {"q": "haystack"}),
    ("the commonest word, newest", {"q": "deploy"}),
    ("two common words, newest", {"q": "deploy lunch"}),
    ("a phrase, newest", {"q": '"deploy release"'}),
    ("a 1% word from one author", {"q": "haystack from:ann"}),
    ("a 1% word in one week", {"q": "haystack after:2026-03-01 before:2026-03-08"}),
    ("a rare word, best first", {"q": "needle", "order": "best"}),
    ("a 1% word, best first", {"q": "haystack", "order": "best"}),
    ("the commonest word, best first", {"q": "deploy", "order": "best"}),
]


def timed(user: Any, params: dict[str, str], runs: int = 5) -> tuple[float, int, dict[str, str]]:
    from urllib.parse import parse_qsl

    from rooms import search

    result = search.search(user, params, UTC)  # warm
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        result = search.search(user, params, UTC)
        times.append(time.perf_counter() - began)
    following = dict(parse_qsl(result.next_page)) if result.next_page else {}
    return statistics.median(times) * 1000, len(result.hits), following


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--keep", action="store_true", help="keep the PostgreSQL database (to EXPLAIN by hand)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        setup(args.database, directory)
        from django.db import connection

        reader, seconds = seed(args.rows)
        print(f"{connection.vendor}: seeded {args.rows:,} messages in {seconds:.1f} s", flush=True)
        print(f"{'query':<40} {'median ms':>10} {'hits':>5}")
        for label, params in QUERIES:
            ms, hits, following = timed(reader, params)
            print(f"{label:<40} {ms:>10.2f} {hits:>5}", flush=True)
            if following and "order" not in params:
                # Deeper: the page after the fifth, through the keyset cursors.
                for _ in range(4):
                    _, _, following = timed(reader, following, runs=1)
                ms, hits, _ = timed(reader, following)
                print(f"{'  ... its 6th page':<40} {ms:>10.2f} {hits:>5}", flush=True)
        connection.close()
    if args.database == "postgres" and not args.keep:
        import psycopg

        server = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            # (FORCE: the settings' connection pool still holds its connections.)
            admin.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
