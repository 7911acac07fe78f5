"""`python manage.py say <room> <text> [--as <username>]`: post a message from outside.

The message takes the path of any other (services.post_message: stored with the room's
next sequence number, rendered once, published after the commit), so the room's open
pages show it live, and pages that were away get it when they catch up.

Live delivery needs a channel layer shared with the servers: with REDIS_URL set, this
process publishes through the same Redis. Without it the layer is in-memory, and a
command's memory is its own: the message is stored, and the servers' pages get it only
when they next load or reconnect (the command says so).

The default author is "system": an account this command creates (no usable password,
inactive: it can never log in), which may post in any room. `--as` posts as an active
user, into a room they may enter.
"""

from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from channels.layers import InMemoryChannelLayer
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError

from realtime.layers import channel_layer
from rooms import services
from rooms.forms import MessageEditForm
from rooms.models import Room

SYSTEM = "system"
# How long to wait for the channel layer to take the message before saying it did not.
PUBLISH_TIMEOUT = 10


class Command(BaseCommand):
    help = "Post a message into a room, live on its open pages (as 'system' unless --as)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("room", help="the room's name (its slug), e.g. general")
        parser.add_argument("text", help="what to say (quote it)")
        parser.add_argument(
            "--as",
            dest="author",
            metavar="USERNAME",
            help=f"post as this active user (default: the '{SYSTEM}' account)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        form = MessageEditForm({"body": options["text"]})
        if not form.is_valid():
            raise CommandError(" ".join(str(error) for error in form.errors["body"]))
        room = Room.objects.filter(slug=options["room"]).first()
        if room is None:
            raise CommandError(f"No room named #{options['room']}.")
        author = _author(options["author"], room)
        posted = services.post_message(room, author, form.cleaned_data["body"])
        message = room.messages.filter(author=author).latest("seq")  # (the one just posted)
        self.stdout.write(f"Posted message {message.pk} in #{room.slug} as {author.username}.")
        if isinstance(channel_layer(), InMemoryChannelLayer):
            self.stderr.write(
                "The channel layer is in-memory (REDIS_URL is not set): it lives in this "
                "process alone, so pages served by a running server show the message only "
                "when they next load or reconnect. Set REDIS_URL (as the servers have it) "
                "for it to appear live."
            )
            return
        if not all(_taken(publication) for publication in posted.publications):
            self.stderr.write(
                "The channel layer did not take it: open pages show it when they reconnect."
            )


def _author(username: str | None, room: Room) -> Any:
    users = get_user_model()._default_manager
    if username is None or username == SYSTEM:
        return _system_user()
    author = users.filter(username=username).first()
    if author is None or not author.is_active:
        raise CommandError(f"No user named “{username}” (an active one).")
    if not services.can_enter(room, author):
        raise CommandError(f"{username} may not enter #{room.slug}.")
    return author


def _system_user() -> Any:
    """The "system" account: made the first time, never one that can log in. A person
    who signed up as "system" is not taken for it."""
    users = get_user_model()._default_manager
    system = users.filter(username=SYSTEM).first()
    if system is None:
        try:
            return users.create_user(username=SYSTEM, password=None, is_active=False)
        except IntegrityError:  # made meanwhile, or a name that looks like it (accounts)
            system = users.filter(username=SYSTEM).first()
            if system is None:
                raise CommandError(
                    f"Could not create the '{SYSTEM}' account (a user's name looks like it): "
                    "use --as."
                ) from None
    if system.is_active or system.has_usable_password():
        raise CommandError(
            f"The user named '{SYSTEM}' is a person's account (it can log in): use --as <username>."
        )
    return system


def _taken(publication: Any) -> bool:
    try:
        return bool(publication.future.result(timeout=PUBLISH_TIMEOUT))
    except (FutureTimeout, Exception):
        return False
