"""/healthz answered ahead of Django (site_config/healthz.py, the check in realtime/views.py),
through the real ASGI application (site_config/asgi.py), on the test database and the
in-memory layer."""

from typing import Any

import pytest
from channels.testing import HttpCommunicator

from site_config.asgi import application


async def ask(method: str, path: str, host: bytes = b"testserver") -> dict[str, Any]:
    communicator = HttpCommunicator(application, method, path, headers=[(b"host", host)])
    return dict(await communicator.get_response(timeout=5))


@pytest.mark.django_db(transaction=True)  # (the check's query runs in a thread of its own)
async def test_healthz_is_answered_ahead_of_django() -> None:
    response = await ask("GET", "/healthz")
    assert (response["status"], response["body"]) == (200, b"ok")
    headers = dict(response["headers"])
    assert headers[b"cache-control"].startswith(b"max-age=0, no-cache, no-store")
    assert headers[b"content-type"] == b"text/plain; charset=utf-8"
    # No middleware ran: Django would refuse a Host outside ALLOWED_HOSTS (400), and a
    # load balancer probing the process by its address sends one.
    assert (await ask("GET", "/healthz", host=b"10.0.0.7:8000"))["status"] == 200
    assert (await ask("GET", "/", host=b"10.0.0.7:8000"))["status"] == 400
    assert b"x-frame-options" not in headers  # (a Django middleware's header)


@pytest.mark.django_db(transaction=True)
async def test_head_gets_the_status_without_a_body() -> None:
    response = await ask("HEAD", "/healthz")
    assert (response["status"], response["body"]) == (200, b"")
    assert dict(response["headers"])[b"content-length"] == b"2"


@pytest.mark.django_db(transaction=True)
async def test_other_methods_and_paths_go_to_django() -> None:
    # Django's CSRF check refuses a POST without a token: it got there.
    assert (await ask("POST", "/healthz"))["status"] == 403
    # Django's SecurityMiddleware sends plain HTTP to HTTPS (as in production), /healthz
    # alone excepted (SECURE_REDIRECT_EXEMPT): any other path got there.
    for path in ("/healthz/", "/accounts/login/"):
        response = await ask("GET", path)
        assert response["status"] == 301, path
        headers = {name.lower(): value for name, value in response["headers"]}
        assert headers[b"location"] == f"https://testserver{path}".encode()


@pytest.mark.django_db(transaction=True)
async def test_a_failed_check_is_a_503_that_says_which(monkeypatch: pytest.MonkeyPatch) -> None:
    from realtime import sockets

    monkeypatch.setattr(sockets.layer_health, "healthy", False)
    monkeypatch.setattr(sockets.layer_health, "reason", "a fan-out task stopped")
    response = await ask("GET", "/healthz")
    assert response["status"] == 503
    assert response["body"] == b"channel layer unavailable: a fan-out task stopped"
