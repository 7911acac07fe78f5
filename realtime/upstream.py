"""Patches of upstream internals run only on the upstream versions they were tested with.

Some limits can only be had by patching Daphne, autobahn, Twisted or channels-redis
internals (methods and attributes that are not their public API, and may change in any
release). Each such patch names the exact versions it was written and tested against, in
a mapping next to it, and calls `require_tested` before it patches anything; on other
versions the server refuses to start with ImproperlyConfigured, which says what to check
again, unless the operator sets CHAT_ALLOW_UNVERIFIED_DAPHNE=true (then it starts with a
warning, and the patch applied). The patches, each with the upstream issue it works
around in its docstring (realtime/tests/test_upstream.py checks them all against what is
installed):

- realtime/lifecycle.py `allow_close_codes` (CLOSE_CODES_TESTED_VERSIONS) and
  `cancel_applications_reliably` (CANCEL_TESTED_VERSIONS);
- realtime/limits.py (TESTED_VERSIONS), realtime/writes.py `write_now` (TESTED_VERSIONS)
  and `send_frame` (FRAMES_TESTED_VERSIONS);
- realtime/footprint.py (TESTED_VERSIONS): what each open socket keeps;
- realtime/sweeps.py (TESTED_VERSIONS): Daphne's sweeps over every connection, in slices;
- realtime/layers.py `HubRedisPubSubChannelLayer` (REDIS_TESTED_VERSIONS): channels-redis'
  subscriptions, in batches;
- site_config/http_guard.py (TESTED_VERSIONS).
"""

import importlib.metadata
import logging
from collections.abc import Mapping

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

log = logging.getLogger(__name__)


def require_tested(patch: str, tested: Mapping[str, str]) -> list[str]:
    """Refuse to go on unless every distribution in `tested` (name -> version) is installed
    at exactly that version. `patch` names the patch in the message (e.g. its module).

    Returns the differences (empty when all match) when CHAT_ALLOW_UNVERIFIED_DAPHNE lets
    an untested version through; raises ImproperlyConfigured otherwise.
    """
    differences = []
    for name, expected in tested.items():
        try:
            found = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found = "not installed"
        if found != expected:
            differences.append(f"{name} {found} (tested with {expected})")
    if not differences:
        return []
    if not settings.CHAT_ALLOW_UNVERIFIED_DAPHNE:
        raise ImproperlyConfigured(
            f"{patch} patches upstream internals and was tested with "
            + ", ".join(f"{name} {version}" for name, version in tested.items())
            + "; installed: "
            + "; ".join(differences)
            + f". Re-check {patch} against the installed versions (its docstring names what "
            "it relies on) and update its tested versions, or set "
            "CHAT_ALLOW_UNVERIFIED_DAPHNE=true to start anyway with the patch applied untested."
        )
    log.warning("%s applied to untested versions: %s", patch, "; ".join(differences))
    return differences
