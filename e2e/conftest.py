"""Fixtures for the browser suite: a real Daphne, a real Chromium, users who sign up.

The server is a Daphne subprocess (e2e/servers.py) on a file-based SQLite database in a
temporary directory, with DEBUG off and collected static files, as in production. Tests
talk to it only the way people do: through pages in browser contexts. For "what was
stored" checks they read its SQLite file read-only (`server_db`).
"""

import itertools
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from playwright.sync_api import Browser, expect

from e2e import servers
from e2e.chat import Chatter, ServerDatabase, watch_dialogs

# No ORM calls from here: Playwright's sync API runs an event loop in this thread, and
# Django would refuse them. Setting DJANGO_ALLOW_ASYNC_UNSAFE would silence that for the
# unit tests in the same pytest run too; the server's database is read with sqlite3.

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

expect.set_options(timeout=10_000)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last, everything else in its usual order.

    Playwright's sync API keeps an event loop running in the main thread from the first
    browser test to the end of the session; an asyncio test (pytest-asyncio) after that
    fails with "Runner.run() cannot be called from a running event loop".
    """
    items.sort(key=lambda item: "browser" in getattr(item, "fixturenames", ()))


def chromium_executable() -> str | None:
    """PLAYWRIGHT_CHROMIUM, else Debian's Chromium, else None (Playwright's own download)."""
    explicit = os.environ.get("PLAYWRIGHT_CHROMIUM")
    if explicit:
        return explicit
    for candidate in ("/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright's launch options, plus the system Chromium and headless flags."""
    launch_args = {**browser_type_launch_args, "args": CHROMIUM_ARGS}
    executable = chromium_executable()
    if executable:
        launch_args["executable_path"] = executable
    return launch_args


# The server ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def e2e_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Production-like settings on a fresh SQLite file: migrated, static files collected.

    The rate limit is generous because one test posts a corpus of 50+ payloads.
    """
    root = tmp_path_factory.mktemp("e2e-server")
    env = servers.server_env(
        DATABASE_URL=f"sqlite:///{root / 'e2e.sqlite3'}",
        STATIC_ROOT=str(root / "static"),
        CHAT_RATE_BURST="1000",
        CHAT_RATE_PER_SECOND="1000",
    )
    servers.collect_static(env)
    servers.migrate(env)
    return env


@pytest.fixture(scope="session")
def chat_server(e2e_env: dict[str, str]) -> Iterator[servers.DaphneProcess]:
    """One Daphne for the session (in-memory channel layer), shared by most tests."""
    with servers.daphne(e2e_env) as server:
        yield server


@pytest.fixture(scope="session")
def server_db(e2e_env: dict[str, str]) -> ServerDatabase:
    return ServerDatabase(Path(e2e_env["DATABASE_URL"].removeprefix("sqlite:///")))


# People -------------------------------------------------------------------------------

_serial = itertools.count(1)


def unique_name(prefix: str) -> str:
    return f"{prefix}{next(_serial)}_{uuid.uuid4().hex[:6]}"


@pytest.fixture
def room_slug() -> str:
    """A room name of the test's own: Chatter.open_room creates the room on first visit."""
    return f"room-{uuid.uuid4().hex[:10]}"


SignUp = Callable[..., Chatter]


@pytest.fixture
def sign_up(browser: Browser, chat_server: servers.DaphneProcess) -> Iterator[SignUp]:
    """Sign up a fresh user through /accounts/signup/ in a new browser context.

    `sign_up("alice")` gives a Chatter named alice<n>_<hex>, logged in, on the room list.
    `server=` signs up on another Daphne; other keywords go to `browser.new_context`
    (e.g. `java_script_enabled=False`).
    """
    contexts = []

    def _sign_up(prefix: str = "user", *, server: Any = None, **context_args: Any) -> Chatter:
        base_url = (server or chat_server).url
        context = browser.new_context(base_url=base_url, **context_args)
        contexts.append(context)
        page = context.new_page()
        dialogs: list[str] = []
        watch_dialogs(page, dialogs)
        username = unique_name(prefix)
        password = f"Pw-{uuid.uuid4().hex}"
        page.goto(f"{base_url}/accounts/signup/")
        page.locator("#id_username").fill(username)
        page.locator("#id_password1").fill(password)
        page.locator("#id_password2").fill(password)
        page.get_by_role("button", name="Sign up").click()
        expect(page).to_have_url(f"{base_url}/rooms/")
        expect(page.locator(".whoami strong")).to_have_text(username)
        return Chatter(username, password, context, page, base_url, dialogs)

    yield _sign_up
    for context in contexts:
        context.close()


# Services the multi-process suites need: theirs alone, skipped without them (failed in CI).


def unavailable(reason: str) -> NoReturn:
    if servers.IN_CI:
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[servers.RedisProcess]:
    """A Redis of the test module's own (a test may stop and start it)."""
    try:
        servers.redis_server_binary()
    except FileNotFoundError as error:
        unavailable(str(error))
    with servers.redis() as server:
        yield server


@pytest.fixture(scope="module")
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty PostgreSQL database of the test module's own, dropped afterwards."""
    name = f"hypertalk_{request.module.__name__.rpartition('.')[2]}_{os.getpid()}"
    url = servers.postgres_url(name)
    if url is None:
        unavailable("PostgreSQL is not reachable (TEST_POSTGRES_URL, default 127.0.0.1:5432)")
    yield url
    servers.drop_postgres(name)
