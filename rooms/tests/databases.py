"""Markers for tests of what only one of the databases does."""

import pytest
from django.db import connection

# Two writers at once, the second waiting on the first's uncommitted row.
concurrent_writers = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="PostgreSQL's case (SQLite takes its one write lock at BEGIN IMMEDIATE, and its "
    "in-memory test database refuses a second writer instead of making it wait)",
)
