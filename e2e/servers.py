"""Real servers for the browser and multi-process tests: Daphne, Redis, PostgreSQL.

Each server is a subprocess on a free loopback port, started and stopped by a context
manager, so a test can run two Daphnes on one database, or stop Redis mid-conversation.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


def server_env(**overrides: str) -> dict[str, str]:
    """The environment for a test server: DEBUG off, as in production, over plain HTTP."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(
        DEBUG="false",
        SECRET_KEY="e2e-secret-key-not-for-production-0123456789abcdefghijklmnop",
        SECURE_SSL_REDIRECT="false",
        SECURE_COOKIES="false",
        SECURE_HSTS_SECONDS="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


def collect_static(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=PROJECT_DIR,
        env=env,
        check=True,
    )


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=PROJECT_DIR,
        env=env,
        check=True,
    )


class DaphneProcess:
    def __init__(self, env: dict[str, str], port: int, log_path: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "--websocket_max_message_size",
                str(64 * 1024),
                "--websocket_timeout",
                "-1",  # Daphne's default closes every socket after a day, with 1000
                "site_config.asgi:application",
            ],
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
