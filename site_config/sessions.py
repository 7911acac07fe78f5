"""Database sessions whose keys can only be keys (SESSION_ENGINE).

A session key comes from a cookie, and Python's cookie parser turns an octal escape in a
quoted value (`sessionid="\\000..."`) into a real NUL. Django's database engine only checks
a key's length before looking it up, so such a cookie reached PostgreSQL, which refuses a
string with NUL in it with an exception: a 500 on any page, for HTTP and sockets alike.
Django makes every key from VALID_KEY_CHARS; a cookie with anything else is no session
(signed out), and is never looked up.
"""

from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore

_KEY_CHARACTERS = frozenset(VALID_KEY_CHARS)


class SessionStore(DatabaseSessionStore):
    # Extends SessionBase._validate_session_key (django/contrib/sessions/backends/base.py),
    # the check every key is put through; django-stubs leave that private method out.
    def _validate_session_key(self, key: str | None) -> bool:
        valid = super()._validate_session_key(key)  # type: ignore[misc]  # not in the stubs
        return bool(valid) and _KEY_CHARACTERS.issuperset(key or "")
