"""`make run`, the designer's server: a template edited while it runs shows on the next
request, without a restart, and the chat works there (HTTP and WebSockets).

The server is started with the very command `make -n run` prints (Daphne's `runserver`:
Django's autoreloader, which re-reads templates when one changes and restarts the
process when Python code does), on a SQLite file of its own. So that no test edits the
project's templates, it runs with settings that put one more template directory in
front of templates/ (as the project's own directory, it is watched the same way): a
login page there replaces registration/login.html, and is then edited.
"""

import os
import re
import shlex
import signal
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e import servers

pytestmark = pytest.mark.e2e


@dataclass
class DevServer:
    url: str
    log_path: Path
    templates: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def make_run_command(port: int) -> list[str]:
    """The server command of `make run` (`make -n` prints it), without its VAR=value."""
    shown = subprocess.run(
        ["make", "-s", "-n", "run", f"PORT={port}"],
        cwd=servers.PROJECT_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = [line for line in shown.replace("\\\n", " ").splitlines() if "runserver" in line]
    assert len(lines) == 1, f"make run should serve with runserver (its autoreloader):\n{shown}"
    [line] = lines
    words = shlex.split(line)
    while "=" in words[0]:
        words.pop(0)
    return words


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    root = tmp_path_factory.mktemp("devserver")
    templates = root / "templates" / "registration"
    templates.mkdir(parents=True)
    (templates / "login.html").write_text("<p>kit version 1</p>")
    (root / "devserver_settings.py").write_text(
        textwrap.dedent(f"""\
            from site_config.settings import *  # noqa: F403
            TEMPLATES[0]["DIRS"] = [{str(root / "templates")!r}, *TEMPLATES[0]["DIRS"]]
            # Which files the autoreloader watches, and what it did about a change.
            LOGGING["loggers"]["django.utils.autoreload"] = {{"level": "DEBUG"}}
        """)
    )
    port = servers.free_port()
    env = servers.server_env(
        DEBUG="true",
        DATABASE_URL=f"sqlite:///{root / 'dev.sqlite3'}",
        DJANGO_SETTINGS_MODULE="devserver_settings",
        PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
    )
    servers.migrate(env)
    log_path = root / "runserver.log"
    with log_path.open("wb") as log:
        # Its own process group: the autoreloader's parent runs the server as a child.
        process = subprocess.Popen(
            make_run_command(port),
            cwd=servers.PROJECT_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = DevServer(f"http://127.0.0.1:{port}", log_path, templates)

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"make run's server exited:\n{server.log()}")
        return servers.port_open(port)

    try:
        try:
            servers.wait_for(
                up,
                timeout=60,
                what=f"make run's server on {port}",
            )
        except TimeoutError as error:
            raise TimeoutError(f"{error}:\n{server.log()}") from None
        yield server
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def login_page(server: DevServer) -> str:
    return servers.HttpClient(server.url).get("/accounts/login/").text


def test_make_run_shows_an_edited_template_without_a_restart(dev_server: DevServer) -> None:
    assert "Starting ASGI/Daphne" in dev_server.log()  # runserver, with its autoreloader
    assert "kit version 1" in login_page(dev_server)
    # An edit before the autoreloader first looks at the file would not be one to it.
    template = dev_server.templates / "login.html"
    servers.wait_for(
        lambda: f"File {template} first seen" in dev_server.log(),
        timeout=20,
        what="the autoreloader to watch the template",
    )

    template.write_text("<p>kit version 2</p>")
    servers.wait_for(
        lambda: "kit version 2" in login_page(dev_server),
        timeout=20,
        what="the edited template to be served",
    )
    log = dev_server.log()
    assert f"{template} notified as changed" in log  # the autoreloader saw the edit
    assert len(re.findall("Starting ASGI/Daphne", log)) == 1, log  # and not restarted


async def test_make_run_serves_the_chat_over_websockets(dev_server: DevServer) -> None:
    name = f"dev_{uuid.uuid4().hex[:8]}"
    client = servers.sign_up(dev_server.url, name)
    slug = f"dev-{uuid.uuid4().hex[:8]}"
    assert client.create_room(slug).status == 200
    socket = await servers.RoomSocket.open(dev_server.url, slug, client.sessionid)
    try:
        await socket.send("hello from make run")
        await socket.wait_for(lambda s: (name, "hello from make run") in s.messages())
    finally:
        await socket.close()
