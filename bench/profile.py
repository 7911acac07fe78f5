"""`python -m bench.profile` (`make profile`): where the server's CPU goes under fan-out load.

Starts our server as the benchmark does (Daphne, bench.ours_asgi, DEBUG off, SQLite, the
in-memory layer, or Redis with --redis), connects N sockets to one room, offers `--rate`
deliveries/s for `--duration` seconds, and meanwhile samples the server with py-spy
(`py-spy record --function --threads`: idle samples are not recorded, so what is left is
time spent running). Prints the step's figures (p99, CPU per delivery) and the top frames:
by own time (the function on top of the stack) and by total time (anywhere on the stack),
per thread (the event loop's, the ORM thread's), as shares of the samples. The raw
profile (collapsed stacks; `--format speedscope` for https://www.speedscope.app) is kept.
With `--storm` it samples N sockets connecting at once instead (64 handshakes in flight,
as `python -m bench --connect N`), and prints the storm's figures.

    .venv/bin/python -m bench.profile --n 100 --rate 16000 --duration 20
    .venv/bin/python -m bench.profile --storm --n 1000 [--redis]
"""

import argparse
import asyncio
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from bench import measure, servers
from bench.limits import raise_nofile

PY_SPY = Path(sys.executable).parent / "py-spy"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--n", type=int, default=100, help="sockets in the room")
    parser.add_argument("--rate", type=float, default=16000, help="deliveries/s offered")
    parser.add_argument("--duration", type=float, default=20, help="seconds sampled")
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument(
        "--storm",
        action="store_true",
        help="sample a connect storm instead: N sockets connecting, 64 handshakes in flight",
    )
    parser.add_argument("--sample-rate", type=int, default=100, help="py-spy samples/s")
    parser.add_argument("--redis", action="store_true", help="the Redis layer (ours-redis)")
    parser.add_argument("--app-dir", help="profile another checkout of the app")
    parser.add_argument("--top", type=int, default=25, help="frames listed per table")
    parser.add_argument("--format", choices=("raw", "speedscope"), default="raw")
    parser.add_argument("--out", help="where the profile goes (default: bench/results/)")
    return parser.parse_args(argv)


# A raw line: "thread (0x7f..);function (path/to/file.py:12);... 42". With --function, a
# frame's line is its function's first line, so one function is one frame.
_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    """`function (…/site-packages/autobahn/websocket/protocol.py:123)` as
    `function (autobahn/websocket/protocol.py:123)`."""
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "/lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker.startswith("/lib"):
                path = "stdlib/" + path.split("/", 1)[1]
            break
    else:
        path = re.sub(r"^.*?/(?=(realtime|rooms|bench|site_config|accounts)/)", "", path)
    line = f":{match['line']}" if match["line"] else ""
    return f"{match['name']} ({path}{line})"


def top_frames(raw: str, top: int) -> str:
    """Tables of the frames with the most samples: own and total, per thread."""
    threads: Counter[str] = Counter()
    own: dict[str, Counter[str]] = defaultdict(Counter)
    total: dict[str, Counter[str]] = defaultdict(Counter)
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0] if frames[0].startswith(("thread ", "process ")) else "?"
        # Daphne's loop is the process's main thread; others are the ORM's executor's.
        if frames[0].startswith("process "):
            frames = frames[1:]
            thread = frames[0] if frames and frames[0].startswith("thread ") else "?"
        frames = [short(f) for f in frames if not f.startswith(("thread ", "process "))]
        if not frames:
            continue
        samples += count
        threads[thread] += count
        own[thread][frames[-1]] += count
        for frame in set(frames):
            total[thread][frame] += count
    if not samples:
        return "no samples (was the server busy? py-spy needs ptrace permission)\n"
    lines = [f"{samples} samples while running, by thread:"]
    for thread, count in threads.most_common():
        lines.append(f"  {100 * count / samples:5.1f}%  {thread}")
    for thread, count in threads.most_common(2):
        # (Without the frames under every sample of the thread: its loop, its bootstrap.)
        inner = Counter({f: n for f, n in total[thread].items() if n < 0.98 * count})
        for title, table in (("own", own[thread]), ("total", inner)):
            lines.append("")
            lines.append(f"{thread}: top {top} by {title} time (% of all samples)")
            for frame, n in table.most_common(top):
                lines.append(f"  {100 * n / samples:5.1f}%  {frame}")
    return "\n".join(lines) + "\n"


async def profile(args: argparse.Namespace, work: Path, out: Path) -> dict[str, Any]:
    app_dir = Path(args.app_dir).resolve() if args.app_dir else None
    print(f"preparing {args.n} users in {work}", file=sys.stderr)
    base_db, _, sessions = servers.prepare_database(work, args.n, app_dir)
    redis_url, redis_pid, stack = "", None, None
    if args.redis:
        from e2e.servers import redis

        stack = redis()
        redis_server = stack.__enter__()
        redis_url, redis_pid = redis_server.url, redis_server.pid
    name = "ours-redis" if args.redis else "ours"
    server = servers.start(name, work, base_db, redis_url, redis_pid, app_dir=app_dir)
    try:
        fleet = measure.fleet_for(server)
        if args.storm:
            return await _profile_storm(args, server, fleet, sessions, out)
        connected = await measure.connect(server, fleet, sessions, args.n, concurrency=16)
        if connected.get("error"):
            raise RuntimeError(f"connect failed: {connected}")
        await server.settle()
        # Warm up (lazy imports, caches), then sample a step of its own.
        await measure.step(server, fleet, args.rate, 2, args.senders)
        await server.settle()
        spy = _py_spy(server.process.pid, args, out)
        await asyncio.sleep(1)  # py-spy attached
        step = await measure.step(server, fleet, args.rate, args.duration, args.senders)
        await _finish(spy, args.duration)
        await fleet.close()
        return step
    finally:
        server.stop()
        if stack is not None:
            stack.__exit__(None, None, None)


def _py_spy(pid: int, args: argparse.Namespace, out: Path) -> subprocess.Popen[bytes]:
    command = [str(PY_SPY), "record", "--pid", str(pid), "--duration", str(int(args.duration))]
    command += ["--rate", str(args.sample_rate), "--function", "--threads"]
    command += ["--format", args.format, "--output", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def _finish(spy: subprocess.Popen[bytes], duration: float) -> None:
    stderr = await asyncio.to_thread(spy.communicate, None, duration + 30)
    if spy.returncode:
        raise RuntimeError(f"py-spy failed ({spy.returncode}): {stderr[1].decode()}")


async def _profile_storm(
    args: argparse.Namespace,
    server: servers.Server,
    fleet: Any,
    sessions: list[str],
    out: Path,
) -> dict[str, Any]:
    """Sample the server while N sockets connect to one room at once (the connect storm of
    `python -m bench --connect N`); py-spy stops after --duration or when the storm ends."""
    await asyncio.sleep(1)  # (the server's own start-up is not the storm's)
    spy = _py_spy(server.process.pid, args, out)
    await asyncio.sleep(1)  # py-spy attached
    connected = await measure.connect(server, fleet, sessions, args.n, concurrency=64)
    spy.send_signal(signal.SIGINT)  # (py-spy writes what it has on SIGINT)
    await _finish(spy, args.duration)
    await fleet.close()
    return connected


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_nofile()
    work = Path(tempfile.mkdtemp(prefix="hypertalk-profile-"))
    suffix = "txt" if args.format == "raw" else "speedscope.json"
    default = Path(__file__).parent / "results" / f"profile-{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(args.out) if args.out else default.with_suffix(f".{suffix}")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        step = asyncio.run(profile(args, work, out))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.storm:
        print(json.dumps(step))
    else:
        keys = ("offered", "deliveries_per_s", "p50_ms", "p99_ms", "loss", "frames")
        print(" ".join(f"{key}={step.get(key)}" for key in keys))
        print(
            f"server CPU per delivery {step['server_cpu_us_per_delivery']} us (py-spy pauses the"
            f" process to sample it: higher than unprofiled), load {step['load1']}"
        )
    if args.format == "raw":
        print(top_frames(out.read_text(), args.top))
    print(f"profile: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
