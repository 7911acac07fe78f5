"""What every test process needs first, and the helpers of the unit, view and socket suites.

Settings. The suite runs with DEBUG off and a SECRET_KEY of its own, rather than with
DEBUG=true. DEBUG=true would not only change error pages: in this project it also turns
off the HTTPS redirect, secure cookies, HSTS and the manifest static-file storage, so the
tests would exercise a configuration nobody deploys (and pytest-django sets
settings.DEBUG = False while tests run anyway). What a test process cannot provide is
supplied explicitly instead: the test client speaks HTTPS (`HttpsClient`), and static
files use the plain storage because nothing ran collectstatic.

The environment. The suites' settings come from this file and their fixtures, never from
the shell that runs them: a CHAT_RATE_BURST=1 exported for a manual server would change
the limits the tests count, DEBUG=true the security they check. So the app's own
variables (APP_VARIABLES) are taken out of this process's environment, and so out of
every server the suites start, before the settings are read. What the suites are meant to
take from it stays: DATABASE_URL (the database to test on), TEST_POSTGRES_URL, CI,
PLAYWRIGHT_*, and DJANGO_SETTINGS_MODULE.

pyproject.toml does not name DJANGO_SETTINGS_MODULE on purpose: when it does,
pytest-django imports the settings before any conftest runs, before the environment is
cleaned, and they refuse to load without a SECRET_KEY. Set here, both are in place before
Django starts.
"""

import os
import re

# Every variable site_config/settings.py reads, but DATABASE_URL
# (site_config/tests/test_test_environment.py keeps this complete).
APP_VARIABLES = re.compile(
    r"DEBUG|SECRET_KEY|ALLOWED_HOSTS|CSRF_TRUSTED_ORIGINS|CONN_MAX_AGE|REDIS_URL|STATIC_ROOT"
    r"|BEHIND_PROXY|SECURE_\w+|DATABASE_POOL_\w+|CHAT_\w+|LOGIN_\w+|SIGNUPS_\w+"
    r"|MEDIA_ROOT|STORAGE_S3_\w+"
)
exported = [name for name in os.environ if APP_VARIABLES.fullmatch(name)]
for name in exported:
    del os.environ[name]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_config.settings")
os.environ["SECRET_KEY"] = "hypertalk-tests-only-0123456789abcdefghijklmnopqrstuvwxyz"

import django  # noqa: E402
import pytest  # noqa: E402
from django.conf import settings  # noqa: E402

if settings.configured and exported:
    # DJANGO_SETTINGS_MODULE was exported too: pytest-django read the settings before this
    # file ran, with those variables in them. Better no run than one that silently differs.
    raise pytest.UsageError(
        f"{', '.join(sorted(exported))} exported, and DJANGO_SETTINGS_MODULE too: the "
        "settings were read before conftest.py could take the app's variables out. "
        "Unset DJANGO_SETTINGS_MODULE (conftest.py sets it) or those variables."
    )

django.setup()  # as pytest-django would: models may be imported below and by suites

if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A test database need not survive a power cut: commits (a flush after every
    # transactional test, a row per message) stop waiting for the WAL to reach the disk.
    options = settings.DATABASES["default"].setdefault("OPTIONS", {})
    options["options"] = f"{options.get('options', '')} -c synchronous_commit=off".strip()

import asyncio  # noqa: E402
import json  # noqa: E402
import uuid  # noqa: E402
import weakref  # noqa: E402
from asyncio import FIRST_COMPLETED  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator  # noqa: E402
from http.cookies import SimpleCookie  # noqa: E402
from typing import Any, ClassVar  # noqa: E402

from asgiref.sync import sync_to_async  # noqa: E402
from channels.layers import InMemoryChannelLayer  # noqa: E402
from channels.testing import WebsocketCommunicator  # noqa: E402
from django.db import connections  # noqa: E402
from django.test import Client  # noqa: E402

from realtime import hub, sockets  # noqa: E402
from realtime.layers import channel_layer  # noqa: E402
from rooms import attachments, entering, presence, services, typists  # noqa: E402
from rooms.models import Room  # noqa: E402
from rooms.tests import fragments  # noqa: E402

PASSWORD = "correct horse battery staple"
ORIGIN = b"http://localhost"  # the host is in ALLOWED_HOSTS, as a browser on the site sends
# Generous: the socket tests wait this long only when something they expect never comes.
TIMEOUT = 5

# htmx's ws extension sends the composer's fields as JSON, plus under "HEADERS" the
# request headers htmx would have sent over HTTP: these (ChatSocket.send).
HTMX_HEADERS = {
    "HX-Request": "true",
    "HX-Trigger": "composer",
    "HX-Trigger-Name": None,
    "HX-Target": "composer",
    "HX-Current-URL": "http://localhost/rooms/lobby/",
}


# Environment ---------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    # WhiteNoise looks for STATIC_ROOT when the middleware starts; nothing collected here.
    config.addinivalue_line("filterwarnings", "ignore:No directory at:UserWarning")


@pytest.fixture(autouse=True)
def _unit_test_environment(request: pytest.FixtureRequest) -> None:
    """Every test but the real-server suites (e2e/, bench/, which run servers with settings
    of their own) runs in `chat_test_environment`."""
    if request.path.parent.name not in {"e2e", "bench"}:
        request.getfixturevalue("chat_test_environment")


@pytest.fixture
def chat_test_environment(
    settings: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Each test starts from nothing shared: a fresh in-memory channel layer, a full
    rate-limit bucket, no sockets or background tasks left from the test before.

    Autouse for every suite but e2e and bench (`_unit_test_environment`).
    """
    # Always the in-memory layer, even with REDIS_URL set; assigning CHANNEL_LAYERS makes
    # channels drop its cached layer, so each test gets a new one (and so does the next).
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "realtime.layers.HubInMemoryChannelLayer"}}
    # The heartbeat and the layer watchdog are started by the first socket; tests call
    # presence.heartbeat() and sockets.close_all() directly instead of waiting for them.
    settings.CHAT_PRESENCE_HEARTBEAT = 3600
    # Joins and leaves go out at once, a leave with no grace: the suites read them as the
    # next frame. (rooms/tests/test_presence.py tests the tick and the grace themselves.)
    settings.CHAT_PRESENCE_TICK = 0
    settings.CHAT_PRESENCE_LEAVE_GRACE = 0
    settings.CHAT_LAYER_CHECK_SECONDS = 3600
    # No collectstatic in a test run: the manifest storage (DEBUG off) would have no manifest.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    # The production hasher costs ~0.4 s per user (PBKDF2); the suite creates hundreds.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Uploaded files in a folder of the test's own, never the project's media/.
    media = tmp_path_factory.mktemp("media")
    settings.MEDIA_ROOT = str(media)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    }
    services.rate_limiter.reset()
    attachments.rate_limiter.reset()
    typists.throttle.reset()
    yield
    attachments.settle()  # no thumbnail thread outlives its test
    services.rate_limiter.reset()
    attachments.rate_limiter.reset()
    typists.throttle.reset()
    # The test's event loop is closed (its tasks cancelled); forget what was tied to it.
    sockets.open_sockets.clear()
    sockets.user_sockets.clear()
    sockets._watchdogs.clear()
    sockets.layer_health.passed()
    sockets._probes.clear()
    presence.reset()
    entering.reset()  # (its shared catch-up pages name rows of this test's database)


# Users and HTTP clients ----------------------------------------------------------------


class HttpsClient(Client):
    """The test client over HTTPS, as production is served (SECURE_SSL_REDIRECT is on)."""

    def request(self, **request: Any) -> Any:
        request.update({"wsgi.url_scheme": "https", "SERVER_PORT": "443"})
        return super().request(**request)


def logged_in(user: Any) -> HttpsClient:
    """A client with a real session for `user` (a database row, as a login makes)."""
    client = HttpsClient()
    client.force_login(user)
    return client


def memory_layer() -> InMemoryChannelLayer:
    """The in-memory channel layer the unit suite runs on, for tests that look inside it."""
    layer = channel_layer()
    assert isinstance(layer, InMemoryChannelLayer), f"not the in-memory layer: {layer!r}"
    return layer


@pytest.fixture
def client() -> HttpsClient:
    """pytest-django's `client`, over HTTPS."""
    return HttpsClient()


@pytest.fixture
def login() -> Callable[[Any], HttpsClient]:
    """`login(user)`: a logged-in HTTPS client (sync; wrap it in sync_to_async in async tests)."""
    return logged_in


@pytest.fixture
def password() -> str:
    """The password of every user `make_user` creates."""
    return PASSWORD


@pytest.fixture
def make_user(django_user_model: Any) -> Callable[..., Any]:
    def make(username: str, **extra: Any) -> Any:
        return django_user_model.objects.create_user(username=username, password=PASSWORD, **extra)

    return make


@pytest.fixture
def alice(make_user: Callable[..., Any]) -> Any:
    return make_user("alice")


@pytest.fixture
def bob(make_user: Callable[..., Any]) -> Any:
    return make_user("bob")


@pytest.fixture
def carol(make_user: Callable[..., Any]) -> Any:
    return make_user("carol")


# Rooms ---------------------------------------------------------------------------------


@pytest.fixture
def lobby(alice: Any) -> Room:
    """A public room owned by alice."""
    return Room.objects.create(slug="lobby", owner=alice)


@pytest.fixture
def secret(alice: Any, bob: Any) -> Room:
    """A private room of alice's, with bob as a member."""
    room = Room.objects.create(slug="secret", owner=alice, visibility=Room.Visibility.PRIVATE)
    room.members.add(bob)
    return room


@pytest.fixture
def ops() -> Room:
    """A staff-only room."""
    return Room.objects.create(slug="ops", visibility=Room.Visibility.STAFF)


@pytest.fixture
def other_room() -> Room:
    return Room.objects.create(slug="other")


@pytest.fixture
def alice_client(login: Any, alice: Any) -> Any:
    """A logged-in HTTPS test client of alice's."""
    return login(alice)


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many times each partial is rendered: services.render_fragment's calls, by
    partial (every render goes through it, as bench/ours_asgi.py counts them)."""
    counted: Counter[str] = Counter()
    render = services.render_fragment

    def counting(partial: str, **context: Any) -> str:
        counted[partial] += 1
        return render(partial, **context)

    monkeypatch.setattr(services, "render_fragment", counting)
    return counted


# Sockets -------------------------------------------------------------------------------


class ChatSocket:
    """One browser tab's WebSocket to a room, driven the way htmx drives it."""

    # Every socket a test opened and has not disconnected (assert_quiet's sentinels reach
    # all of them that share a group).
    opened: ClassVar["weakref.WeakSet[ChatSocket]"] = weakref.WeakSet()

    def __init__(self, communicator: WebsocketCommunicator, user: Any) -> None:
        self.communicator = communicator
        self.user = user
        self.accepted = False
        self.disconnected = False
        self.closed = False  # a close came from the server
        self._groups: list[str] | None = None
        ChatSocket.opened.add(self)

    def __repr__(self) -> str:
        return f"<ChatSocket {self.user} {self.communicator.scope['path']}>"

    # Sending --------------------------------------------------------------------------

    async def send(self, body: Any, **fields: Any) -> None:
        """What the composer sends: its fields as JSON, plus htmx's HEADERS."""
        await self.send_text(json.dumps({"body": body, **fields, "HEADERS": HTMX_HEADERS}))

    async def send_text(self, text: str) -> None:
        # Straight to the app (WebsocketCommunicator.send_to refuses an empty frame).
        await self.communicator.send_input({"type": "websocket.receive", "text": text})

    async def send_bytes(self, data: bytes) -> None:
        await self.communicator.send_input({"type": "websocket.receive", "bytes": data})

    async def ping(self) -> None:
        """A round trip through the consumer, with no side effects: once the answer is
        back, everything sent before it (the handshake included) has been handled."""
        await self.send_text("ping")
        reply = await self.receive()
        assert fragments.composer_errors(reply) == [
            "That message could not be read (it was not JSON)."
        ], reply

    # Receiving ------------------------------------------------------------------------

    async def receive_output(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next message the app sends; if the consumer dies instead, its exception at
        once (WebsocketCommunicator would wait out the timeout first)."""
        queue, app = self.communicator.output_queue, self.communicator.future
        if queue.empty():
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({getter, app}, timeout=timeout, return_when=FIRST_COMPLETED)
            if getter.done():
                return self._seen(getter.result())
            getter.cancel()
            if app.done():
                app.result()  # raises what the consumer raised
                raise AssertionError(f"{self}: the consumer ended without a word")
            raise TimeoutError(f"{self}: nothing came in {timeout} s")
        return self._seen(queue.get_nowait())

    def _seen(self, output: dict[str, Any]) -> dict[str, Any]:
        if output["type"] == "websocket.close":
            self.closed = True
        return output

    @property
    def alive(self) -> bool:
        """False once the consumer has stopped (crashed, or after a disconnect)."""
        return not self.communicator.future.done()

    async def receive(self, timeout: float = TIMEOUT) -> str:
        """The next text frame the server pushed (fails on a close or anything else)."""
        output = await self.receive_output(timeout)
        assert output["type"] == "websocket.send" and "text" in output, (
            f"{self}: expected a text frame, got {output}"
        )
        return output["text"]

    async def settle(self) -> None:
        """Read what every accepted socket is sent first: the catch-up, if any (kept in
        `catch_up`), then the cursor and the online list (kept in `settled`). A close
        that comes instead is left for the test to read."""
        self.catch_up: list[str] = []
        while True:
            output = await self.receive_output()
            if output["type"] == "websocket.close":
                self.communicator.output_queue.put_nowait(output)
                return
            html = output["text"]
            if fragments.cursor_of(html) is not None:
                self.settled = html
                return
            self.catch_up.append(html)

    async def settle_user(self) -> None:
        """A user socket's `settle`: read the unread count it is sent once subscribed
        (kept in `settled`); a close that comes instead is left for the test to read."""
        output = await self.receive_output()
        if output["type"] == "websocket.close":
            self.communicator.output_queue.put_nowait(output)
            return
        assert 'id="pm-unread"' in output["text"], output
        self.settled = output["text"]

    async def receive_frames(self, count: int) -> list[str]:
        return [await self.receive() for _ in range(count)]

    async def receive_sent(self) -> tuple[str, str]:
        """What a successful send brings its sender, in whichever order it comes: the
        composer, reset, and the pushed fragment of what was sent."""
        first, second = await self.receive_frames(2)
        composer, pushed = (first, second) if fragments.is_composer(first) else (second, first)
        assert fragments.is_composer(composer), (first, second)
        assert fragments.composer_errors(composer) == [], composer
        assert fragments.composer_value(composer) == "", composer
        return composer, pushed

    async def receive_close(self, timeout: float = TIMEOUT) -> int | None:
        """The code of the close the server sends next (fails on anything else)."""
        output = await self.receive_output(timeout)
        assert output["type"] == "websocket.close", f"{self}: expected a close, got {output}"
        return output.get("code")

    async def assert_quiet(self, *groups: str) -> None:
        """Prove that nothing is on its way to this socket through `groups` (by default
        every group its consumer is in: its room's, its user's and its session's).

        A time window proves nothing: a stray frame can come after it (the consumer holds
        group events while it handles a frame, and a busy process is seconds behind).
        Instead, a unique sentinel goes through each group, the path a stray would take,
        and the socket's next frames must be exactly the sentinels: a process's one channel
        delivers a group's events in order, so anything sent to it before would come
        first (or in the same frame). Every other open socket in those groups gets the
        sentinels too, and must be just as quiet.
        """
        mine = await self.groups()
        groups = groups or tuple(mine)
        assert set(groups) <= set(mine), f"{self} is not in {set(groups) - set(mine)}"
        sentinels = {group: f"<!-- sentinel {uuid.uuid4().hex} via {group} -->" for group in groups}
        for group, html in sentinels.items():
            await hub.group_send(group, {"type": "hub.html", "html": html})
        listening = [s for s in ChatSocket.opened if s is not self and s.listening]
        for socket in [self, *listening]:
            theirs = set(await socket.groups())
            expected = [html for group, html in sentinels.items() if group in theirs]
            while expected:
                frame = await socket.receive()
                assert frame in expected, f"{socket}: {frame!r} came before the sentinel"
                expected.remove(frame)

    async def assert_nothing_more(self) -> None:
        """Disconnect, then prove the consumer sent nothing more: once it has finished,
        everything it ever sent is in the output queue. (For sockets in no group: one the
        server refused.)"""
        await self.disconnect()
        queue = self.communicator.output_queue
        assert queue.empty(), f"{self}: sent {queue.get_nowait()} after what was read"

    @property
    def listening(self) -> bool:
        """Open at both ends: group events still reach it."""
        return self.accepted and not self.closed and not self.disconnected

    async def groups(self) -> list[str]:
        """The groups its consumer is in (RoomConsumer.connect): its room's, its user's,
        its session's (a user socket's: its user's and its session's)."""
        if self._groups is None:
            path = self.communicator.scope["path"]
            room_id = None
            if path.startswith("/ws/rooms/"):
                room_id = await sync_to_async(
                    Room.objects.filter(slug=path.split("/")[3]).values_list("pk", flat=True).first
                )()
            cookies = SimpleCookie()
            for name, value in self.communicator.scope["headers"] or ():
                if name == b"cookie":
                    cookies.load(value.decode("latin1"))
            session = cookies.get(settings.SESSION_COOKIE_NAME)
            self._groups = [
                *([services.room_group(room_id)] if room_id is not None else []),
                *([services.user_group(self.user.pk)] if self.user is not None else []),
                *([services.session_group(session.value)] if session is not None else []),
            ]
        return self._groups

    async def expect_presence(self, username: str, event: str) -> str:
        """The next frame is the room's "<username> <event>" line (and online-list update)."""
        html = await self.receive()
        assert fragments.presence_lines(html) == [f"{username} {event}"], html
        return html

    async def disconnect(self, code: int = 1000) -> None:
        """The browser goes away; returns once the consumer has finished (and re-raises
        anything it raised, so a crashed consumer fails the test)."""
        if not self.disconnected:
            self.disconnected = True
            await self.communicator.disconnect(code, timeout=TIMEOUT)


Connect = Callable[..., Awaitable[ChatSocket]]


@pytest.fixture
async def connect(transactional_db: None) -> AsyncIterator[Connect]:
    """`await connect(user, "lobby")`: a socket to a room, logged in as `user`.
    (`path="/ws/me/"` opens the user socket of every other page instead; it settles on
    the unread count every such socket is sent first: `ChatSocket.settle_user`.)

    `client=` reuses that client's session (as a tab of the same browser does), `user=None`
    connects without a session, `after=` asks for what came after that room sequence
    number (more parameters go in `query=`, e.g. "have=3,4"), `origin=` overrides the
    Origin header (None sends none). The handshake is done when it returns, and so is
    what every connect is sent first (`ChatSocket.settle`; `settle=False` leaves it
    unread); what the server sends next (a join, a close) is for the test to read. Every
    socket is disconnected at the end, and a consumer that crashed fails the test.
    """
    opened: list[ChatSocket] = []

    async def _connect(
        user: Any = None,
        slug: str = "lobby",
        *,
        after: int | None = None,
        query: str = "",
        client: Client | None = None,
        origin: bytes | None = ORIGIN,
        settle: bool = True,
        path: str | None = None,
    ) -> ChatSocket:
        # Host, as every browser sends it: the Origin check compares the Origin with it.
        headers = [(b"host", b"localhost")]
        headers += [(b"origin", origin)] if origin is not None else []
        if client is None and user is not None:
            client = await sync_to_async(logged_in)(user)
        if client is not None:
            cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
            headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
        params = "&".join(p for p in [f"after={after}" if after is not None else "", query] if p)
        room_socket = path is None
        path = (path or f"/ws/rooms/{slug}/") + (f"?{params}" if params else "")
        from site_config.asgi import application  # the whole stack: origin check, session

        socket = ChatSocket(WebsocketCommunicator(application, path, headers=headers), user)
        opened.append(socket)
        socket.accepted, _ = await socket.communicator.connect(timeout=TIMEOUT)
        if socket.accepted and settle:
            await (socket.settle() if room_socket else socket.settle_user())
        return socket

    yield _connect
    crashes = []
    for socket in opened:
        try:
            await socket.disconnect()
        except Exception as crash:  # every socket still gets closed; the first crash is raised
            crashes.append(crash)
    await presence.drain()  # leaves being settled and announced use the database too
    # Consumers use the database from asgiref's worker thread. Close its connection, or on
    # PostgreSQL the flush after this test waits on it, and the test database can't be dropped.
    await sync_to_async(connections.close_all)()
    if crashes:
        raise crashes[0]


Gather = Callable[..., Awaitable[list[ChatSocket]]]


@pytest.fixture
def gather(connect: Connect) -> Gather:
    """`alice_socket, bob_socket = await gather("lobby", alice, bob)`: each user connects in
    turn and everyone already there sees the join, so every socket starts with nothing
    pending."""

    async def _gather(slug: str, *users: Any) -> list[ChatSocket]:
        assert len({user.pk for user in users}) == len(users), "one socket per user"
        present: list[ChatSocket] = []
        for user in users:
            socket = await connect(user, slug)
            present.append(socket)
            for member in present:
                await member.expect_presence(user.username, "joined")
        return present

    return _gather
