"""What a test needs to exist before a person arrives: users, rooms, history.

Made directly in the server's database by the project's own models, in one `manage.py
shell` per call (servers.run_shell, about a second), as e2e/servers.py's make_room and
make_sessions do: faster than signing everyone up and typing every message, and
independent of how the pages create things. The fixtures in e2e/conftest.py
(`make_users`, `room_with_history`, `private_room`) call these for the session's server.

The users one call makes share one password, hashed once (a hash takes ~0.5 s here).
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from e2e import servers

# Seeded messages read "Message 1 of 60" … "Message 60 of 60", oldest first.
HISTORY_TEXT = "Message {n} of {count}"


@dataclass(frozen=True)
class Account:
    """A user that exists on the server, and the password to log in with (`log_in`)."""

    username: str
    password: str


@dataclass(frozen=True)
class SeededRoom:
    """A room made in the server's database: its owner, the other people in it (a private
    room's members; in a public room, the others who wrote its history) and the ids of
    its messages, oldest first."""

    slug: str
    owner: Account
    members: list[Account] = field(default_factory=list)
    message_ids: list[int] = field(default_factory=list)

    @property
    def people(self) -> list[Account]:
        """The owner, then the members: the order in which they wrote the history."""
        return [self.owner, *self.members]


# Run in `manage.py shell` with `data` (the JSON given) and `out` (printed as JSON), in one
# transaction.
_SCRIPT = """
import json, sys
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import transaction
from rooms.models import Message, Room

data = json.load(sys.stdin)
User = get_user_model()
out = []
with transaction.atomic():
    if data["new"]:
        hashed = make_password(data["password"])
        for name in data["new"]:
            User.objects.create(username=name, password=hashed)
    room = data["room"]
    if room:
        people = [User.objects.get(username=name) for name in room["people"]]
        made = Room.objects.create(
            slug=room["slug"], owner=people[0], visibility=room["visibility"]
        )
        if room["visibility"] == "private":
            made.members.set(people[1:])
        count = room["count"]
        for n in range(1, count + 1):
            author = people[(n - 1) % len(people)]
            body = room["text"].format(n=n, count=count)
            out.append(Message.objects.create(room=made, author=author, body=body).pk)
print(json.dumps(out))
"""


def _accounts(people: Sequence[Account | str]) -> tuple[list[Account], list[str], str]:
    """Accounts for `people`: existing ones as given, a new user for each prefix (str)."""
    password = f"Pw-{uuid.uuid4().hex}"
    accounts = [
        person if isinstance(person, Account) else Account(unique_username(person), password)
        for person in people
    ]
    new = [a.username for a, p in zip(accounts, people, strict=True) if isinstance(p, str)]
    return accounts, new, password


def unique_username(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def users(env: dict[str, str], *prefixes: str) -> list[Account]:
    """One new user per prefix ("ann" -> ann_1f2e3d4c), with a password to log in with."""
    accounts, new, password = _accounts(prefixes)
    servers.run_shell(env, _SCRIPT, {"new": new, "password": password, "room": None})
    return accounts


def room(
    env: dict[str, str],
    owner: Account | str = "owner",
    members: Sequence[Account | str] = (),
    *,
    messages: int = 0,
    private: bool = False,
    slug: str | None = None,
    text: str = HISTORY_TEXT,
) -> SeededRoom:
    """A room (`private`: members only) owned by `owner`, with `members`, and `messages`
    messages written in turn by the owner and the members, reading `text` (formatted
    with n and count). Each person is an Account, or a prefix for a new user."""
    (owner_account, *member_accounts), new, password = _accounts([owner, *members])
    slug = slug or f"seeded-{uuid.uuid4().hex[:10]}"
    spec = {
        "slug": slug,
        "people": [owner_account.username, *(m.username for m in member_accounts)],
        "visibility": "private" if private else "public",
        "count": messages,
        "text": text,
    }
    ids: list[int] = servers.run_shell(
        env, _SCRIPT, {"new": new, "password": password, "room": spec}
    )
    return SeededRoom(slug, owner_account, member_accounts, ids)
