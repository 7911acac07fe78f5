"""The suites do not depend on the shell's environment (conftest.py, "The environment").

A variable of the app's exported in the shell (say CHAT_RATE_BURST=1, left from running a
server by hand) is taken out before the settings are read, so tests that count on the
defaults still pass.
"""

import os
import subprocess
import sys
from pathlib import Path

from conftest import APP_VARIABLES
from site_config import settings as settings_module

PROJECT_DIR = Path(__file__).resolve().parents[2]
# A test that counts on the default rate limit (a burst of 10).
RATE_LIMIT_TEST = (
    "rooms/tests/test_views.py::test_posting_too_fast_is_refused_with_429_and_keeps_the_text"
)


def test_every_variable_the_settings_read_is_taken_out_for_the_tests() -> None:
    read = set(settings_module.variables_read)
    assert read >= {"DEBUG", "CHAT_RATE_BURST", "DATABASE_POOL_MAX_SIZE"}  # it is recorded
    assert {name for name in read if not APP_VARIABLES.fullmatch(name)} == set()


def test_the_suites_keep_what_they_are_meant_to_take_from_the_environment() -> None:
    kept = ["DATABASE_URL", "TEST_POSTGRES_URL", "CI", "PLAYWRIGHT_CHROMIUM"]
    assert [name for name in kept if APP_VARIABLES.fullmatch(name)] == []


def pytest_in_a_shell(**exported: str) -> subprocess.CompletedProcess[str]:
    """Run RATE_LIMIT_TEST as `make test` would from a shell that exported `exported` (on
    SQLite, and without the DJANGO_SETTINGS_MODULE this process's conftest.py set)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(exported)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", RATE_LIMIT_TEST],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
    )


def test_an_exported_rate_limit_does_not_change_the_tests() -> None:
    result = pytest_in_a_shell(CHAT_RATE_BURST="1", DEBUG="true", SECRET_KEY="the shell's")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_variables_read_before_conftest_could_take_them_out_stop_the_run() -> None:
    """With DJANGO_SETTINGS_MODULE exported as well, pytest-django reads the settings before
    conftest.py runs: the run stops and says why, rather than testing other settings."""
    result = pytest_in_a_shell(
        CHAT_RATE_BURST="1", DJANGO_SETTINGS_MODULE="site_config.settings", SECRET_KEY="x"
    )
    assert result.returncode != 0
    assert (
        "CHAT_RATE_BURST, SECRET_KEY exported, and DJANGO_SETTINGS_MODULE too: the settings "
        "were read before conftest.py could take the app's variables out."
    ) in result.stdout + result.stderr
