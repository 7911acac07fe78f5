"""Every middleware can run on the event loop, and does what it did in a thread.

Under Daphne, Django builds its middleware chain for ASGI: a sync-only entry splits it, and
every request then crosses to a thread and back around that entry. The chain is checked
as Django builds it, and each of our own middleware is run both ways.
"""

import logging
from typing import Any

import pytest
from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.test import AsyncClient
from django.utils.module_loading import import_string

from rooms.models import Room


@pytest.mark.parametrize("path", settings.MIDDLEWARE)
def test_every_middleware_is_async_capable(path: str) -> None:
    assert getattr(import_string(path), "async_capable", False), f"{path} is sync-only"


def test_the_asgi_chain_is_async_from_end_to_end(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Django logs each adaptation (a thread hop per request) when DEBUG is on."""
    settings.DEBUG = True
    with caplog.at_level(logging.DEBUG, logger="django.request"):
        handler = ASGIHandler()
    assert [r.getMessage() for r in caplog.records if "adapted" in r.getMessage()] == []
    assert iscoroutinefunction(handler._middleware_chain)  # type: ignore[attr-defined]


def test_htmx_middleware_is_gone() -> None:
    """request.htmx is never read: the django_htmx app stays for its script tag only."""
    assert not [path for path in settings.MIDDLEWARE if "htmx" in path]
    assert "django_htmx" in settings.INSTALLED_APPS


@pytest.mark.django_db(transaction=True)
async def test_signed_in_pages_are_private_on_the_event_loop_too(alice: Any) -> None:
    await Room.objects.acreate(slug="lobby", owner=alice)
    client = AsyncClient()
    await client.aforce_login(alice)
    response = await client.get("/rooms/lobby/", secure=True)
    assert response.status_code == 200
    assert response["Cache-Control"] == "private, no-store"
    assert "Cookie" in response["Vary"]
    assert "Content-Security-Policy" in response


@pytest.mark.django_db(transaction=True)
async def test_a_signed_in_response_nobody_looked_the_user_up_for_is_private_too(
    alice: Any,
) -> None:
    """A 404 page never reads request.user: the middleware looks them up itself, without a
    synchronous query on the event loop (Django would refuse one)."""
    client = AsyncClient()
    await client.aforce_login(alice)
    response = await client.get("/no-such-page/", secure=True)
    assert response.status_code == 404
    assert response["Cache-Control"] == "private, no-store"


@pytest.mark.django_db(transaction=True)
async def test_anonymous_pages_are_left_as_they_are_on_the_event_loop() -> None:
    response = await AsyncClient().get("/no-such-page/", secure=True)
    assert response.status_code == 404
    assert "Cache-Control" not in response


@pytest.mark.parametrize("autorefresh", [False, True], ids=["collected", "debug-lookup"])
async def test_static_files_are_served_on_the_event_loop(settings: Any, autorefresh: bool) -> None:
    # Files from the finders, as nothing ran collectstatic here (a new client, a new chain).
    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = autorefresh
    response = await AsyncClient().get("/static/css/chat.css", secure=True)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    assert b"--message-accent" in response.getvalue()


def test_static_files_are_still_served_in_a_thread(settings: Any, client: Any) -> None:
    settings.WHITENOISE_USE_FINDERS = True
    response = client.get("/static/css/chat.css")
    assert response.status_code == 200
    assert b"--message-accent" in b"".join(response.streaming_content)
