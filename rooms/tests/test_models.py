import pytest
from django.core.exceptions import ValidationError

from rooms.models import Message, PrivateMessage, Room

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("slug", ["a", "9", "general", "dev-ops", "a1-b2-c3", "x" * 50])
def test_room_slugs_that_are_lowercase_letters_digits_and_inner_hyphens_are_valid(
    slug: str,
) -> None:
    Room(slug=slug).full_clean()


@pytest.mark.parametrize(
    "slug", ["", "General", "-a", "a-", "a_b", "a.b", "a b", "é", "room.1", "x" * 51]
)
def test_other_room_slugs_are_invalid(slug: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Room(slug=slug).full_clean()
    assert "slug" in raised.value.message_dict


def test_a_room_is_public_by_default_and_addressed_by_its_slug() -> None:
    room = Room.objects.create(slug="general")
    assert room.visibility == Room.Visibility.PUBLIC
    assert str(room) == "general"
    assert room.get_absolute_url() == "/rooms/general/"


def test_messages_are_numbered_in_their_rooms_sequence(alice) -> None:
    room = Room.objects.create(slug="general")
    other = Room.objects.create(slug="other")
    first = Message.objects.create(room=room, author=alice, body="one")
    Message.objects.create(room=other, author=alice, body="elsewhere")
    last = Message.objects.create(room=room, author=alice, body="two")
    assert list(room.messages.all()) == [first, last]
    assert (first.seq, last.seq) == (1, 2)
    assert str(first) == "alice in general: one"


def test_private_message_str_names_both_ends(alice, bob) -> None:
    pm = PrivateMessage.objects.create(sender=alice, recipient=bob, body="psst")
    assert str(pm) == "alice → bob: psst"


def test_deleting_a_room_deletes_its_messages(alice) -> None:
    room = Room.objects.create(slug="general")
    Message.objects.create(room=room, author=alice, body="one")
    room.delete()
    assert Message.objects.count() == 0


def test_a_rooms_owner_leaving_keeps_the_room(alice) -> None:
    room = Room.objects.create(slug="general", owner=alice)
    alice.delete()
    room.refresh_from_db()
    assert room.owner is None
