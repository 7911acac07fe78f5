"""Production shape: deploy checks, start-up without a secret, static files, SQLite load.

Each test runs the project as it is deployed, in subprocesses: `manage.py` and Daphne
with DEBUG off and the environment an operator would set. No browser.
"""

import asyncio
import gzip
import re
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e import servers

pytestmark = pytest.mark.e2e

# What the project's settings read; a test's environment starts without any of them.
SETTINGS_VARIABLES = {
    "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "DATABASE_URL",
    "REDIS_URL", "SECURE_COOKIES", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_PRELOAD", "BEHIND_PROXY", "STATIC_ROOT", "DJANGO_SETTINGS_MODULE",
}  # fmt: skip


def production_env(**settings: str) -> dict[str, str]:
    """The environment of a production deployment behind a TLS-terminating proxy."""
    env = {
        key: value for key, value in servers.server_env().items() if key not in SETTINGS_VARIABLES
    }
    env.update(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="example.com",
        CSRF_TRUSTED_ORIGINS="https://example.com",
        BEHIND_PROXY="true",
    )
    env.update(settings)
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=servers.PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


# Configuration ---------------------------------------------------------------------------


def test_check_deploy_is_clean() -> None:
    result = manage(production_env(), "check", "--deploy", "--fail-level", "WARNING")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output, output
    assert "WARNING" not in output, output


def test_without_a_secret_key_nothing_starts() -> None:
    env = production_env()
    del env["SECRET_KEY"]
    message = "SECRET_KEY is not set"

    result = manage(env, "migrate", "--check")  # the release step
    assert result.returncode != 0 and message in result.stderr, result.stderr

    command = ["-m", "daphne", "-p", str(servers.free_port()), "site_config.asgi:application"]
    daphne = subprocess.run(
        [sys.executable, *command],
        cwd=servers.PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert daphne.returncode != 0, daphne.stderr
    assert f"ImproperlyConfigured: {message}" in daphne.stderr, daphne.stderr


# Static files ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def production_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.DaphneProcess]:
    """Daphne with every production default on (HTTPS redirect, HSTS, secure cookies),
    behind a proxy that says the request came over HTTPS."""
    root = tmp_path_factory.mktemp("production")
    env = production_env(
        ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=f"sqlite:///{root / 'db.sqlite3'}",
        STATIC_ROOT=servers.collected_static_root(),
    )
    servers.migrate(env)
    # DaphneProcess waits for a 200 from /healthz over plain HTTP, as a load balancer would.
    with servers.daphne(env) as server:
        yield server


def through_proxy(client: servers.HttpClient, path: str, **headers: str) -> servers.HttpReply:
    return client.get(path, **{"X-Forwarded-Proto": "https", **headers})


def test_plain_http_is_redirected_except_the_health_check(
    production_server: servers.DaphneProcess,
) -> None:
    via_proxy = through_proxy(servers.HttpClient(production_server.url), "/accounts/login/")
    assert via_proxy.status == 200
    assert via_proxy.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    plain = servers.HttpClient(production_server.url, follow_redirects=False)
    redirect = plain.get("/accounts/login/")
    assert redirect.status == 301 and redirect.headers["Location"].startswith("https://")
    # Load balancers and orchestrators probe over plain HTTP and want a 200.
    assert plain.get("/healthz").status == 200


def static_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/static/[^"]+)"', html)


def test_static_files_are_hashed_compressed_and_cached_forever(
    production_server: servers.DaphneProcess,
) -> None:
    client = servers.HttpClient(production_server.url)
    page = through_proxy(client, "/accounts/login/")
    assert page.status == 200
    urls = static_urls(page.text)
    # htmx and its ws extension come from django-htmx's own static files, hashed.
    htmx = [
        url
        for url in urls
        if re.fullmatch(r"/static/django_htmx/htmx-2\.min\.[0-9a-f]{12}\.js", url)
    ]
    assert htmx, urls
    assert any(
        re.fullmatch(r"/static/django_htmx/ext/hx-ws-2\.min\.[0-9a-f]{12}\.js", u) for u in urls
    )
    assert any(re.fullmatch(r"/static/css/chat\.[0-9a-f]{12}\.css", u) for u in urls)

    for url in urls:
        plain = through_proxy(client, url, **{"Accept-Encoding": "identity"})
        assert plain.status == 200, url
        assert plain.headers["Cache-Control"] == "max-age=315360000, public, immutable", url
        assert "Content-Encoding" not in plain.headers, url

        zipped = through_proxy(client, url, **{"Accept-Encoding": "gzip"})
        assert zipped.status == 200, url
        assert zipped.headers["Content-Encoding"] == "gzip", url
        assert "Accept-Encoding" in zipped.headers["Vary"], url
        assert zipped.headers["Cache-Control"] == "max-age=315360000, public, immutable", url
        assert gzip.decompress(zipped.body) == plain.body, url
        assert len(zipped.body) < len(plain.body), url

    htmx_source = through_proxy(client, htmx[0]).text
    assert "htmx" in htmx_source and "2.0." in htmx_source

    # Brotli variants exist only when the Brotli package is installed (not a requirement).
    brotli_present = any(Path(servers.collected_static_root()).rglob("*.br"))
    compressed = through_proxy(client, htmx[0], **{"Accept-Encoding": "br, gzip"})
    assert compressed.headers["Content-Encoding"] == ("br" if brotli_present else "gzip")


# SQLite under concurrency -------------------------------------------------------------------

USERS = 50


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[tuple[servers.DaphneProcess, Path, dict[str, str]]]:
    """One Daphne on a SQLite file with the default settings (WAL, IMMEDIATE, timeout)."""
    database = tmp_path / "chat.sqlite3"
    env = servers.server_env(
        DATABASE_URL=f"sqlite:///{database}", STATIC_ROOT=servers.collected_static_root()
    )
    servers.migrate(env)
    with servers.daphne(env) as server:
        yield server, database, env


async def test_sqlite_takes_fifty_users_posting_at_once(
    sqlite_server: tuple[servers.DaphneProcess, Path, dict[str, str]],
) -> None:
    """50 sockets post at the same moment while another process holds the write lock now
    and then (as a management command would): every message is stored and delivered."""
    server, database, env = sqlite_server
    room = f"load-{uuid.uuid4().hex[:8]}"
    # Signing up hashes a password (~0.5 s each); these sessions are made directly.
    sessions = await asyncio.to_thread(
        servers.make_sessions, env, [f"user{n:02d}" for n in range(USERS)]
    )
    opener = await asyncio.to_thread(servers.sign_up, server.url, "opener")
    assert (await asyncio.to_thread(opener.create_room, room)).status == 200

    sockets = await asyncio.gather(
        *(
            servers.RoomSocket.open(server.url, room, session, name=user, query="")
            for user, session in sessions.items()
        )
    )
    # Each socket is live once its connect has settled: the online list it ends with
    # names its own user (joins in one tick are summed up past three names).
    await asyncio.gather(
        *(s.wait_for(lambda s: s.name in s.online_usernames(), 20) for s in sockets)
    )

    stop = threading.Event()
    other_writer = threading.Thread(target=hold_write_lock, args=(database, stop), daemon=True)
    other_writer.start()
    try:
        started = time.monotonic()
        await asyncio.gather(*(s.send(f"hello from {s.name}") for s in sockets))
        expected = {(user, f"hello from {user}") for user in sessions}
        await asyncio.gather(
            *(s.wait_for(lambda s: expected <= set(s.messages()), 30) for s in sockets)
        )
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        other_writer.join()
    print(f"{USERS} messages stored and delivered to {USERS} sockets in {elapsed:.2f}s")

    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as db:
        stored = db.execute(
            "SELECT u.username, m.body FROM rooms_message m JOIN rooms_room r ON r.id = m.room_id"
            " JOIN auth_user u ON u.id = m.author_id WHERE r.slug = ?",
            (room,),
        ).fetchall()
    assert sorted(stored) == sorted(expected)
    for socket in sockets:
        assert len(socket.messages()) == USERS  # each message once

    await asyncio.gather(*(s.close() for s in sockets))
    await wait_for_log(server, "disconnected", USERS)
    log = server.log()
    assert "database is locked" not in log
    assert "Traceback" not in log, log
    assert len(re.findall(r"INFO rooms\.consumers connected user\d\d ", log)) == USERS


def hold_write_lock(database: Path, stop: threading.Event) -> None:
    """Another writer: takes the write lock for 50 ms, ten times a second."""
    with sqlite3.connect(database, timeout=20, isolation_level=None) as db:
        db.execute("CREATE TABLE IF NOT EXISTS e2e_other_writer (n INTEGER)")
        while not stop.is_set():
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO e2e_other_writer VALUES (1)")
            time.sleep(0.05)
            db.execute("COMMIT")
            time.sleep(0.05)


async def wait_for_log(server: servers.DaphneProcess, text: str, count: int) -> None:
    deadline = time.monotonic() + 20
    while server.log().count(text) < count:
        assert time.monotonic() < deadline, f"{count}x {text!r} not in the log:\n{server.log()}"
        await asyncio.sleep(0.1)
