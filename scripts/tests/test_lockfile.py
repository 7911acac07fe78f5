"""The lock files: made from the requirements as they are, pinning what they pin, with
hashes; and scripts/lockfile.py, which `make install` trusts to say when one is stale."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCKS = {"requirements.txt": "requirements.lock", "requirements-dev.txt": "requirements-dev.lock"}

_spec = importlib.util.spec_from_file_location("lockfile", ROOT / "scripts" / "lockfile.py")
assert _spec is not None and _spec.loader is not None
lockfile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lockfile)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock: Path) -> dict[str, set[str]]:
    """{package: {versions}} (a package may be locked twice, under exclusive markers)."""
    versions: dict[str, set[str]] = {}
    for line in lock.read_text().splitlines():
        pinned = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if pinned:
            versions.setdefault(canonical(pinned[1]), set()).add(pinned[2])
    return versions


@pytest.mark.parametrize(("requirements", "lock"), LOCKS.items())
def test_each_lock_was_made_from_the_requirements_as_they_are(requirements, lock) -> None:
    assert lockfile.check(ROOT / requirements, ROOT / lock) == 0, "run `make lock`"


@pytest.mark.parametrize(("requirements", "lock"), LOCKS.items())
def test_each_pin_is_locked_at_its_version(requirements, lock) -> None:
    locked = locked_versions(ROOT / lock)
    pins = [
        re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)$", line)
        for line in lockfile.requirement_lines(ROOT / requirements)
        if not line.startswith("# file ")
    ]
    assert all(pins), "every requirement is pinned with =="
    for pin in pins:
        assert pin is not None
        assert locked.get(canonical(pin[1])) == {pin[2]}, pin[0]


@pytest.mark.parametrize("lock", LOCKS.values())
def test_every_locked_package_has_its_hashes_and_the_transport_is_pinned(lock) -> None:
    text = (ROOT / lock).read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    for entry in entries:
        if "==" in entry.split("\n", 1)[0]:
            assert "--hash=sha256:" in entry, entry.split("\n", 1)[0]
    # The packages whose internals realtime/ patches: pinned through Daphne, not by us.
    assert {"twisted", "autobahn", "daphne"} <= set(locked_versions(ROOT / lock))


def test_a_changed_pin_or_extra_makes_a_lock_stale_and_a_comment_does_not(tmp_path) -> None:
    base = tmp_path / "base.txt"
    base.write_text("# runtime\nDjango==5.2.19\npsycopg[binary]==3.3.9\n")
    dev = tmp_path / "dev.txt"
    dev.write_text("-r base.txt\npytest==9.2.0  # tests\n")
    lock = tmp_path / "dev.lock"
    lock.write_text("# locked by hand for the test\npytest==9.2.0 \\\n    --hash=sha256:00\n")
    lockfile.stamp(dev, lock)
    assert lockfile.check(dev, lock) == 0

    base.write_text("# runtime, reworded\nDjango==5.2.19\npsycopg[binary]==3.3.9\n")
    dev.write_text("-r base.txt\npytest==9.2.0  # the test runner\n")
    assert lockfile.check(dev, lock) == 0

    base.write_text("Django==5.2.19\npsycopg[binary,pool]==3.3.9\n")  # an extra, in an include
    assert lockfile.check(dev, lock) == 1
    base.write_text("Django==5.2.20\npsycopg[binary]==3.3.9\n")
    assert lockfile.check(dev, lock) == 1
    lockfile.stamp(dev, lock)  # again: one stamp, the new one
    assert lockfile.check(dev, lock) == 0
    assert lock.read_text().count(lockfile.STAMP_PREFIX) == 1


def test_pick_prints_one_packages_entry_with_its_hashes(capsys) -> None:
    assert lockfile.pick(ROOT / "requirements-dev.lock", "uv") == 0
    entry = capsys.readouterr().out.splitlines()
    assert re.match(r"^uv==\S+ \\$", entry[0]), entry[0]
    assert entry[1:] and all(line.strip().startswith("--hash=sha256:") for line in entry[1:])
    assert lockfile.pick(ROOT / "requirements-dev.lock", "no-such-package") == 1
