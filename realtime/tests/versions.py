"""A patch's version guard (realtime/upstream.py), checked the same way for every patch."""

import importlib.metadata
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

UNTESTED = "0.0.1"


def another_version_tested(monkeypatch: Any, owner: Any, attribute: str, package: str) -> None:
    """Make a patch's tested versions (`owner.attribute`) name another version of
    `package` than the installed one."""
    monkeypatch.setattr(owner, attribute, {**getattr(owner, attribute), package: UNTESTED})


def keep(monkeypatch: Any, owner: Any, *names: str) -> None:
    """Put these attributes of `owner` back as they are now after the test (removing
    those it has not got now), so that an install patching them for real leaves nothing."""
    for name in names:
        if name in vars(owner):
            monkeypatch.setattr(owner, name, vars(owner)[name])
        else:
            monkeypatch.setattr(owner, name, None, raising=False)
            monkeypatch.delattr(owner, name)


def assert_refused(install: Callable[[], object], patch: str, package: str) -> None:
    """`install` refuses to go on, with a message that says what to do about it."""
    installed = importlib.metadata.version(package)
    with pytest.raises(ImproperlyConfigured) as refused:
        install()
    message = str(refused.value)
    assert patch in message, message
    assert f"{package} {installed} (tested with {UNTESTED})" in message, message
    assert "CHAT_ALLOW_UNVERIFIED_DAPHNE=true" in message, message


def assert_allowed(install: Callable[[], object], patch: str, package: str, caplog: Any) -> None:
    """`install` goes on, and says in the log that it did so on an untested version."""
    installed = importlib.metadata.version(package)
    install()
    (warning,) = [r for r in caplog.records if r.name == "realtime.upstream"]
    assert warning.levelname == "WARNING"
    assert patch in warning.getMessage()
    assert f"{package} {installed} (tested with {UNTESTED})" in warning.getMessage()
