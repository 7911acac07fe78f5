"""The servers under test, each a subprocess on a free loopback port.

- ours / ours-redis: Daphne serving bench.ours_asgi (our application plus a render
  counter), on the in-memory layer or on Redis (the pub/sub layer, as settings choose);
- ours-redis-x2: two such Daphne processes behind the same Redis and the same database
  (scale-out, issue 16): a fleet's sockets alternate between them, senders on both;
- tutorial: Daphne serving bench.tutorial (the classic synchronous consumer);
- ceiling: bench.ceiling, a bare `websockets` broadcast server.

Daphne gets the flags e2e/servers.py gives it. Each Django server has its own copy of
one prepared SQLite file (users, sessions, the room), with DEBUG off.
"""

import asyncio
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from e2e.servers import PROJECT_DIR, daphne_command, free_port, server_env, wait_for

SERVER_NAMES = ("ours", "ours-redis", "ours-redis-x2", "tutorial", "ceiling")
ROOM = "bench"


def encode_ours(text: str, token: str = "") -> bytes:
    # What htmx's ws extension sends for the composer form (`token`: its send id, which
    # a page sends again with the same text when the first answer was lost).
    return json.dumps(
        {
            "body": text,
            **({"token": token} if token else {}),
            "HEADERS": {
                "HX-Request": "true",
                "HX-Trigger": "composer",
                "HX-Trigger-Name": None,
                "HX-Target": "composer",
                "HX-Current-URL": f"http://127.0.0.1/rooms/{ROOM}/",
            },
        }
    ).encode()


def encode_tutorial(text: str) -> bytes:
    return json.dumps({"message": text}).encode()


def encode_ceiling(text: str) -> bytes:
    return text.encode()


def bench_env(
    db_path: Path, redis_url: str = "", app_dir: Path | None = None, **overrides: str
) -> dict[str, str]:
    """The server environment: e2e's (DEBUG off), this run's database, and the app
    (another checkout with `app_dir`, for before/after runs) ahead of bench/ on the path."""
    app = app_dir or PROJECT_DIR
    env = server_env(
        DATABASE_URL=f"sqlite:///{db_path}",
        # The per-user flood limit would refuse a benchmark's senders at once.
        CHAT_RATE_BURST="1000000000",
        CHAT_RATE_PER_SECOND="1000000000",
        # So would the per-socket flood limits: a sender socket sends hundreds of frames a
        # second, and an overloaded server is measured as late or lost, not as closed.
        CHAT_SOCKET_FRAME_BURST="1000000000",
        CHAT_SOCKET_FRAMES_PER_SECOND="1000000000",
        CHAT_SOCKET_MAX_QUEUED_FRAMES="1000000000",
        CHAT_SOCKET_MAX_QUEUED_BYTES="1000000000000",
        # One log line per message and per connection is I/O the other servers don't do.
        CHAT_LOG_LEVEL="WARNING",
        PYTHONPATH=f"{app}:{PROJECT_DIR}",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(overrides)
    return env


def prepare_database(
    work: Path, users: int, app_dir: Path | None = None, rooms: int = 1
) -> tuple[Path, list[str], list[str]]:
    """Migrate a fresh SQLite file and fill it (`rooms` rooms: bench.prepare.room_slugs);
    returns (path, usernames, session keys)."""
    db_path = work / "base.sqlite3"
    env = bench_env(db_path, app_dir=app_dir)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=app_dir or PROJECT_DIR,
        env=env,
        check=True,
    )
    out = work / "sessions.json"
    subprocess.run(
        [sys.executable, "-m", "bench.prepare", str(users), str(out), str(rooms)],
        cwd=app_dir or PROJECT_DIR,
        env=env,
        check=True,
    )
    data = json.loads(out.read_text())
    return db_path, data["usernames"], data["sessions"]


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen
    log_path: Path
    path: str
    encode: Callable[[str], bytes]
    cookies: bool
    extra_pids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ps = psutil.Process(self.process.pid)
        self.extra = [psutil.Process(pid) for pid in self.extra_pids]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ports(self) -> list[int]:
        """Where its sockets go: one port, or a pair's two (ServerPair)."""
        return [self.port]

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return times.user + times.system

    def extra_cpu_seconds(self) -> float:
        return sum(p.cpu_times().user + p.cpu_times().system for p in self.extra)

    def rss(self) -> int:
        return self.ps.memory_info().rss

    def stats(self) -> dict[str, Any]:
        if not self.name.startswith("ours"):
            return {}
        url = f"http://127.0.0.1:{self.port}/__bench__/stats"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())

    def trim(self) -> None:
        """Ours only: collect garbage and return free heap pages to the system."""
        url = f"http://127.0.0.1:{self.port}/__bench__/trim"
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait_ready(self, timeout: float = 60) -> None:
        try:
            wait_for(
                lambda: _healthy(self.port, self.process, self.log_path),
                timeout=timeout,
                what=f"{self.name} on {self.port}",
            )
        except BaseException:
            self.process.kill()
            raise

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    async def settle(self, below: float = 0.05, cap_s: float = 60.0) -> float:
        """Wait until the server is idle (CPU below `below` of a core over 0.3 s)."""
        start = time.monotonic()
        while time.monotonic() - start < cap_s:
            before = self.cpu_seconds()
            await asyncio.sleep(0.3)
            if (self.cpu_seconds() - before) / 0.3 < below:
                break
        return time.monotonic() - start


@dataclass
class ServerPair(Server):
    """ours-redis-x2: two processes of ours on one Redis and one SQLite file (WAL), as a
    deployment scales out. This object is the first; `peers` the other. CPU, RSS and
    renders are both processes' (each message is rendered once, by the process that took
    it: the sum stays 1 per message); measure.fleet_for splits a fleet between `ports`."""

    peers: list[Server] = field(default_factory=list)

    @property
    def ports(self) -> list[int]:
        return [self.port, *(peer.port for peer in self.peers)]

    def cpu_seconds(self) -> float:
        return super().cpu_seconds() + sum(peer.cpu_seconds() for peer in self.peers)

    def rss(self) -> int:
        return super().rss() + sum(peer.rss() for peer in self.peers)

    def stats(self) -> dict[str, Any]:
        merged = super().stats()
        for peer in self.peers:
            other = peer.stats()
            for partial, count in other.get("renders", {}).items():
                merged["renders"][partial] = merged["renders"].get(partial, 0) + count
            for gen, pauses in other.get("gc", {}).items():
                mine = merged["gc"][gen]
                mine["count"] += pauses["count"]
                mine["total_ms"] = round(mine["total_ms"] + pauses["total_ms"], 1)
                mine["max_ms"] = max(mine["max_ms"], pauses["max_ms"])
        return merged

    def trim(self) -> None:
        super().trim()
        for peer in self.peers:
            peer.trim()

    def wait_ready(self, timeout: float = 60) -> None:
        super().wait_ready(timeout)
        for peer in self.peers:
            peer.wait_ready(timeout)

    def alive(self) -> bool:
        return super().alive() and all(peer.alive() for peer in self.peers)

    def stop(self) -> None:
        super().stop()
        for peer in self.peers:
            peer.stop()


def start_pair(
    name: str,
    work: Path,
    base_db: Path,
    redis_url: str,
    redis_pid: int | None = None,
    env_overrides: dict[str, str] | None = None,
    app_dir: Path | None = None,
    wait: bool = True,
) -> ServerPair:
    """ours-redis-x2: two Daphne processes of ours sharing Redis and a database copy."""
    if not redis_url:
        raise ValueError("ours-redis-x2 needs Redis")
    db_path = work / f"x2-{free_port()}.sqlite3"
    shutil.copyfile(base_db, db_path)
    env = bench_env(db_path, redis_url, app_dir, **(env_overrides or {}))
    started = []
    for _ in range(2):
        port = free_port()
        log_path = work / f"ours-redis-x2-{port}.log"
        process = spawn(
            daphne_command(port, "bench.ours_asgi:application"),
            app_dir or PROJECT_DIR,
            env,
            log_path,
        )
        started.append((port, process, log_path))
    (port, process, log_path), peers = started[0], started[1:]
    pair = ServerPair(
        name=name,
        port=port,
        process=process,
        log_path=log_path,
        path=f"/ws/rooms/{ROOM}/",
        encode=encode_ours,
        cookies=True,
        extra_pids=[redis_pid] if redis_pid else [],
        peers=[
            Server(f"{name}/{i + 2}", p, proc, lp, f"/ws/rooms/{ROOM}/", encode_ours, True)
            for i, (p, proc, lp) in enumerate(peers)
        ],
    )
    if wait:
        pair.wait_ready()
    return pair


def spawn(command: list[str], cwd: Path, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """A server process, its output (both streams) in `log_path`."""
    with log_path.open("wb") as log:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)


def _healthy(port: int, process: subprocess.Popen, log_path: Path) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
        return response.status == 200


def start(
    name: str,
    work: Path,
    base_db: Path,
    redis_url: str = "",
    redis_pid: int | None = None,
    env_overrides: dict[str, str] | None = None,
    app_dir: Path | None = None,
    wait: bool = True,
    asgi_module: str = "bench.ours_asgi",
) -> Server:
    """Start one server; with wait=False, call `wait_ready()` before using it (so that
    several can start at once). `asgi_module` serves ours (e.g. bench.memory_asgi)."""
    # "ours@/path/to/checkout" serves another copy of the app: before/after in one run.
    kind, _, other_app = name.partition("@")
    if other_app:
        app_dir = Path(other_app).resolve()
        name = f"{kind}@{app_dir.name}"
    if kind == "ours-redis-x2":
        return start_pair(name, work, base_db, redis_url, redis_pid, env_overrides, app_dir, wait)
    port = free_port()
    log_path = work / f"{kind}-{port}.log"
    overrides = env_overrides or {}
    if kind == "ceiling":
        command = [sys.executable, "-m", "bench.ceiling", str(port)]
        env = server_env(PYTHONPATH=str(PROJECT_DIR))
        cwd = PROJECT_DIR
    else:
        db_path = work / f"{kind}-{port}.sqlite3"
        shutil.copyfile(base_db, db_path)
        module = "bench.tutorial" if kind == "tutorial" else asgi_module
        env = bench_env(db_path, redis_url if kind == "ours-redis" else "", app_dir, **overrides)
        cwd = app_dir or PROJECT_DIR
        command = daphne_command(port, f"{module}:application")
    process = spawn(command, cwd, env, log_path)
    server = Server(
        name=name,
        port=port,
        process=process,
        log_path=log_path,
        path="/" if kind == "ceiling" else f"/ws/rooms/{ROOM}/",
        encode={
            "ours": encode_ours,
            "ours-redis": encode_ours,
            "tutorial": encode_tutorial,
            "ceiling": encode_ceiling,
        }[kind],
        cookies=kind != "ceiling",
        extra_pids=[redis_pid] if (kind == "ours-redis" and redis_pid) else [],
    )
    if wait:
        server.wait_ready()
    return server
