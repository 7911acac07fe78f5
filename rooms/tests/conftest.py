from typing import Any

import pytest

from rooms.models import Room


@pytest.fixture(autouse=True)
def _environment(chat_test_environment: None) -> None:
    """Every test here runs in the shared test environment (root conftest.py)."""


@pytest.fixture
def lobby(alice: Any) -> Room:
    """A public room owned by alice."""
    return Room.objects.create(slug="lobby", owner=alice)
