"""Database sessions whose keys can only be keys (SESSION_ENGINE).

A session key comes from a cookie, and Python's cookie parser turns an octal escape in a
quoted value (`sessionid="\\000..."`) into a real NUL. Django's database engine only checks
a key's length before looking it up, so such a cookie reached PostgreSQL, which refuses a
string with NUL in it with an exception: a 500 on any page, for HTTP and sockets alike.
Django makes every key from VALID_KEY_CHARS; a cookie with anything else is no session
(signed out), and is never looked up.

`load_many` loads many sessions in one query: the sockets of a connect storm
(realtime/auth.py) each had a query of their own.
"""

from collections.abc import Sequence

from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.utils import timezone

_KEY_CHARACTERS = frozenset(VALID_KEY_CHARS)


class SessionStore(DatabaseSessionStore):
    # Extends SessionBase._validate_session_key (django/contrib/sessions/backends/base.py),
    # the check every key is put through; django-stubs leave that private method out.
    def _validate_session_key(self, key: str | None) -> bool:
        valid = super()._validate_session_key(key)  # type: ignore[misc]  # not in the stubs
        return bool(valid) and _KEY_CHARACTERS.issuperset(key or "")

    @classmethod
    def load_many(cls, stores: Sequence["SessionStore"]) -> None:
        """Load the data of these not yet loaded stores in one query, as each would load
        itself on first use (django/contrib/sessions/backends/db.py `load`: its unexpired
        row, or no data and no key)."""
        waiting = [s for s in stores if s.session_key and not hasattr(s, "_session_cache")]
        rows = cls.get_model_class().objects.filter(
            session_key__in={s.session_key for s in waiting}, expire_date__gt=timezone.now()
        )
        data = dict(rows.values_list("session_key", "session_data"))
        for store in waiting:
            found = data.get(store.session_key or "")
            if found is None:
                store._session_key = None  # (as `load` does for a missing row)
            store._session_cache = {} if found is None else store.decode(found)  # type: ignore[attr-defined]  # (SessionBase's, not in the stubs)
