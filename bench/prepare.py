"""Create the benchmark's users, their logged-in sessions and the room, in one database.

Run by the load generator as `python -m bench.prepare USERS OUT.json [ROOMS]` with the server's
environment (DATABASE_URL names the benchmark's own SQLite file). Signing up through the
page would hash a password per user (PBKDF2, ~0.3 s each); a session made here is the
same row Django's login() writes, so every socket still goes through the real handshake:
Origin check, session cookie, AuthMiddlewareStack.
"""

import json
import os
import sys

import django


def room_slugs(rooms: int) -> list[str]:
    """The benchmark's rooms: "bench", then "bench-1" ... (more than one for the idle
    phase, whose sockets are spread over rooms as a site's are)."""
    return ["bench", *(f"bench-{k}" for k in range(1, rooms))]


def main(users: int, out: str, rooms: int = 1) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_config.settings")
    django.setup()
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import transaction

    from rooms.models import Room

    User = get_user_model()
    names = [f"b{i}" for i in range(users)]
    with transaction.atomic():
        existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
        fresh = []
        for name in names:
            if name not in existing:
                user = User(username=name)
                user.set_unusable_password()  # no hashing: nobody logs in with a password
                fresh.append(user)
        User.objects.bulk_create(fresh, batch_size=500)
        by_name = {user.username: user for user in User.objects.filter(username__in=names)}
        for slug in room_slugs(rooms):
            Room.objects.get_or_create(slug=slug, defaults={"owner": by_name[names[0]]})
        sessions = []
        for name in names:
            user = by_name[name]
            session = SessionStore()
            session[SESSION_KEY] = str(user.pk)
            session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
            session[HASH_SESSION_KEY] = user.get_session_auth_hash()
            session.create()
            sessions.append(session.session_key)
    with open(out, "w") as file:
        json.dump({"usernames": names, "sessions": sessions}, file)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], *(int(arg) for arg in sys.argv[3:4]))
