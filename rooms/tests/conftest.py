from typing import Any

import pytest

from rooms.models import Room


@pytest.fixture
def lobby(alice: Any) -> Room:
    """A public room owned by alice."""
    return Room.objects.create(slug="lobby", owner=alice)


@pytest.fixture
def secret(alice: Any, bob: Any) -> Room:
    """A private room of alice's, with bob as a member."""
    room = Room.objects.create(slug="secret", owner=alice, visibility=Room.Visibility.PRIVATE)
    room.members.add(bob)
    return room


@pytest.fixture
def ops() -> Room:
    """A staff-only room."""
    return Room.objects.create(slug="ops", visibility=Room.Visibility.STAFF)


@pytest.fixture
def other_room() -> Room:
    return Room.objects.create(slug="other")


@pytest.fixture
def alice_client(login: Any, alice: Any) -> Any:
    """A logged-in HTTPS test client of alice's."""
    return login(alice)
