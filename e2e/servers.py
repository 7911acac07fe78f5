"""Real servers for the browser and multi-process tests: Daphne, Redis, PostgreSQL.

Each server is a subprocess on a free loopback port, started and stopped by a context
manager, so a test can run two Daphnes on one database, or stop Redis mid-conversation.
"""

import asyncio
import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, ClassVar

PROJECT_DIR = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not come up within {timeout}s")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# e2e/conftest.py sets this in the test process for Playwright's event loop; a server that
# inherited it would run with Django's async-safety checks off (and fail check --deploy).
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"


def server_env(**overrides: str) -> dict[str, str]:
    """The environment for a test server: DEBUG off, as in production, over plain HTTP.

    Every test user signs up and logs in from 127.0.0.1, so the per-address sign-up and
    failed-log-in limits are raised: a few tests that show the log-in error would
    otherwise lock every later log-in out (accounts/tests/test_throttle.py tests the
    limits themselves; a test may override them).
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", ASYNC_UNSAFE}
    }
    env.update(
        DEBUG="false",
        SECRET_KEY="e2e-secret-key-not-for-production-0123456789abcdefghijklmnop",
        SECURE_SSL_REDIRECT="false",
        SECURE_COOKIES="false",
        SECURE_HSTS_SECONDS="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
        SIGNUPS_PER_HOUR="100000",
        LOGIN_FAILURE_LIMIT="100000",
        # A closed socket's user is announced as gone after this many seconds (5 by
        # default): the suites wait for "left" lines.
        CHAT_PRESENCE_LEAVE_GRACE="1",
    )
    env.update(overrides)
    return env


def manage(env: dict[str, str], *args: str) -> None:
    """Run a manage.py command for a test server's environment, as its release step would."""
    subprocess.run(
        [sys.executable, "manage.py", *args, "--noinput", "-v0"],
        cwd=PROJECT_DIR,
        env=env,
        check=True,
    )


def collect_static(env: dict[str, str]) -> None:
    manage(env, "collectstatic")


_collected: dict[str, str] = {}


def collected_static_root() -> str:
    """A STATIC_ROOT collected in production mode once per test process (for STATIC_ROOT=).

    Any server env can point at it: collected files do not depend on the database.
    """
    if "root" not in _collected:
        root = tempfile.mkdtemp(prefix="hypertalk-static-")
        collect_static(server_env(STATIC_ROOT=root))
        _collected["root"] = root
    return _collected["root"]


def migrate(env: dict[str, str]) -> None:
    manage(env, "migrate")


def daphne_command(port: int, application: str) -> list[str]:
    """Daphne on 127.0.0.1:`port`, with the Procfile's WebSocket flags."""
    return [
        sys.executable,
        "-m",
        "daphne",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "--websocket-max-message-size",
        str(1024 * 1024),  # outgoing too: a long catch-up needs room
        "--websocket-max-frame-size",
        str(64 * 1024),
        "--websocket_timeout",
        "-1",  # Daphne's default closes every socket after a day, with 1000
        application,
    ]


class DaphneProcess:
    # Every Daphne this test process started, in order: a failing test keeps what each
    # wrote meanwhile (e2e/conftest.py, "Artifacts").
    started: ClassVar[list["DaphneProcess"]] = []

    def __init__(self, env: dict[str, str], port: int, log_path: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        DaphneProcess.started.append(self)
        self.process = subprocess.Popen(
            daphne_command(port, "site_config.asgi:application"),
            cwd=PROJECT_DIR,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(self.healthy, timeout=30, what=f"daphne on {port}")
        except TimeoutError:
            self.stop()
            raise TimeoutError(f"daphne on {port} did not start:\n{self.log()}") from None

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"daphne exited with {self.process.returncode}:\n{self.log()}")
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
            return response.status == 200

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


@contextmanager
def daphne(env: dict[str, str], port: int | None = None) -> Iterator[DaphneProcess]:
    """A Daphne serving this project; SIGTERM on exit. Its log is in `.log()`."""
    log_dir = Path(tempfile.mkdtemp(prefix="daphne-"))
    port = port or free_port()
    server = DaphneProcess(env, port, log_dir / f"daphne-{port}.log")
    try:
        yield server
    finally:
        server.stop()


def daphne_again(stopped: DaphneProcess, env: dict[str, str]) -> DaphneProcess:
    """A new Daphne on the port of `stopped` (after `.stop()`): a restart, as a deploy does.

    It logs beside the old one; the caller stops it.
    """
    wait_for(lambda: not port_open(stopped.port), timeout=10, what=f"port {stopped.port} to close")
    log_path = stopped.log_path.with_name(f"{stopped.log_path.stem}-again.log")
    return DaphneProcess(env, stopped.port, log_path)


class RedisProcess:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: port_open(self.port), timeout=10, what=f"redis on {self.port}")

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"redis on {self.port} was never started")
        return self.process.pid

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        wait_for(lambda: not port_open(self.port), timeout=10, what="redis to stop")


def redis_server_binary() -> str:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        raise FileNotFoundError("redis-server is not installed (make test installs it)")
    return binary


@contextmanager
def redis() -> Iterator[RedisProcess]:
    """A Redis of the test's own on a free port: it can be stopped without harming others."""
    server = RedisProcess(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def postgres_url(database: str) -> str | None:
    """A URL for `database` on the local PostgreSQL, created empty; None if none runs."""
    base = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
    try:
        import psycopg

        with psycopg.connect(f"{base}/postgres", autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{database}"')
    except Exception:
        return None
    return f"{base}/{database}"


def drop_postgres(database: str) -> None:
    import psycopg

    base = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
    with psycopg.connect(f"{base}/postgres", autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


# Clients without a browser (the multi-process and production tests) --------------------
#
# What a browser does, in the standard library and `websockets`: sign up through the
# form (CSRF cookie and token, Origin header), keep the session cookie, open a room's
# socket with that cookie and the site's Origin, send the composer's JSON as htmx does.


@dataclass
class HttpReply:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class HttpClient:
    """One browser profile over HTTP: a cookie jar, redirects followed (unless told not
    to: then a 3xx is the answer), no proxies."""

    def __init__(self, base_url: str, *, follow_redirects: bool = True) -> None:
        self.base_url = base_url
        self.cookies = http.cookiejar.CookieJar()
        handlers: list[Any] = [
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPCookieProcessor(self.cookies),
        ]
        if not follow_redirects:
            handlers.append(_NoRedirects())
        self._opener = urllib.request.build_opener(*handlers)

    def request(
        self,
        method: str,
        path: str,
        *,
        form: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10,
    ) -> HttpReply:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers=headers or {}
        )
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return HttpReply(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:  # a 4xx or 5xx is an answer too
            with error:
                return HttpReply(error.code, error.headers, error.read())

    def get(self, path: str, **headers: str) -> HttpReply:
        return self.request("GET", path, headers=headers)

    def post_form(self, path: str, fields: dict[str, str]) -> HttpReply:
        """POST a form as its page would: with the CSRF token from that page, and Origin."""
        page = self.get(path)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token, f"no CSRF token on {path} ({page.status})"
        headers = {"Origin": self.base_url, "Referer": self.base_url + path}
        return self.request(
            "POST", path, form={"csrfmiddlewaretoken": token[1], **fields}, headers=headers
        )

    def create_room(self, slug: str, *, private: bool = False) -> HttpReply:
        """Create a room as a person does, with the room list's form (a GET never creates
        one); the reply is the new room's page, or the form with its error."""
        return self.post_form("/rooms/", {"name": slug, **({"private": "on"} if private else {})})

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.cookies if c.name == name), None)

    @property
    def sessionid(self) -> str:
        session = self.cookie("sessionid")
        assert session, "not logged in"
        return session


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError, which HttpClient returns as the reply


def sign_up(base_url: str, username: str, password: str | None = None) -> HttpClient:
    """A new user, signed up through /accounts/signup/ and so logged in."""
    client = HttpClient(base_url)
    password = password or f"Pw-{uuid.uuid4().hex}"
    reply = client.post_form(
        "/accounts/signup/", {"username": username, "password1": password, "password2": password}
    )
    assert reply.status == 200 and client.cookie("sessionid"), (
        f"sign-up of {username} failed ({reply.status}):\n{reply.text[:2000]}"
    )
    return client


def make_sessions(env: dict[str, str], usernames: list[str]) -> dict[str, str]:
    """Users with logged-in sessions, made in one `manage.py shell` (as force_login does).

    For tests that need many users: signing up hashes a password (~0.5 s each here).
    Returns {username: sessionid}.
    """
    script = (
        "import json, sys\n"
        "from django.contrib.auth import get_user_model, SESSION_KEY, BACKEND_SESSION_KEY,"
        " HASH_SESSION_KEY\n"
        "from django.contrib.sessions.backends.db import SessionStore\n"
        "out = {}\n"
        "for name in json.loads(sys.stdin.read()):\n"
        "    user = get_user_model().objects.create(username=name)\n"
        "    user.set_unusable_password(); user.save()\n"
        "    session = SessionStore()\n"
        "    session[SESSION_KEY] = str(user.pk)\n"
        "    session[BACKEND_SESSION_KEY] = 'django.contrib.auth.backends.ModelBackend'\n"
        "    session[HASH_SESSION_KEY] = user.get_session_auth_hash()\n"
        "    session.create()\n"
        "    out[name] = session.session_key\n"
        "print(json.dumps(out))\n"
    )
    return run_shell(env, script, usernames)


def run_shell(env: dict[str, str], script: str, data: Any) -> Any:
    """Run `script` in `manage.py shell` for a test server's environment, with `data` as
    JSON on its standard input; what its last line printed, read as JSON."""
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=PROJECT_DIR,
        env=env,
        input=json.dumps(data),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def make_room(env: dict[str, str], slug: str, owner: str) -> None:
    """A public room owned by `owner` (a username), made directly in the database, so a
    test does not depend on how pages create rooms."""
    script = (
        "import sys\n"
        "from django.contrib.auth import get_user_model\n"
        "from rooms.models import Room\n"
        "slug, owner = sys.stdin.read().split()\n"
        "Room.objects.create(slug=slug, owner=get_user_model().objects.get(username=owner))\n"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=PROJECT_DIR,
        env=env,
        input=f"{slug} {owner}",
        capture_output=True,
        text=True,
        check=True,
    )


class RoomSocket:
    """A room's WebSocket as htmx's ws extension holds it, with what it has shown so far.

    Each pushed frame is read once, into what the page would show: the room's messages,
    private messages and presence lines in order, and `online`, the online list after
    every out-of-band swap (every connect ends its catch-up with the whole list). Frames
    are parsed with the unit suite's reader (rooms/tests/fragments.py).
    """

    def __init__(self, connection: Any, name: str) -> None:
        self.connection = connection
        self.name = name
        self.frames: list[str] = []
        self.online: dict[str, str] = {}  # element id -> username
        self._messages: list[tuple[str, str]] = []
        self._private: list[tuple[str, str, str]] = []
        self._presence: list[str] = []

    @classmethod
    async def open(
        cls, base_url: str, slug: str, sessionid: str, *, name: str = "", query: str = ""
    ) -> "RoomSocket":
        from websockets.asyncio.client import connect
        from websockets.typing import Origin

        url = base_url.replace("http://", "ws://", 1) + f"/ws/rooms/{slug}/"
        connection = await connect(
            url + (f"?{query}" if query else ""),
            origin=Origin(base_url),
            additional_headers={"Cookie": f"sessionid={sessionid}"},
            proxy=None,
            open_timeout=10,
            close_timeout=5,
        )
        return cls(connection, name or sessionid[:6])

    def __repr__(self) -> str:
        return f"<RoomSocket {self.name}>"

    async def send(self, body: str) -> None:
        """The composer's frame, as htmx sends it."""
        frame = {"body": body, "HEADERS": {"HX-Request": "true", "HX-Trigger": "composer"}}
        await self.connection.send(json.dumps(frame))

    def _apply(self, html: str) -> None:
        from rooms.tests import fragments

        self.frames.append(html)
        tree = fragments.parse(html)
        full = tree.by_id("online-users")
        if full is not None:
            self.online = {
                li.id or "": li.attrs.get("data-username") or ""
                for li in full.find_all("li")
                if "data-username" in li.attrs
            }
        update = fragments.presence_update(html)
        for element_id in update.deleted:
            self.online.pop(element_id, None)
        for li in update.appended:
            self.online[li.id or ""] = li.attrs.get("data-username") or ""
        self._presence.extend(update.lines)
        for article in fragments.messages_in(html):
            self._messages.append((article.attrs.get("data-author") or "", _body(article)))
        for article in fragments.private_messages_in(html):
            sender, recipient = (
                article.attrs.get("data-sender"),
                article.attrs.get("data-recipient"),
            )
            self._private.append((sender or "", recipient or "", _body(article)))

    async def wait_for(self, check: Callable[["RoomSocket"], Any], timeout: float = 10) -> Any:
        """Read frames until `check(self)` is true; returns its value (fails after `timeout`)."""
        async with asyncio.timeout(timeout):
            while not (result := check(self)):
                self._apply(await self.connection.recv())
        return result

    async def wait_close(self, timeout: float = 10) -> int | None:
        """Read until the server closes; the close code received (1006: none, TCP dropped)."""
        from websockets.exceptions import ConnectionClosed

        try:
            async with asyncio.timeout(timeout):
                while True:
                    self._apply(await self.connection.recv())
        except ConnectionClosed:
            pass
        return self.connection.close_code

    async def close(self) -> None:
        await self.connection.close()

    # What the page shows ------------------------------------------------------------

    def messages(self) -> list[tuple[str, str]]:
        """(author, body) of every room message shown, in order."""
        return list(self._messages)

    def private_messages(self) -> list[tuple[str, str, str]]:
        """(sender, recipient, body) of every private message shown."""
        return list(self._private)

    def presence_lines(self) -> list[str]:
        """["alice joined", "bob left", ...]: the presence lines shown, in order."""
        return list(self._presence)

    def online_usernames(self) -> set[str]:
        return set(self.online.values())


def _body(article: Any) -> str:
    body = article.find(class_="message-body")
    return body.text if body is not None else ""
