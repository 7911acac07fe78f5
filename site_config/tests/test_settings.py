"""Settings parse strictly (site_config/settings.py): a value that is not what its variable
takes stops start-up, naming the variable and the value, instead of passing for something
else ("treu" for false) or ending in a bare ValueError traceback.

Each case starts a fresh Python with its own environment, as a server would start.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]
SHOW_SETTINGS = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({
    "DEBUG": s.DEBUG,
    "ALLOWED_HOSTS": s.ALLOWED_HOSTS,
    "CSRF_TRUSTED_ORIGINS": s.CSRF_TRUSTED_ORIGINS,
    "CONN_MAX_AGE": s.DATABASES["default"]["CONN_MAX_AGE"],
    "SECURE_SSL_REDIRECT": s.SECURE_SSL_REDIRECT,
    "SESSION_COOKIE_SECURE": s.SESSION_COOKIE_SECURE,
    "SECURE_HSTS_SECONDS": s.SECURE_HSTS_SECONDS,
    "SECURE_HSTS_PRELOAD": s.SECURE_HSTS_PRELOAD,
    "BEHIND_PROXY": s.BEHIND_PROXY,
    "STATIC_ROOT": str(s.STATIC_ROOT),
    "CHAT_RATE_BURST": s.CHAT_RATE_BURST,
    "CHAT_RATE_PER_SECOND": s.CHAT_RATE_PER_SECOND,
    "CHAT_MAX_REQUEST_BYTES": s.CHAT_MAX_REQUEST_BYTES,
    "CHAT_SOCKET_MAX_QUEUED_FRAMES": s.CHAT_SOCKET_MAX_QUEUED_FRAMES,
    "CHAT_SOCKET_MAX_QUEUED_BYTES": s.CHAT_SOCKET_MAX_QUEUED_BYTES,
    "CHAT_SOCKET_FRAME_BURST": s.CHAT_SOCKET_FRAME_BURST,
    "CHAT_SOCKET_FRAMES_PER_SECOND": s.CHAT_SOCKET_FRAMES_PER_SECOND,
    "CHAT_SOCKET_MAX_BUFFERED_BYTES": s.CHAT_SOCKET_MAX_BUFFERED_BYTES,
    "CHAT_MAX_SOCKETS_PER_USER": s.CHAT_MAX_SOCKETS_PER_USER,
    "CHAT_ALLOW_UNVERIFIED_DAPHNE": s.CHAT_ALLOW_UNVERIFIED_DAPHNE,
    "LOGIN_FAILURE_LIMIT": s.LOGIN_FAILURE_LIMIT,
    "LOGIN_COOLOFF_MINUTES": s.LOGIN_COOLOFF_MINUTES,
    "SIGNUPS_PER_HOUR": s.SIGNUPS_PER_HOUR,
    "CHAT_ROOMS_PER_USER_PER_DAY": s.CHAT_ROOMS_PER_USER_PER_DAY,
    "CHAT_ROOMS_PAGE_SIZE": s.CHAT_ROOMS_PAGE_SIZE,
    "CHAT_ONLINE_LIST_LIMIT": s.CHAT_ONLINE_LIST_LIMIT,
    "CHAT_CATCHUP_LIMIT": s.CHAT_CATCHUP_LIMIT,
    "CHAT_PRESENCE_TTL": s.CHAT_PRESENCE_TTL,
    "CHAT_PRESENCE_LEAVE_GRACE": s.CHAT_PRESENCE_LEAVE_GRACE,
    "CHAT_LAYER_CHECK_SECONDS": s.CHAT_LAYER_CHECK_SECONDS,
    "CHAT_SHUTDOWN_GRACE": s.CHAT_SHUTDOWN_GRACE,
    "CHAT_LOG_LEVEL": s.LOGGING["loggers"]["rooms"]["level"],
}))
"""

# The README's Settings table, with nothing set (DEBUG off, a SECRET_KEY given).
DEFAULTS = {
    "DEBUG": False,
    "ALLOWED_HOSTS": ["localhost", "127.0.0.1", "[::1]"],
    "CSRF_TRUSTED_ORIGINS": [],
    "CONN_MAX_AGE": 60,
    "SECURE_SSL_REDIRECT": True,
    "SESSION_COOKIE_SECURE": True,
    "SECURE_HSTS_SECONDS": 31536000,
    "SECURE_HSTS_PRELOAD": False,
    "BEHIND_PROXY": False,
    "STATIC_ROOT": str(PROJECT_DIR / "staticfiles"),
    "CHAT_RATE_BURST": 10,
    "CHAT_RATE_PER_SECOND": 1,
    "CHAT_MAX_REQUEST_BYTES": 2 * 1024 * 1024,
    "CHAT_SOCKET_MAX_QUEUED_FRAMES": 64,
    "CHAT_SOCKET_MAX_QUEUED_BYTES": 1024 * 1024,
    "CHAT_SOCKET_FRAME_BURST": 30,
    "CHAT_SOCKET_FRAMES_PER_SECOND": 5,
    "CHAT_SOCKET_MAX_BUFFERED_BYTES": 1024 * 1024,
    "CHAT_MAX_SOCKETS_PER_USER": 30,
    "CHAT_ALLOW_UNVERIFIED_DAPHNE": False,
    "LOGIN_FAILURE_LIMIT": 5,
    "LOGIN_COOLOFF_MINUTES": 15,
    "SIGNUPS_PER_HOUR": 10,
    "CHAT_ROOMS_PER_USER_PER_DAY": 10,
    "CHAT_ROOMS_PAGE_SIZE": 50,
    "CHAT_ONLINE_LIST_LIMIT": 100,
    "CHAT_CATCHUP_LIMIT": 500,
    "CHAT_PRESENCE_TTL": 60,
    "CHAT_PRESENCE_LEAVE_GRACE": 5,
    "CHAT_LAYER_CHECK_SECONDS": 2,
    "CHAT_SHUTDOWN_GRACE": 2,
    "CHAT_LOG_LEVEL": 20,  # INFO
}


def start(*command: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """Run `command` in a fresh Python as a server starts: the test process's environment
    (conftest.py has taken the app's own variables out of it), a SECRET_KEY, the default
    SQLite database, and `variables`."""
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update(DJANGO_SETTINGS_MODULE="site_config.settings", SECRET_KEY="settings-tests-only")
    env.update(variables)
    return subprocess.run(
        [sys.executable, *command], cwd=PROJECT_DIR, env=env, capture_output=True, text=True
    )


def settings_with(**variables: str) -> dict[str, Any]:
    result = start("-c", SHOW_SETTINGS, **variables)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    """The last line of what a refused start-up printed."""
    assert result.returncode != 0, result.stdout
    return result.stderr.strip().splitlines()[-1]


def test_nothing_set_is_the_documented_default() -> None:
    assert settings_with() == DEFAULTS


def test_an_empty_variable_is_the_default() -> None:
    empty = {name: "" for name in ("DEBUG", "CHAT_RATE_BURST", "ALLOWED_HOSTS", "CHAT_LOG_LEVEL")}
    assert settings_with(**empty) == DEFAULTS


def test_a_misspelt_boolean_stops_start_up_naming_the_variable_and_the_value() -> None:
    result = start("manage.py", "check", DEBUG="treu")
    assert refusal(result) == (
        "django.core.exceptions.ImproperlyConfigured: DEBUG='treu' is invalid: Not a valid boolean."
    )


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("CHAT_RATE_BURST", "ten", "Not a valid integer."),
        ("CHAT_RATE_BURST", "2.5", "Not a valid integer."),
        ("CHAT_RATE_BURST", "-1", "Must be greater than or equal to 0."),
        ("CHAT_RATE_PER_SECOND", "fast", "Not a valid number."),
        (
            "CHAT_RATE_PER_SECOND",
            "nan",
            "Special numeric values (nan or infinity) are not permitted.",
        ),
        ("CHAT_ROOMS_PAGE_SIZE", "0", "Must be greater than 0."),
        ("CHAT_ONLINE_LIST_LIMIT", "0", "Must be greater than 0."),
        ("SECURE_HSTS_SECONDS", "1 year", "Not a valid integer."),
        ("SECURE_COOKIES", "maybe", "Not a valid boolean."),
        ("CHAT_LOG_LEVEL", "chatty", "Not a valid log level."),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable_and_the_value(
    variable: str, value: str, reason: str
) -> None:
    result = start("-c", "import django; django.setup()", **{variable: value})
    assert refusal(result) == (
        f"django.core.exceptions.ImproperlyConfigured: {variable}={value!r} is invalid: {reason}"
    )


def test_valid_values_are_read() -> None:
    assert settings_with(
        DEBUG="yes",
        SECURE_SSL_REDIRECT="off",
        SECURE_HSTS_PRELOAD="TRUE",
        BEHIND_PROXY="1",
        ALLOWED_HOSTS=" chat.example.com, ,localhost ",
        CHAT_RATE_BURST="3",
        CHAT_RATE_PER_SECOND="0.5",
        CHAT_LOG_LEVEL="warning",
    ) == {
        **DEFAULTS,
        "DEBUG": True,
        # DEBUG turns the production hardening off unless a variable turns it back on.
        "SECURE_SSL_REDIRECT": False,
        "SESSION_COOKIE_SECURE": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_HSTS_PRELOAD": True,
        "BEHIND_PROXY": True,
        "ALLOWED_HOSTS": ["chat.example.com", "localhost"],
        "CHAT_RATE_BURST": 3,
        "CHAT_RATE_PER_SECOND": 0.5,
        "CHAT_LOG_LEVEL": 30,
    }
