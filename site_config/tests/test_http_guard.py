"""Request bodies capped before they are read (site_config/http_guard.py).

The ASGI guard, through the whole application (site_config.asgi) as any ASGI server would
drive it; the Daphne patch under a real Daphne is in e2e/test_http_limits.py.
"""

import pytest
from asgiref.testing import ApplicationCommunicator

from realtime.tests.versions import another_version_tested, assert_allowed, assert_refused, keep
from site_config import http_guard
from site_config.tests.asgi_http import TIMEOUT, http_scope, read_reply, request

LIMIT = 64 * 1024  # small, so that a test crosses it without holding megabytes


@pytest.fixture(autouse=True)
def _small_limit(settings) -> None:
    settings.CHAT_MAX_REQUEST_BYTES = LIMIT


def login_post(**headers: bytes) -> ApplicationCommunicator:
    from site_config.asgi import application

    scope = http_scope(
        "POST",
        "/accounts/login/",
        headers=[
            (b"content-type", b"application/x-www-form-urlencoded"),
            *((name.replace("_", "-").encode(), value) for name, value in headers.items()),
        ],
    )
    return ApplicationCommunicator(application, scope)


async def test_a_declared_length_over_the_cap_is_refused_before_any_body_is_sent() -> None:
    communicator = login_post(content_length=str(256 * 1024 * 1024).encode())
    # Not one http.request message is sent: the answer cannot have needed the body.
    reply = await read_reply(communicator)
    assert reply.status == 413
    assert reply.headers[b"content-type"] == b"text/plain; charset=utf-8"
    assert reply.text == (
        "413 Content Too Large: this server accepts request bodies of at most 64 KiB.\n"
    )
    await communicator.wait(TIMEOUT)


async def test_a_body_without_a_length_is_cut_at_the_cap() -> None:
    communicator = login_post()  # chunked: no Content-Length, counted as it comes
    chunk = b"x" * (16 * 1024)
    for _ in range(LIMIT // len(chunk)):  # exactly the limit: still nothing answered
        await communicator.send_input({"type": "http.request", "body": chunk, "more_body": True})
    assert await communicator.receive_nothing(0.2)
    await communicator.send_input({"type": "http.request", "body": b"y", "more_body": True})
    reply = await read_reply(communicator)
    assert reply.status == 413
    assert "at most 64 KiB" in reply.text
    # Django was told the client left, and ended without another word.
    await communicator.wait(TIMEOUT)
    assert await communicator.receive_nothing(0.1)


async def test_a_body_within_the_cap_reaches_django() -> None:
    body = b"username=alice&password=" + b"p" * (LIMIT - 100)
    reply = await request(
        "POST",
        "/accounts/login/",
        body=body,
        headers=[
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", str(len(body)).encode()),
        ],
    )
    assert reply.status == 403  # Django's CSRF check answered: the body got through
    assert "CSRF" in reply.text


async def test_a_length_that_is_not_a_number_is_a_400() -> None:
    communicator = login_post(content_length=b"12abc")
    reply = await read_reply(communicator)
    assert reply.status == 400
    assert reply.text == "400 Bad Request: the Content-Length header is not a number.\n"


async def test_a_request_the_application_answers_early_is_not_interfered_with() -> None:
    """The guard only answers 413 when the application has not started its own answer."""
    sent = []

    async def app(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await receive()  # the body crosses the cap here
        sent.append(await receive())
        await send({"type": "http.response.body", "body": b"done"})

    communicator = ApplicationCommunicator(
        http_guard.RequestGuard(app), http_scope("POST", "/upload/")
    )
    await communicator.send_input(
        {"type": "http.request", "body": b"x" * (LIMIT + 1), "more_body": True}
    )
    start = await communicator.receive_output(TIMEOUT)
    assert start["status"] == 200
    body = await communicator.receive_output(TIMEOUT)
    assert body["body"] == b"done"
    assert sent == [{"type": "http.disconnect"}]  # it was told the body ended there


def test_sizes_read_as_people_write_them() -> None:
    assert http_guard.readable_size(2 * 1024 * 1024) == "2 MiB"
    assert http_guard.readable_size(64 * 1024) == "64 KiB"
    assert http_guard.readable_size(1500) == "1,500 bytes"


# The Daphne patch's version guard (realtime/upstream.py) --------------------------------


def test_an_untested_daphne_refuses_to_start(monkeypatch, settings) -> None:
    from daphne.http_protocol import WebRequest

    settings.CHAT_ALLOW_UNVERIFIED_DAPHNE = False
    another_version_tested(monkeypatch, http_guard, "TESTED_VERSIONS", "daphne")
    keep(monkeypatch, http_guard, "_installed")
    keep(monkeypatch, WebRequest, "gotLength", "handleContentChunk")
    http_guard._installed = False
    patched = vars(WebRequest).get("gotLength")
    assert_refused(http_guard.install, "site_config/http_guard.py", "daphne")
    assert vars(WebRequest).get("gotLength") is patched  # nothing was patched (again)
    assert not http_guard._installed


def test_the_operator_may_allow_an_untested_twisted(monkeypatch, settings, caplog) -> None:
    from daphne.http_protocol import WebRequest
    from twisted.web import http

    settings.CHAT_ALLOW_UNVERIFIED_DAPHNE = True
    another_version_tested(monkeypatch, http_guard, "TESTED_VERSIONS", "twisted")
    keep(monkeypatch, http_guard, "_installed")
    keep(monkeypatch, WebRequest, "gotLength", "handleContentChunk")
    http_guard._installed = False
    assert_allowed(http_guard.install, "site_config/http_guard.py", "twisted", caplog)
    assert http_guard._installed
    assert WebRequest.gotLength is not http.Request.gotLength


def test_daphne_is_patched_where_daphne_runs() -> None:
    from daphne.http_protocol import WebRequest
    from twisted.web import http

    import site_config.asgi  # noqa: F401 (installs the patch: daphne.server is imported)

    assert WebRequest.gotLength is not http.Request.gotLength
    assert WebRequest.handleContentChunk is not http.Request.handleContentChunk
