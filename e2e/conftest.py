"""Fixtures for the browser suite: a real Daphne, a real Chromium, users who sign up.

The server is a Daphne subprocess (e2e/servers.py) on a file-based SQLite database in a
temporary directory, with DEBUG off and collected static files, as in production. Tests
talk to it only the way people do: through pages in browser contexts. For "what was
stored" checks they read its SQLite file read-only (`server_db`); what must exist before
a test starts is seeded in it by the server's own models (e2e/seed.py).

Fixtures (e2e/README.md has examples):
  chat_server, e2e_env, server_db   the session's Daphne, its environment, its database
  sign_up("ann", **context_args)    a new user, signed up through the form -> Chatter
  log_in(account, **context_args)   an existing user, logged in through the form -> Chatter
  make_users("ann", "bob")          users made in the database -> [Account]
  room_with_history(60)             a public room with 60 messages -> SeededRoom
  private_room(members=("bob",))    a members-only room, owner and members -> SeededRoom
  room_slug                         a fresh room name (Chatter.open_room creates it)
  new_context(**context_args)       pytest-playwright's: a context that is traced
  PHONE, NO_JAVASCRIPT (e2e/chat.py) context options: a 390x844 touch phone; no scripts

Contexts come from pytest-playwright's `new_context` (never `browser.new_context`), so
its options work: `--tracing retain-on-failure --screenshot only-on-failure --output DIR`
(`make test-e2e` passes them). Artifacts: when a test fails, its directory under the
output directory (e2e/artifacts/ unless --output says otherwise) gets pytest-playwright's
trace.zip and screenshots (when asked for), and from here the HTML of every page still
open (page-N.html, listed in pages.txt) and what each Daphne wrote during the test
(daphne-<port>.log).
"""

import itertools
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from playwright.sync_api import Browser, BrowserContext, Error, Page, expect

from e2e import seed, servers
from e2e.accessibility import ConsoleWatch
from e2e.chat import Chatter, ServerDatabase, watch_dialogs
from e2e.seed import Account, SeededRoom

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


# Artifacts of a failing test ------------------------------------------------------------

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
_ARTIFACTS_DIR = pytest.StashKey[Path]()
_LOG_OFFSETS = pytest.StashKey[dict[servers.DaphneProcess, int]]()
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def pytest_configure(config: pytest.Config) -> None:
    """pytest-playwright's --output is e2e/artifacts/ unless given (its default is
    ./test-results). It empties that directory when a session starts."""
    if config.getoption("--output", None) == "test-results":
        config.option.output = str(ARTIFACTS)


@pytest.fixture(scope="session")
def base_url() -> None:
    """pytest-playwright's base URL for every context: none, each person's context gets
    their server's (`sign_up`, `log_in`). (Its own fixture, from --base-url, warns that
    pytest 10 will not run it.)"""
    return None


@pytest.fixture(autouse=True)
def _artifacts_dir(request: pytest.FixtureRequest, output_path: str) -> None:
    """The test's directory of artifacts: pytest-playwright's (<output>/<test id>/)."""
    request.node.stash[_ARTIFACTS_DIR] = Path(output_path)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    # Where each Daphne's log stands as the test begins, before any fixture starts one.
    item.stash[_LOG_OFFSETS] = {
        server: _size(server.log_path) for server in servers.DaphneProcess.started
    }
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Any:
    report: pytest.TestReport = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    if report.when == "teardown" and _failed(item, report):
        directory = item.stash.get(_ARTIFACTS_DIR, None)
        if directory is not None:
            _save_server_logs(directory, item.stash.get(_LOG_OFFSETS, {}))
    return report


def _failed(item: pytest.Item, teardown: pytest.TestReport | None = None) -> bool:
    """Whether the test failed so far: its setup, its call, or (given) its teardown."""
    reports = [*item.stash.get(_REPORTS, {}).values(), *([teardown] if teardown else [])]
    return any(report.failed for report in reports)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _save_server_logs(directory: Path, offsets: dict[servers.DaphneProcess, int]) -> None:
    """What each Daphne wrote since the test began (all of it if it started later)."""
    for server in servers.DaphneProcess.started:
        with server.log_path.open("rb") as log:
            log.seek(offsets.get(server, 0))
            written = log.read()
        if written:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / server.log_path.name).write_bytes(written)


def _save_pages(directory: Path, pages: list[Page]) -> None:
    """The HTML of each page as it is now (the DOM, scripts' changes included)."""
    index = []
    for number, page in enumerate(pages, 1):
        try:
            html = page.content()
        except Error as error:  # closed meanwhile, or gone with its browser
            html = f"<!-- {page.url}: no content ({error.message}) -->"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"page-{number}.html").write_text(html, encoding="utf-8")
        index.append(f"page-{number}.html\t{page.url}\n")
    if index:
        (directory / "pages.txt").write_text("".join(index), encoding="utf-8")


@pytest.fixture
def new_context(
    new_context: Callable[..., BrowserContext], browser: Browser, request: pytest.FixtureRequest
) -> Iterator[Callable[..., BrowserContext]]:
    """pytest-playwright's `new_context` (its contexts are traced, screenshotted and closed
    by it), which also keeps the HTML of every open page when the test failed. Its
    keywords are `browser.new_context`'s; `@pytest.mark.browser_context_args(...)` adds
    some to every context of a test.

    Every page of its contexts is watched: a console error or warning, or an uncaught
    exception, fails the test (issue 14: none on any page), unless the test is marked
    `@pytest.mark.console_errors("why")` because it provokes them on purpose (a server
    killed under the page, a refused socket)."""
    console = ConsoleWatch()

    def make(**kwargs: Any) -> BrowserContext:
        context = new_context(**kwargs)
        console.watch(context)
        return context

    yield make
    provoked = request.node.get_closest_marker("console_errors") is not None
    if console.problems and not provoked and not _failed(request.node):
        pytest.fail(
            "the pages logged console errors or warnings (mark the test "
            f"@pytest.mark.console_errors(why) if it provokes them): {console.problems}",
            pytrace=False,
        )
    if _failed(request.node):
        # Before pytest-playwright's teardown closes them: every context still open (this
        # test's, also one made with browser.new_context).
        pages = [page for context in browser.contexts for page in context.pages]
        _save_pages(request.node.stash[_ARTIFACTS_DIR], pages)


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
        MEDIA_ROOT=str(root / "media"),  # uploads (attachments), never the project's media/
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
LogIn = Callable[..., Chatter]


def _person(
    new_context: Callable[..., BrowserContext], base_url: str, **context_args: Any
) -> tuple[BrowserContext, Page, list[str]]:
    """A browser context of a person's own, its first tab, and the dialogs it will see."""
    context = new_context(base_url=base_url, **context_args)
    page = context.new_page()
    dialogs: list[str] = []
    watch_dialogs(page, dialogs)
    return context, page, dialogs


@pytest.fixture
def sign_up(
    new_context: Callable[..., BrowserContext], chat_server: servers.DaphneProcess
) -> SignUp:
    """Sign up a fresh user through /accounts/signup/ in a new browser context.

    `sign_up("alice")` gives a Chatter named alice<n>_<hex>, logged in, on the room list.
    `server=` signs up on another Daphne; other keywords go to `new_context`
    (e.g. `**PHONE`, `**NO_JAVASCRIPT`, `color_scheme="dark"`).
    """

    def _sign_up(prefix: str = "user", *, server: Any = None, **context_args: Any) -> Chatter:
        base_url = (server or chat_server).url
        context, page, dialogs = _person(new_context, base_url, **context_args)
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

    return _sign_up


@pytest.fixture
def log_in(new_context: Callable[..., BrowserContext], chat_server: servers.DaphneProcess) -> LogIn:
    """Log an existing user in through /accounts/login/ in a new browser context.

    `log_in(account)` takes anything with a username and password: an Account from
    `make_users` or a seeded room, or a Chatter (the same person on a second device).
    Gives a Chatter on the room list. `server=` and context keywords as for `sign_up`.
    """

    def _log_in(user: Account | Chatter, *, server: Any = None, **context_args: Any) -> Chatter:
        base_url = (server or chat_server).url
        context, page, dialogs = _person(new_context, base_url, **context_args)
        page.goto(f"{base_url}/accounts/login/")
        page.locator("#id_username").fill(user.username)
        page.locator("#id_password").fill(user.password)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(f"{base_url}/rooms/")
        expect(page.locator(".whoami strong")).to_have_text(user.username)
        return Chatter(user.username, user.password, context, page, base_url, dialogs)

    return _log_in


@pytest.fixture
def make_users(e2e_env: dict[str, str]) -> Callable[..., list[Account]]:
    """`make_users("ann", "bob")`: new users (ann_<hex>, bob_<hex>) made in the chat
    server's database, each an Account to `log_in` with. One shell, one password hash:
    faster than `sign_up` when a test needs people who exist but not their browsers."""
    return lambda *prefixes: seed.users(e2e_env, *prefixes)


@pytest.fixture
def room_with_history(e2e_env: dict[str, str]) -> Callable[..., SeededRoom]:
    """`room_with_history(60)`: a public room whose history is 60 messages, "Message 1 of
    60" (oldest) … "Message 60 of 60", written in turn by its owner and one other new
    user (`people=("ann", "bob", "cy")` for others: prefixes or Accounts; `text=` another
    format). Made in the server's database; `.people` are Accounts to `log_in` with."""

    def _room(
        count: int, *, people: tuple[Account | str, ...] = ("owner", "other"), **options: Any
    ) -> SeededRoom:
        owner, *others = people
        return seed.room(e2e_env, owner, others, messages=count, **options)

    return _room


@pytest.fixture
def private_room(e2e_env: dict[str, str]) -> Callable[..., SeededRoom]:
    """`private_room(members=("bob", "cy"))`: a members-only room owned by a new user, with
    these members (prefixes for new users, or Accounts; `owner=` likewise) and
    `messages=N` of history. `.owner` and `.members` are Accounts to `log_in` with;
    anyone else gets the room's 404."""

    def _room(
        *,
        owner: Account | str = "owner",
        members: tuple[Account | str, ...] = ("member",),
        messages: int = 0,
        **options: Any,
    ) -> SeededRoom:
        return seed.room(e2e_env, owner, members, messages=messages, private=True, **options)

    return _room


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
