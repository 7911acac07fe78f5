"""PostgreSQL connections come from psycopg's pool (site_config/settings.py, DATABASES).

Under ASGI each request runs its sync code in a thread of its own; connections kept per
thread (CONN_MAX_AGE) were left open behind every such thread. The pool lends one per
request and takes it back. SQLite keeps its own settings (no pool there).
"""

import asyncio
import json
from typing import Any, cast

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections
from django.db.backends.postgresql.base import DatabaseWrapper
from django.test import AsyncClient

from site_config.tests.test_settings import refusal, start

SHOW_DATABASE = """
import json, django
django.setup()
from django.conf import settings
database = settings.DATABASES["default"]
print(json.dumps({
    "CONN_MAX_AGE": database["CONN_MAX_AGE"], "pool": database["OPTIONS"].get("pool"),
}))
"""
POSTGRES_URL = "postgres://chat@db.example:5432/chat"  # only parsed: nothing connects


def database_settings(**variables: str) -> dict[str, Any]:
    result = start("-c", SHOW_DATABASE, **variables)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_postgresql_uses_the_pool_and_no_persistent_connections() -> None:
    assert database_settings(DATABASE_URL=POSTGRES_URL) == {
        "CONN_MAX_AGE": 0,
        "pool": {"min_size": 2, "max_size": 10, "timeout": 10.0},
    }


def test_the_pool_s_size_and_wait_come_from_the_environment() -> None:
    assert database_settings(
        DATABASE_URL=POSTGRES_URL,
        DATABASE_POOL_MIN_SIZE="0",
        DATABASE_POOL_MAX_SIZE="4",
        DATABASE_POOL_TIMEOUT="2.5",
        CONN_MAX_AGE="600",  # not for pooled connections
    ) == {"CONN_MAX_AGE": 0, "pool": {"min_size": 0, "max_size": 4, "timeout": 2.5}}


def test_sqlite_keeps_its_persistent_connections() -> None:
    assert database_settings(DATABASE_POOL_MAX_SIZE="4") == {"CONN_MAX_AGE": 60, "pool": None}


def test_a_pool_smaller_than_its_minimum_stops_start_up() -> None:
    result = start(
        "-c",
        "import django; django.setup()",
        DATABASE_POOL_MIN_SIZE="5",
        DATABASE_POOL_MAX_SIZE="2",
    )
    assert refusal(result) == (
        "django.core.exceptions.ImproperlyConfigured: "
        "DATABASE_POOL_MAX_SIZE=2 is less than DATABASE_POOL_MIN_SIZE=5."
    )


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the pool is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
async def test_requests_under_asgi_borrow_pooled_connections(alice: Any) -> None:
    """Each request runs in a thread of its own; forty of them, ten at a time, open no more
    connections than the pool holds, and each gives its connection back."""
    pool = cast(DatabaseWrapper, connection).pool
    assert pool is not None
    client = AsyncClient()
    await client.aforce_login(alice)

    def lent() -> int:
        stats = pool.get_stats()
        return int(stats["pool_size"] - stats["pool_available"])

    lent_before, opened_before = lent(), pool.get_stats().get("connections_num", 0)
    try:
        for _ in range(4):
            responses = await asyncio.gather(
                *(client.get("/rooms/", secure=True) for _ in range(10))
            )
            assert [response.status_code for response in responses] == [200] * 10
        assert pool.get_stats()["connections_num"] - opened_before <= pool.get_stats()["pool_max"]
        assert lent() == lent_before
    finally:
        # aforce_login used the database from asgiref's worker thread: give its connection
        # back, or the test database could not be dropped at the end.
        await sync_to_async(connections.close_all)()
