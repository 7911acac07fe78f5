from typing import Any

import pytest

from rooms.models import Room


@pytest.fixture
def lobby(alice: Any) -> Room:
    """A public room owned by alice."""
    return Room.objects.create(slug="lobby", owner=alice)
