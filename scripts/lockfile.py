"""Keeps the lock files (requirements.lock, requirements-dev.lock) honest; used by the Makefile.

The requirements files say what the project depends on; `make lock` resolves them into lock
files that pin every package of the tree, transitive ones included, with the hashes of its
files. A lock made from an older requirements file would install something nobody asked for
(or miss what was just added) without a word, so `make lock` stamps each lock with a digest
of the requirements it was made from, and `make install` checks the stamp first:

    python scripts/lockfile.py stamp requirements.txt requirements.lock
    python scripts/lockfile.py check requirements.txt requirements.lock
    python scripts/lockfile.py pick requirements-dev.lock uv   # one package's locked entry

The digest covers the requirement lines of the file and of every file it includes with
`-r`, comments and blank lines aside, so a reworded comment needs no new lock but a new pin,
a changed version or an added extra (`psycopg[binary,pool]`) does. Standard library only:
it runs before anything is installed.
"""

import hashlib
import re
import sys
from pathlib import Path

STAMP_PREFIX = "# Made by `make lock` from requirements with digest sha256:"
INCLUDE = re.compile(r"^(?:-r|--requirement)\s*=?\s*(\S+)$")


def requirement_lines(path: Path, seen: frozenset[Path] = frozenset()) -> list[str]:
    """The requirement lines of `path` and of the files it includes, in order, comments out."""
    path = path.resolve()
    if path in seen:
        raise SystemExit(f"lockfile: {path} includes itself")
    lines = [f"# file {path.name}"]
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        included = INCLUDE.match(line)
        if included:
            lines += requirement_lines(path.parent / included[1], seen | {path})
        else:
            lines.append(re.sub(r"\s+", "", line))
    return lines


def digest(requirements: Path) -> str:
    return hashlib.sha256("\n".join(requirement_lines(requirements)).encode()).hexdigest()


def stamp(requirements: Path, lock: Path) -> None:
    kept = [
        line
        for line in lock.read_text(encoding="utf-8").splitlines()
        if not line.startswith(STAMP_PREFIX)
    ]
    kept.append(f"{STAMP_PREFIX}{digest(requirements)}")
    lock.write_text("\n".join(kept) + "\n", encoding="utf-8")


def check(requirements: Path, lock: Path) -> int:
    if not lock.exists():
        print(f"{lock} is missing: run `make lock` and commit it.", file=sys.stderr)
        return 1
    stamps = [
        line.removeprefix(STAMP_PREFIX)
        for line in lock.read_text(encoding="utf-8").splitlines()
        if line.startswith(STAMP_PREFIX)
    ]
    if stamps != [digest(requirements)]:
        print(
            f"{lock} was not made from the current {requirements} (or the files it "
            f"includes): run `make lock` and commit both.",
            file=sys.stderr,
        )
        return 1
    return 0


def pick(lock: Path, name: str) -> int:
    """Print the lock's entry for one package (its pin, its hashes), for `pip install -r`."""
    wanted = re.sub(r"[-_.]+", "-", name).lower()
    if not lock.exists():
        print(f"{lock} is missing: install {name} by hand once, then `make lock`", file=sys.stderr)
        return 1
    entry: list[str] = []
    for line in lock.read_text(encoding="utf-8").splitlines():
        if entry and line.startswith("    --hash="):
            entry.append(line)
        elif entry:
            break
        pinned = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", line)
        if pinned and re.sub(r"[-_.]+", "-", pinned[1]).lower() == wanted:
            entry.append(line)
    if not entry:
        print(f"{lock} has no entry for {name}", file=sys.stderr)
        return 1
    print("\n".join(entry).rstrip(" \\"))
    return 0


def main(argv: list[str]) -> int:
    match argv:
        case ["stamp", requirements, lock]:
            stamp(Path(requirements), Path(lock))
            return 0
        case ["check", requirements, lock]:
            return check(Path(requirements), Path(lock))
        case ["pick", lock, name]:
            return pick(Path(lock), name)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
