"""The limits under a real Daphne: the address counted is the TCP
peer, which under ASGI reaches Django from the scope's "client", not a header.

Clients connect from different loopback addresses (127.0.0.2, 127.0.0.3, ...: all of
127.0.0.0/8 is this machine), as different people would.
"""

import functools
import http.client
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e import servers

FAILURE_LIMIT = 3
SIGNUPS_PER_HOUR = 2


class HttpClientFrom(servers.HttpClient):
    """servers.HttpClient connecting from a loopback address of our choosing; a redirect
    is the answer (not followed)."""

    def __init__(self, base_url: str, source: str) -> None:
        super().__init__(base_url, follow_redirects=False)
        connection = functools.partial(http.client.HTTPConnection, source_address=(source, 0))

        class FromSource(urllib.request.HTTPHandler):
            def http_open(self, request: urllib.request.Request) -> http.client.HTTPResponse:
                return self.do_open(connection, request)

        class NoRedirects(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object, **kwargs: object) -> None:
                return None  # urllib raises HTTPError: HttpClient returns it as the reply

        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPCookieProcessor(self.cookies),
            FromSource(),
            NoRedirects(),
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.DaphneProcess]:
    root: Path = tmp_path_factory.mktemp("throttle")
    env = servers.server_env(
        DATABASE_URL=f"sqlite:///{root / 'db.sqlite3'}",
        STATIC_ROOT=servers.collected_static_root(),
        LOGIN_FAILURE_LIMIT=str(FAILURE_LIMIT),
        SIGNUPS_PER_HOUR=str(SIGNUPS_PER_HOUR),
    )
    servers.migrate(env)
    with servers.daphne(env) as daphne:
        yield daphne


def log_in(server: servers.DaphneProcess, source: str, username: str, password: str):
    client = HttpClientFrom(server.url, source)
    return client.post_form("/accounts/login/", {"username": username, "password": password})


def test_log_ins_and_sign_ups_are_counted_per_peer_address(server) -> None:
    # Two sign-ups from 127.0.0.1 (the limit), a third is refused there but not elsewhere.
    alice_password, bob_password = "Alice-pw-0123456789", "Bob-pw-0123456789"
    servers.sign_up(server.url, "alice", alice_password)
    servers.sign_up(server.url, "bob", bob_password)
    refused = HttpClientFrom(server.url, "127.0.0.1").get("/accounts/signup/")
    assert refused.status == 429, refused.status
    assert "Signing up is paused" in refused.text
    elsewhere = HttpClientFrom(server.url, "127.0.0.4")
    password = "Carol-pw-0123456789"
    reply = elsewhere.post_form(
        "/accounts/signup/", {"username": "carol", "password1": password, "password2": password}
    )
    assert reply.status == 302 and reply.headers["Location"] == "/rooms/", reply.status

    # Guessing alice's password from 127.0.0.2: the third failure locks her account and
    # that address; the page is ours, with Retry-After.
    for _ in range(FAILURE_LIMIT - 1):
        assert log_in(server, "127.0.0.2", "alice", "wrong").status == 200
    locked = log_in(server, "127.0.0.2", "alice", "wrong")
    assert locked.status == 429, locked.status
    assert 'id="throttled"' in locked.text and "Logging in is paused" in locked.text
    assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60

    # bob, from another address: in. alice, even with her password: not yet.
    assert log_in(server, "127.0.0.3", "bob", bob_password).status == 302
    assert log_in(server, "127.0.0.3", "alice", alice_password).status == 429
    # From the guesser's address nobody gets in.
    assert log_in(server, "127.0.0.2", "bob", bob_password).status == 429
