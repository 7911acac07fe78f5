"""realtime/upstream.py: the one version guard of every patch of upstream internals."""

import importlib.metadata

import pytest
from django.core.exceptions import ImproperlyConfigured

from realtime import footprint, layers, lifecycle, limits, sweeps, upstream, writes
from site_config import http_guard

PATCHES = {
    "allow_close_codes (realtime/lifecycle.py)": lifecycle.CLOSE_CODES_TESTED_VERSIONS,
    "cancel_applications_reliably (realtime/lifecycle.py)": lifecycle.CANCEL_TESTED_VERSIONS,
    "realtime/footprint.py": footprint.TESTED_VERSIONS,
    "HubRedisPubSubChannelLayer (realtime/layers.py)": layers.REDIS_TESTED_VERSIONS,
    "realtime/limits.py": limits.TESTED_VERSIONS,
    "realtime/sweeps.py": sweeps.TESTED_VERSIONS,
    "realtime/writes.py": writes.TESTED_VERSIONS,
    "send_frame (realtime/writes.py)": writes.FRAMES_TESTED_VERSIONS,
    "site_config/http_guard.py": http_guard.TESTED_VERSIONS,
}


@pytest.mark.parametrize("patch", PATCHES)
def test_every_patch_was_tested_with_the_installed_versions(patch, settings) -> None:
    """Fails after an upgrade (the lock file) until each patch is checked again."""
    settings.CHAT_ALLOW_UNVERIFIED_DAPHNE = False
    assert upstream.require_tested(patch, PATCHES[patch]) == []


def test_the_refusal_says_what_differs_and_what_to_do(settings) -> None:
    settings.CHAT_ALLOW_UNVERIFIED_DAPHNE = False
    daphne = importlib.metadata.version("daphne")
    with pytest.raises(ImproperlyConfigured) as refused:
        upstream.require_tested(
            "a_patch (somewhere.py)",
            {"daphne": "4.1.0", "twisted": importlib.metadata.version("twisted")},
        )
    message = str(refused.value)
    assert message.startswith("a_patch (somewhere.py) patches upstream internals")
    assert f"installed: daphne {daphne} (tested with 4.1.0)." in message
    assert "twisted" not in message.split("installed:")[1]  # (that one matches)
    assert "CHAT_ALLOW_UNVERIFIED_DAPHNE=true" in message


def test_a_package_that_is_not_installed_is_untested(settings) -> None:
    settings.CHAT_ALLOW_UNVERIFIED_DAPHNE = False
    with pytest.raises(ImproperlyConfigured, match=r"no-such-package not installed \(tested"):
        upstream.require_tested("a_patch", {"no-such-package": "1.0"})


def test_the_operator_may_allow_untested_versions(settings, caplog) -> None:
    settings.CHAT_ALLOW_UNVERIFIED_DAPHNE = True
    daphne = importlib.metadata.version("daphne")
    differences = upstream.require_tested("a_patch", {"daphne": "4.1.0"})
    assert differences == [f"daphne {daphne} (tested with 4.1.0)"]
    assert "a_patch applied to untested versions" in caplog.text
