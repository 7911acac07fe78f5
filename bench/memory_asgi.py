"""bench.ours_asgi with a memory probe: `daphne bench.memory_asgi:application`.

With BENCH_TRACEMALLOC=<frames> set, tracemalloc starts before anything of the app is
imported, keeping that many frames per allocation. Two endpoints (used by bench/memory.py):

- GET /__bench__/memory/mark: collect garbage, then remember a snapshot and the count of
  live objects per type (the baseline: no socket open);
- GET /__bench__/memory/diff?sockets=N: collect, snapshot again, and answer what grew
  since the mark, per socket: bytes by allocating file, by component (the innermost
  frame that is not the standard library: Daphne, autobahn, Twisted, channels, ...) and
  objects by type; the running tasks by coroutine; with &referrers=Type,Type, what
  refers to the newest object of each type (who keeps it alive).

tracemalloc costs memory and time itself: the RSS figures of bench/cli.py come from runs
without it (bench.ours_asgi). This entry is for where the bytes go, not how many.
"""

import os
import tracemalloc

_FRAMES = int(os.environ.get("BENCH_TRACEMALLOC", "0") or 0)
if _FRAMES:
    tracemalloc.start(_FRAMES)

# isort: split
import gc  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import sysconfig  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

from bench.ours_asgi import application as ours_application  # noqa: E402

# Where a package lives decides its component; the first match (innermost frame first)
# that is not the standard library names who asked for the memory.
COMPONENTS = (
    ("/daphne/", "daphne"),
    ("/autobahn/", "autobahn"),
    ("/txaio/", "autobahn"),
    ("/twisted/", "twisted"),
    ("/channels_redis/", "channels_redis"),
    ("/channels/", "channels"),
    ("/asgiref/", "asgiref"),
    ("/redis/", "redis-py"),
    ("/msgpack/", "msgpack"),
    ("/django/", "django"),
    ("/realtime/", "realtime"),
    ("/rooms/", "rooms"),
    ("/site_config/", "site_config"),
    ("/bench/", "bench"),
)
_STDLIB = sysconfig.get_paths()["stdlib"]

_baseline: dict[str, Any] = {}


def component(traceback: tracemalloc.Traceback) -> str:
    """Who allocated: the innermost frame in a known package, else the innermost file's
    standard library module (e.g. "stdlib: asyncio/queues.py")."""
    for frame in reversed(traceback):  # (tracemalloc lists the innermost frame last)
        for marker, name in COMPONENTS:
            if marker in frame.filename:
                return name
    first = traceback[-1].filename if len(traceback) else "?"
    if first.startswith(_STDLIB):
        return "stdlib: " + first[len(_STDLIB) + 1 :]
    return first


def _caller(traceback: tracemalloc.Traceback) -> str:
    """The innermost frame outside the standard library, as file:line."""
    for frame in reversed(traceback):
        if not frame.filename.startswith(_STDLIB) or "site-packages" in frame.filename:
            return f"{_short(frame.filename)}:{frame.lineno}"
    return f"{_short(traceback[-1].filename)}:{traceback[-1].lineno}"


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path.removeprefix(os.getcwd() + "/")


def _type_counts() -> Counter[str]:
    return Counter(type(o).__qualname__ for o in gc.get_objects())


def _referrers(type_name: str) -> list[str]:
    """What refers to the newest object of this type (a debugging aid)."""
    found = [o for o in gc.get_objects() if type(o).__qualname__ == type_name]
    if not found:
        return []
    out = []
    for ref in gc.get_referrers(found[-1]):
        if isinstance(ref, dict):
            owners = [
                type(o).__qualname__
                for o in gc.get_referrers(ref)
                if not isinstance(o, (list, dict))
            ][:3]
            keys = [k for k, v in ref.items() if v is found[-1]][:3]
            out.append(f"dict{keys} of {owners}")
        else:
            out.append(type(ref).__qualname__ + ": " + repr(ref)[:120])
    return out[:8]


def mark() -> dict[str, Any]:
    gc.collect()
    _baseline["types"] = _type_counts()
    _baseline["snapshot"] = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
    return {"marked": True, "tracing": tracemalloc.is_tracing()}


def diff(sockets: int, referrers: tuple[str, ...] = ()) -> dict[str, Any]:
    gc.collect()
    per = max(1, sockets)
    types = _type_counts()
    grown = {
        name: round((count - _baseline["types"].get(name, 0)) / per, 2)
        for name, count in types.items()
        if count - _baseline["types"].get(name, 0) >= per / 2
    }
    result: dict[str, Any] = {
        "sockets": sockets,
        "objects_per_socket": dict(sorted(grown.items(), key=lambda kv: -kv[1])),
        "gc_objects_per_socket": round(
            (sum(types.values()) - sum(_baseline["types"].values())) / per, 1
        ),
    }
    import asyncio

    tasks = Counter(getattr(t.get_coro(), "__qualname__", "?") for t in asyncio.all_tasks())
    result["tasks"] = dict(tasks.most_common(12))
    result["referrers"] = {name: _referrers(name) for name in referrers}
    before = _baseline.get("snapshot")
    if before is None:
        return result
    after = tracemalloc.take_snapshot()
    by_file: Counter[str] = Counter()
    for stat in after.compare_to(before, "filename"):
        by_file[_short(stat.traceback[0].filename)] += stat.size_diff
    by_line: Counter[str] = Counter()
    for stat in after.compare_to(before, "lineno"):
        frame = stat.traceback[0]
        by_line[f"{_short(frame.filename)}:{frame.lineno}"] += stat.size_diff
    # Per component: every trace's bytes after, less every trace's bytes before (the
    # component of a traceback is looked up once; snapshots share traceback objects).
    by_component: defaultdict[str, int] = defaultdict(int)
    names: dict[tracemalloc.Traceback, str] = {}
    for sign, snapshot in ((1, after), (-1, before)):
        for trace in snapshot.statistics("traceback"):
            name = names.get(trace.traceback)
            if name is None:
                name = names[trace.traceback] = component(trace.traceback)
            by_component[name] += sign * trace.size
    by_caller: Counter[str] = Counter()
    for stat in after.compare_to(before, "traceback"):
        by_caller[_caller(stat.traceback)] += stat.size_diff
    total = sum(by_component.values())
    result.update(
        {
            "traced_bytes_per_socket": round(total / per),
            "by_component": {
                k: round(v / per)
                for k, v in sorted(by_component.items(), key=lambda kv: -kv[1])
                if abs(v) >= per  # (a byte a socket or more)
            },
            "by_file": {k: round(v / per) for k, v in by_file.most_common(25)},
            "by_line": {k: round(v / per) for k, v in by_line.most_common(40)},
            "by_caller": {k: round(v / per) for k, v in by_caller.most_common(40)},
        }
    )
    return result


async def _json(send: Any, body: dict[str, Any]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path = scope.get("path", "")
    if scope["type"] == "http" and path == "/__bench__/memory/mark":
        await _json(send, mark())
        return
    if scope["type"] == "http" and path == "/__bench__/memory/diff":
        query = parse_qs(scope.get("query_string", b"").decode())
        types = tuple(filter(None, query.get("referrers", [""])[0].split(",")))
        await _json(send, diff(int(query.get("sockets", ["1"])[0]), types))
        return
    await ours_application(scope, receive, send)


print(f"bench.memory_asgi: tracemalloc frames={_FRAMES}", file=sys.stderr)
