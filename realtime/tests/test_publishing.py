"""realtime/publishing.py: after the commit, from the event loop, one failure policy."""

import time

import pytest
from django.db import transaction

import realtime
from conftest import memory_layer
from realtime import sockets
from realtime.layers import channel_layer

LAYER_DOWN = {
    "default": {
        "BACKEND": "realtime.layers.HubRedisPubSubChannelLayer",
        "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},  # nothing listens on port 1
    }
}


async def listening(group: str) -> str:
    channel = await channel_layer().new_channel()
    await channel_layer().group_add(group, channel)
    return channel


@pytest.mark.django_db(transaction=True)
async def test_a_database_call_publishes_from_the_loop_once_it_returns() -> None:
    channel = await listening("publishing-test.1")

    in_memory = memory_layer()

    def store_and_publish() -> tuple[realtime.Publication, bool]:
        with transaction.atomic():
            publication = realtime.publish_on_commit("publishing-test.1", "<p>1</p>", seq=7)
        # Committed, but not handed to the loop from this (the database) thread: the loop
        # is free meanwhile, and still nothing has been sent.
        time.sleep(0.2)
        return publication, bool(in_memory.channels.get(channel))

    publication, sent_while_in_the_thread = await realtime.database_call(store_and_publish)()

    assert sent_while_in_the_thread is False
    assert await publication is True
    event = await channel_layer().receive(channel)
    assert (event["html"], event["seq"]) == ("<p>1</p>", 7)


@pytest.mark.django_db(transaction=True)
async def test_nothing_leaves_from_a_database_call_whose_transaction_rolls_back() -> None:
    channel = await listening("publishing-test.2")

    def roll_back() -> None:
        with transaction.atomic():
            realtime.publish_on_commit("publishing-test.2", "<p>never</p>")
            transaction.set_rollback(True)

    await realtime.database_call(roll_back)()

    await realtime.publish("publishing-test.2", "<p>marker</p>")
    assert (await channel_layer().receive(channel))["html"] == "<p>marker</p>"


async def test_a_failed_publish_marks_the_layer_failed_and_says_so(settings) -> None:
    settings.CHANNEL_LAYERS = LAYER_DOWN
    assert await realtime.publish("publishing-test.3", "<p>lost</p>") is False
    assert not sockets.layer_health.healthy
    assert realtime.health() is not None
