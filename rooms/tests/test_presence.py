import pytest
from django.utils import timezone

from rooms import presence
from rooms.models import Connection, Room

pytestmark = pytest.mark.django_db

LONG_AGO = timezone.timedelta(hours=1)


@pytest.fixture
def room() -> Room:
    return Room.objects.create(slug="general")


def age(socket_id: str) -> None:
    """Make a socket's row look like its process stopped heartbeating an hour ago."""
    Connection.objects.filter(socket_id=socket_id).update(seen_at=timezone.now() - LONG_AGO)


def test_the_first_socket_brings_a_user_online_and_the_second_does_not(room, alice) -> None:
    assert presence.arrive(room, alice, "tab-1") is True
    assert presence.arrive(room, alice, "tab-2") is False
    assert Connection.objects.filter(user=alice, server=presence.SERVER_ID).count() == 2


def test_being_online_in_one_room_does_not_count_in_another(room, alice) -> None:
    other = Room.objects.create(slug="other")
    presence.arrive(room, alice, "tab-1")
    assert presence.arrive(other, alice, "tab-2") is True


def test_only_the_last_socket_to_close_takes_a_user_offline(room, alice) -> None:
    presence.arrive(room, alice, "tab-1")
    presence.arrive(room, alice, "tab-2")
    assert presence.depart("tab-1") is False
    assert presence.depart("tab-2") is True
    assert not Connection.objects.exists()


def test_departing_an_unknown_socket_changes_nothing(room, alice) -> None:
    presence.arrive(room, alice, "tab-1")
    assert presence.depart("never-seen") is False
    assert Connection.objects.count() == 1


def test_a_stale_socket_does_not_keep_a_user_online(room, alice) -> None:
    presence.arrive(room, alice, "tab-1")
    age("tab-1")
    assert presence.arrive(room, alice, "tab-2") is True


def test_heartbeat_refreshes_this_process_rows_and_reaps_dead_ones(room, alice, bob) -> None:
    presence.arrive(room, alice, "mine")
    Connection.objects.create(
        socket_id="dead-process", room=room, user=bob, server="gone:1",
        seen_at=timezone.now() - LONG_AGO,
    )  # fmt: skip
    age("mine")  # ours is old too, but this process is alive: the heartbeat renews it

    departures = presence.heartbeat()

    assert [(d.room, d.user) for d in departures] == [(room, bob)]
    assert list(Connection.objects.values_list("socket_id", flat=True)) == ["mine"]
    assert Connection.objects.get().seen_at > timezone.now() - timezone.timedelta(minutes=1)


def test_heartbeat_reports_no_departure_for_a_user_still_online_elsewhere(room, alice) -> None:
    presence.arrive(room, alice, "mine")
    Connection.objects.create(
        socket_id="dead-process", room=room, user=alice, server="gone:1",
        seen_at=timezone.now() - LONG_AGO,
    )  # fmt: skip
    assert presence.heartbeat() == []
    assert Connection.objects.count() == 1


def test_forget_server_drops_only_this_process_rows(room, alice, bob) -> None:
    presence.arrive(room, alice, "mine")
    Connection.objects.create(
        socket_id="theirs", room=room, user=bob, server="other:1", seen_at=timezone.now()
    )
    assert presence.forget_server() == 1
    assert list(Connection.objects.values_list("socket_id", flat=True)) == ["theirs"]
