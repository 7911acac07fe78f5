"""Typing ("ann is typing…"): a signal, not a message.

As someone types in the room's composer, the page sends `{"typing": "1"}` over the room
socket, at most every 3 s (static/js/chat.js submits room.html's hidden ws-send form
#typing-signal: htmx's own hx-trigger on a ws-send element loses to htmx's "naked
trigger" handler, and sends nothing). Here it becomes one small
fragment for the room's pages, rendered once: nothing is stored, it takes no sequence
number, and a page that misses it misses nothing. The page shows it for a few seconds and
a CSS animation takes it away (no timer in JavaScript); another one from the same person
replaces it by id, which starts the animation again. Everyone's page gets it, the typist's
too: the page's per-viewer style hides one's own (templates/base.html).

At most one per user per room every CHAT_TYPING_INTERVAL seconds (per process: a user's
sockets are on one process as a rule, and a few more would still be harmless), and none
in a room with more than CHAT_TYPING_MAX_ONLINE people online, where it would be noise.
"""

import time
from typing import Any

from django.conf import settings

from rooms import presence, services
from rooms.models import Room


class Throttle:
    """At most one event per key every `interval` seconds; it forgets keys once they
    are past it, so its size is bounded by how many typed within the last interval."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[tuple[int, int], float] = {}

    def allow(self, key: tuple[int, int]) -> bool:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        if len(self._last) >= 1024:  # forget whoever is past their interval
            self._last = {k: t for k, t in self._last.items() if now - t < self.interval}
        self._last[key] = now
        return True

    def reset(self) -> None:
        self._last.clear()


throttle = Throttle(settings.CHAT_TYPING_INTERVAL)


def may_signal(room: Room, user: Any) -> bool:
    """Whether `user`'s typing in `room` goes out now (the throttle: no query)."""
    # Read here, not at import: a test may change the interval.
    throttle.interval = settings.CHAT_TYPING_INTERVAL
    return throttle.allow((room.pk, user.pk))


def notice(room: Room, user: Any) -> str | None:
    """The fragment that shows "<user> is typing…" on the room's pages, or None in a
    room too busy for it (one query: who is online)."""
    if presence.online_count(room) > settings.CHAT_TYPING_MAX_ONLINE:
        return None
    return services.render_fragment("typing", typist=user)
