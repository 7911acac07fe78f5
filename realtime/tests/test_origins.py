"""A socket's Origin must be this site's exact origin (realtime/origins.py).

Each handshake goes through the whole application (site_config.asgi), logged in as alice,
to a room she may enter: only the Origin check can refuse it. A real browser on another
port is in e2e/test_origins.py.
"""

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connections

from conftest import logged_in
from rooms import presence
from rooms.models import Room

Handshake = Callable[..., Awaitable[tuple[bool, WebsocketCommunicator]]]


@pytest.fixture
def lobby(alice: Any) -> Room:
    return Room.objects.create(slug="lobby", owner=alice)


@pytest.fixture
async def handshake(transactional_db: None, alice: Any, lobby: Room) -> AsyncIterator[Handshake]:
    """`accepted, communicator = await handshake(host=..., origin=..., scheme=...)`."""
    client = await sync_to_async(logged_in)(alice)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    opened: list[WebsocketCommunicator] = []

    async def _handshake(
        *, host: str | None = "localhost", origin: str | list[str] | None, scheme: str = "", **extra
    ) -> tuple[bool, WebsocketCommunicator]:
        from site_config.asgi import application

        headers = [(b"cookie", cookie.encode())]
        if host is not None:
            headers.append((b"host", host.encode()))
        for value in [origin] if isinstance(origin, str) else origin or []:
            headers.append((b"origin", value.encode()))
        headers += [
            (name.replace("_", "-").encode(), value.encode()) for name, value in extra.items()
        ]
        communicator = WebsocketCommunicator(application, "/ws/rooms/lobby/", headers=headers)
        if scheme:
            communicator.scope["scheme"] = scheme
        opened.append(communicator)
        accepted, _ = await communicator.connect(timeout=5)
        if not accepted:  # refused before accepting: nothing of the room was sent
            assert await communicator.receive_nothing(0.05)
        return accepted, communicator

    yield _handshake
    for communicator in opened:
        await communicator.disconnect()
    await presence.drain()  # leaves are settled with the database too
    await sync_to_async(connections.close_all)()


# The site's own origin --------------------------------------------------------------------


@pytest.mark.parametrize(
    "host, origin",
    [
        ("localhost", "http://localhost"),
        ("127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("[::1]:8000", "http://[::1]:8000"),
    ],
)
async def test_the_sites_own_origin_is_accepted(handshake, host, origin) -> None:
    accepted, _ = await handshake(host=host, origin=origin)
    assert accepted


@pytest.mark.parametrize(
    "host, origin",
    [
        ("127.0.0.1:8000", "http://127.0.0.1:9999"),  # another port of the same host
        ("127.0.0.1:8000", "http://127.0.0.1"),  # the same host on its default port
        ("localhost", "http://localhost:8000"),
        ("localhost:8000", "http://localhost"),
        ("127.0.0.1:8000", "http://localhost:8000"),  # another allowed host
        ("localhost", "https://localhost"),  # another scheme
        ("localhost", "http://localhost/"),  # not an origin at all
        ("localhost", "null"),
    ],
)
async def test_another_port_scheme_or_host_is_refused(handshake, host, origin, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="realtime.origins"):
        accepted, _ = await handshake(host=host, origin=origin)
    assert not accepted
    assert f"Origin {origin!r} is neither this site" in caplog.text


async def test_no_origin_or_two_of_them_are_refused(handshake) -> None:
    assert not (await handshake(origin=None))[0]
    assert not (await handshake(origin=["http://localhost", "http://localhost"]))[0]


async def test_a_host_outside_allowed_hosts_is_refused_even_from_itself(handshake, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="realtime.origins"):
        accepted, _ = await handshake(host="evil.example", origin="http://evil.example")
    assert not accepted
    assert "not in ALLOWED_HOSTS" in caplog.text


async def test_no_host_at_all_is_refused(handshake) -> None:
    """No Host and no server address (HTTP/1.0 through a bare test harness): no origin of
    its own to compare with, so only a trusted origin could pass, and it is not one."""
    accepted, _ = await handshake(host=None, origin="http://localhost")
    assert not accepted


async def test_wss_is_https(handshake) -> None:
    assert (await handshake(origin="https://localhost", scheme="wss"))[0]
    assert not (await handshake(origin="http://localhost", scheme="wss"))[0]


# CSRF_TRUSTED_ORIGINS --------------------------------------------------------------------


async def test_a_trusted_origin_is_accepted_exactly(handshake, settings) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://www.example.com"]
    assert (await handshake(origin="https://www.example.com"))[0]
    assert not (await handshake(origin="http://www.example.com"))[0]
    assert not (await handshake(origin="https://www.example.com:8443"))[0]
    assert not (await handshake(origin="https://example.com"))[0]


async def test_a_trusted_wildcard_covers_subdomains_of_its_scheme(handshake, settings) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.com"]
    assert (await handshake(origin="https://chat.example.com"))[0]
    assert (await handshake(origin="https://a.b.example.com"))[0]
    assert not (await handshake(origin="http://chat.example.com"))[0]
    assert not (await handshake(origin="https://chat.example.com.evil.net"))[0]
    assert not (await handshake(origin="https://evilexample.com"))[0]


# Behind a proxy (BEHIND_PROXY sets these two) --------------------------------------------

PROXIED = {"x_forwarded_host": "chat.example.com", "x_forwarded_proto": "https"}


@pytest.fixture
def behind_proxy(settings) -> None:
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "chat.example.com"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.USE_X_FORWARDED_HOST = True


async def test_behind_a_proxy_the_forwarded_scheme_and_host_count(handshake, behind_proxy) -> None:
    # The proxy speaks plain ws to us on an internal address.
    accepted, _ = await handshake(
        host="127.0.0.1:8000", origin="https://chat.example.com", **PROXIED
    )
    assert accepted
    accepted, _ = await handshake(
        host="127.0.0.1:8000",
        origin="http://chat.example.com",  # the page was not on https
        **PROXIED,
    )
    assert not accepted
    accepted, _ = await handshake(
        host="127.0.0.1:8000",
        origin="https://chat.example.com",
        x_forwarded_host="chat.example.com",
        x_forwarded_proto="http",  # the client came over plain http
    )
    assert not accepted


async def test_without_the_proxy_setting_forwarded_headers_are_not_trusted(handshake) -> None:
    accepted, _ = await handshake(host="localhost", origin="https://chat.example.com", **PROXIED)
    assert not accepted
    accepted, _ = await handshake(host="localhost", origin="https://localhost", **PROXIED)
    assert not accepted  # X-Forwarded-Proto alone does not make it https
