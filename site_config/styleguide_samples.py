"""The styleguide's sample data (/styleguide/, site_config/styleguide.py): every partial of
the pages and the socket, in each of its states, from unsaved model instances and plain
values. Nothing here touches the database: the instances have made-up primary keys (each
sample its own, so that ids on the page stay apart) and are never saved.

`sections(viewer)` is the whole gallery: the viewer is the signed-in user the page is
rendered for, so "my message", "my reaction" and "a mention of me" are theirs and the
page's per-viewer style (templates/base.html) marks them as it would in a room.

A new partial needs a Sample here (site_config/tests/test_styleguide.py fails naming it).
"""

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from rooms import changes, services
from rooms.attention import AuthorActivity
from rooms.forms import MAX_LENGTH, ComposerForm, MessageEditForm, PrivateMessageForm
from rooms.models import Attachment, Message, PrivateMessage, ReadPosition, Room
from rooms.search import Hit, Part

ROOM = "rooms/room.html"
ACTION = "rooms/message_action.html"
SEARCH = "rooms/search.html"
FRAMES = "styleguide/frames.html"

LONG_NAME = ("Maximiliana-Wolfeschlegelsteinhausenbergerdorff-" * 4)[:150]
LONG_WORD = ("Supercalifragilisticexpialidocious" * 15)[:500]
LONG_URL = "https://example.com/" + "/".join(f"section-{n}/item-{n * 7919}" for n in range(12))
MULTI_LINE = (
    "Three lines, then code:\nrun `make run` first,\nthen this:\n"
    "```\ndef hi(name):\n    return name  # <b>no</b>\n```\nand done."
)


# Partials shown as if alone on a page, each sample in a shadow root of its own (with
# chat.css): those whose ids, labels and landmarks a page has once (#composer with its
# label's id_body, #online-users labelled by #online-title, #notifications, …), so that
# several states of one clash neither with each other nor with the page's own. The
# page's per-viewer style does not reach inside; none of these needs it. (Not the
# connection status: its "connecting" line keys on <body>, which a shadow root has not.)
ALONE = {
    f"{ROOM}#{name}"
    for name in (
        "composer",
        "pm-composer",
        "pm-unread",
        "private-message-news",
        "cursor",
        "caught-up",
        "online-users",
        "online-more",
        "room-activity",
        "room-read",
        "mention-notification",
        "notification-level",
    )
}


# An image's thumbnail in the samples: a drawn picture (an SVG data: URI, which the page's
# CSP allows for images), not a file: the samples have none.
SAMPLE_THUMBNAIL = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 320 240'%3E"
    "%3Crect width='320' height='240' fill='%2393c5fd'/%3E%3Crect y='150' width='320' "
    "height='90' fill='%2365a30d'/%3E%3Ccircle cx='250' cy='60' r='28' fill='%23fde047'/%3E"
    "%3Crect x='60' y='80' width='120' height='110' fill='%23f8fafc'/%3E%3C/svg%3E"
)


@dataclass(frozen=True)
class Sample:
    """One state of one partial: `partial` is what it shows ("<template>#<name>");
    `template` what renders it when that is a frame around the partial (the markup its
    page puts round it); `frame` a class for the box it sits in on the page (e.g. a log);
    `pushed`: rendered as the socket sends it, without a viewer (no request)."""

    partial: str
    state: str
    context: dict[str, Any] = field(default_factory=dict)
    template: str = ""
    frame: str = ""
    socket: str = ""  # the data-socket state of its box (#connection-status)
    pushed: bool = False
    invisible: bool = False  # renders nothing to see (data for static/js/chat.js): its HTML shows

    @property
    def alone(self) -> bool:
        """Shown as if alone on a page: see ALONE."""
        return self.partial in ALONE


@dataclass(frozen=True)
class Section:
    slug: str
    title: str
    samples: list[Sample]


class _Ids:
    """Made-up primary keys, far from real ones, one per instance."""

    def __init__(self) -> None:
        self._next = itertools.count(990_001)

    def __call__(self) -> int:
        return next(self._next)


def _when(now: datetime, **ago: float) -> datetime:
    return now - timedelta(**ago)


def sections(viewer: User, now: datetime | None = None) -> list[Section]:
    now = now or timezone.now()
    pk = _Ids()
    me = viewer
    ann = User(pk=pk(), username="ann")
    bob = User(pk=pk(), username="bob")
    long_named = User(pk=pk(), username=LONG_NAME)
    crowd = [User(pk=pk(), username=f"person-{n:02d}") for n in range(1, 61)]
    room = Room(pk=pk(), slug="design-lounge", owner=me)
    seq = itertools.count(4_201)

    def message(author: User, body: str, minutes_ago: float = 5, **fields: Any) -> Message:
        number = next(seq)
        made = Message(
            pk=pk(),
            room=room,
            author=author,
            body=body,
            created_at=_when(now, minutes=minutes_ago),
            seq=number,
            changed_seq=fields.pop("changed_seq", number),
            **fields,
        )
        made.reaction_summary = []
        # No attachment (known: no query), unless `attached` gives it one.
        Message.attachment.related.set_cached_value(made, None)
        return made

    def attached(made: Message, name: str, content_type: str, size: int, **image: Any) -> Message:
        """`made` with a file: an image when given width and height (and a thumbnail's:
        a drawn stand-in, so the page loads nothing that is not there)."""
        attachment = Attachment(
            pk=pk(), message=made, original_name=name, content_type=content_type, size=size
        )
        for key, value in image.items():
            setattr(attachment, key, value)
        if "thumbnail_width" in image:
            attachment.thumbnail.name = "attachments/sample/thumb.jpg"
            attachment.thumbnail_url = lambda: SAMPLE_THUMBNAIL  # type: ignore[method-assign]
        Message.attachment.related.set_cached_value(made, attachment)
        return made

    def pm(sender: User, recipient: User, body: str) -> PrivateMessage:
        return PrivateMessage(
            pk=pk(), sender=sender, recipient=recipient, body=body, created_at=_when(now, minutes=3)
        )

    def reacted(made: Message, *reactions: tuple[str, list[str]]) -> Message:
        made.reaction_summary = [services.ReactionSummary(e, names) for e, names in reactions]
        return made

    def room_message(state: str, made: Message, **context: Any) -> Sample:
        return Sample(f"{ROOM}#message", state, {"message": made, **context}, frame="log")

    # Messages ---------------------------------------------------------------------------
    original = message(ann, "Shall we meet at ten? The agenda is in the wiki.", 30)
    deleted = message(bob, "", 25, deleted_at=_when(now, minutes=20))
    reply = message(me, "Ten works for me.", 12, reply_to=original)
    reply_to_deleted = message(ann, "What did you mean?", 11, reply_to=deleted)
    mine_now = message(me, "Morning, everyone! Coffee is on.", 2)
    messages = [
        room_message("someone else's", message(ann, "Has anyone seen the new mock-ups?")),
        room_message("mine", mine_now),
        room_message("long name (150 characters)", message(long_named, "Hello from a long name.")),
        room_message(
            "long unbroken text (a 500-character word and a long URL)",
            message(bob, f"{LONG_WORD}\n{LONG_URL}"),
        ),
        room_message("multi-line, with code and a fenced block", message(ann, MULTI_LINE)),
        room_message(
            "edited",
            message(me, "The meeting is at 10:30, not 10.", 9, edited_at=_when(now, minutes=4)),
        ),
        room_message("deleted (tombstone)", deleted),
        room_message("a reply (quote)", reply),
        room_message("a reply to a deleted message", reply_to_deleted),
        room_message(
            f"mentions me (@{me.username}) and @here",
            message(ann, f"@{me.username} can you review this? @here too", mentioned=me.username),
        ),
        room_message(
            "reactions: one mine (pressed), several",
            reacted(
                message(bob, "Release is out!"),
                ("🎉", [me.username, "ann", "bob"]),
                ("👍", ["ann"]),
                ("❤️", ["bob", "person-01", "person-02", "person-03", "person-04"]),
                ("ship it", ["ann"]),
            ),
        ),
        room_message(
            "the permalink's message (focus)", focused := message(ann, "This one was linked to.")
        ),
        Sample(
            f"{ROOM}#message",
            "pushed (rendered once, for no viewer)",
            {"message": message(bob, "Pushed over the socket.")},
            frame="log",
            pushed=True,
        ),
        room_message(
            "with an image (its thumbnail, linked to the full image)",
            attached(
                message(ann, "The new lobby, from the street."),
                "lobby.jpg",
                "image/jpeg",
                734_003,
                width=1600,
                height=1200,
                thumbnail_width=320,
                thumbnail_height=240,
            ),
        ),
        room_message(
            "an image whose thumbnail is being made (a file link until it is)",
            attached(
                message(bob, ""), "whiteboard.png", "image/png", 2_310_044, width=3024, height=4032
            ),
        ),
        room_message(
            "with a file (name, type, size, download)",
            attached(
                message(me, "Minutes of today's meeting."), "minutes.pdf", "application/pdf", 48_213
            ),
        ),
        Sample(
            f"{ROOM}#attachment",
            "a file alone, its long name with markup (escaped)",
            {
                "message": (
                    file_only := attached(
                        message(ann, ""),
                        f"<b>report</b>-{LONG_WORD[:120]}.tar.gz",
                        "application/gzip",
                        10_485_760,
                    )
                ),
                "attachment": file_only.attachment,
            },
            frame="log",
        ),
        Sample(f"{ROOM}#message-quote", "a quote", {"quoted": original, "oob": False}, frame="log"),
        Sample(
            f"{ROOM}#message-quote",
            "a quote of a deleted message",
            {"quoted": deleted, "oob": False},
            frame="log",
        ),
        Sample(
            f"{ROOM}#reactions",
            "one mine (pressed), several",
            {"message": reacted(message(ann, ""), ("👍", [me.username]), ("😂", ["ann", "bob"]))},
            frame="log",
        ),
    ]
    messages[11].context["focus"] = focused

    # Private messages --------------------------------------------------------------------
    sent = pm(me, ann, "Can I borrow your charger?")
    received = pm(ann, me, "Sure, it's on my desk.")
    private = [
        Sample(f"{ROOM}#private-message", "sent", {"pm": sent, "other": ann}, frame="log"),
        Sample(f"{ROOM}#private-message", "received", {"pm": received, "other": ann}, frame="log"),
        Sample(
            f"{ROOM}#private-message",
            "pushed, long name",
            {"pm": pm(long_named, me, "A private word.")},
            frame="log",
            pushed=True,
        ),
        Sample(
            f"{ROOM}#private-message-oob",
            "pushed to both ends",
            {"pm": pm(bob, me, "Lunch?"), "conversation": f"{me.pk}-{bob.pk}"},
            frame="log",
            pushed=True,
        ),
        Sample(
            f"{ROOM}#private-message-news",
            "the recipient's notification and unread badge",
            {"pm": received, "unread": 3},
            template=f"{FRAMES}#private-message-news",
            pushed=True,
        ),
        Sample(f"{ROOM}#pm-unread", "none unread", {"unread": 0}, template=f"{FRAMES}#pm-unread"),
        Sample(f"{ROOM}#pm-unread", "3 unread", {"unread": 3}, template=f"{FRAMES}#pm-unread"),
        Sample(
            f"{ROOM}#pm-composer",
            "empty",
            {"other": ann, "form": PrivateMessageForm(), "error": ""},
            frame="conversation",
        ),
        Sample(
            f"{ROOM}#pm-composer",
            "error",
            {
                "other": ann,
                "form": PrivateMessageForm(initial={"body": "Are you there?"}),
                "error": services.TOO_FAST,
            },
            frame="conversation",
        ),
    ]

    # The log: days, history, presence, catch-up ------------------------------------------
    older = message(ann, "The oldest message shown.", 60 * 24 * 9)
    history = services.HistoryPage(
        [
            message(bob, "A message nine days ago.", 60 * 24 * 9 - 1),
            unread_one := message(ann, "The first unread message.", 60 * 24 * 9 - 2),
        ],
        older=older,
    )
    log = [
        Sample(
            f"{ROOM}#day-divider",
            "today",
            {"message": message(ann, "", 1)},
            frame="log",
        ),
        Sample(
            f"{ROOM}#day-divider",
            "yesterday",
            {"message": message(ann, "", 60 * 24 + 60)},
            frame="log",
        ),
        Sample(
            f"{ROOM}#day-divider",
            "more than a week ago",
            {"message": message(ann, "", 60 * 24 * 10)},
            frame="log",
        ),
        Sample(f"{ROOM}#unread-divider", "new messages", frame="log"),
        Sample(
            f"{ROOM}#older-page",
            "older-page link, a day, the unread divider, messages",
            {"room": room, "history": history, "first_unread": unread_one.pk},
            frame="log",
        ),
        Sample(
            f"{ROOM}#presence-line",
            "one joined",
            {"people": [ann], "event": "joined"},
            frame="log",
        ),
        Sample(
            f"{ROOM}#presence-line",
            "three left",
            {"people": [ann, bob, long_named], "event": "left"},
            frame="log",
        ),
        Sample(
            f"{ROOM}#presence-line",
            "many joined (N others)",
            {"people": crowd[:12], "event": "joined"},
            frame="log",
        ),
        Sample(
            f"{ROOM}#presence-oob",
            "two joined, one left (the list's increments, the count, the lines)",
            {
                "listed": crowd[:2],
                "left": [bob],
                "online_count": 7,
                "online_more": 0,
                "room": room,
                "lines": [(crowd[:2], "joined"), ([bob], "left")],
            },
            frame="log",
            pushed=True,
        ),
        Sample(
            f"{ROOM}#catch-up-gap",
            "catch-up gap notice",
            {"missed": 1250, "room": room},
            frame="log",
            pushed=True,
        ),
        Sample(
            f"{ROOM}#message-oob",
            "a new message, pushed",
            {"message": message(ann, "Appended to the log.")},
            frame="log",
            pushed=True,
        ),
        Sample(
            f"{ROOM}#message-change",
            "an edit, pushed",
            {
                "message": message(
                    me, "Now reworded.", 8, edited_at=_when(now, minutes=1), changed_seq=4_999
                )
            },
            frame="log",
            pushed=True,
        ),
        Sample(
            f"{ROOM}#message-now",
            "a message as it is now, replacing its copy and its quotes",
            {"message": message(bob, "Edited, quoted.", 9, edited_at=_when(now, minutes=1))},
            frame="log",
            pushed=True,
        ),
        Sample(
            f"{ROOM}#catch-up",
            "two missed messages",
            {
                # (Each message's HTML as services.RenderedMessages keeps it.)
                "runs": [
                    (
                        None,
                        [
                            services.render_fragment("message", message=missed)
                            for missed in (
                                message(ann, "Missed one.", 3),
                                message(bob, "Missed two.", 2),
                            )
                        ],
                    )
                ]
            },
            frame="log",
            pushed=True,
        ),
        Sample(
            f"{ROOM}#catch-up-changes",
            "a message deleted and one edited meanwhile",
            {
                "rendered": [
                    services.render_fragment("message-now", message=changed)
                    for changed in (
                        message(ann, "", 40, deleted_at=_when(now, minutes=1)),
                        message(bob, "Edited while away.", 40, edited_at=_when(now, minutes=2)),
                    )
                ]
            },
            frame="log",
            pushed=True,
        ),
        Sample(
            f"{ROOM}#cursor",
            "the page's cursor (hidden: its data-seq)",
            {"cursor": 4_321},
            pushed=True,
            invisible=True,
        ),
        Sample(
            f"{ROOM}#caught-up",
            "the cursor and who is online, after a catch-up",
            {
                "cursor": 4_321,
                "room": room,
                "online_users": [me, ann, bob],
                "online_count": 3,
                "online_more": 0,
            },
            frame="sidebar",
            pushed=True,
        ),
        Sample(
            f"{ROOM}#typing",
            "someone typing",
            {"typist": ann},
            template=f"{FRAMES}#typing",
            pushed=True,
        ),
        Sample(
            f"{ROOM}#typing",
            "a long name typing",
            {"typist": long_named},
            template=f"{FRAMES}#typing",
            pushed=True,
        ),
    ]

    # People and rooms ----------------------------------------------------------------------
    people = [
        Sample(
            f"{ROOM}#online-users",
            "one online",
            {"room": room, "online_users": [me], "online_count": 1, "online_more": 0},
            frame="sidebar",
        ),
        Sample(
            f"{ROOM}#online-users",
            "60 online, one long name",
            {
                "room": room,
                "online_users": [me, long_named, *crowd[:58]],
                "online_count": 60,
                "online_more": 0,
            },
            frame="sidebar",
        ),
        # (A page lists CHAT_ONLINE_LIST_LIMIT, 100 by default; five here, to see the end.)
        Sample(
            f"{ROOM}#online-users",
            "more online than listed: the first 5 of 1234, and 1229 more",
            {"room": room, "online_users": crowd[:5], "online_count": 1234, "online_more": 1229},
            frame="sidebar",
        ),
        Sample(
            f"{ROOM}#online-more",
            "and 1229 more (a link to everyone online)",
            {"room": room, "online_more": 1229},
            frame="sidebar",
        ),
        Sample(
            f"{ROOM}#online-more",
            "everyone listed (empty: hidden)",
            {"room": room, "online_more": 0},
            frame="sidebar",
            invisible=True,
        ),
        Sample(
            f"{ROOM}#online-user", "one person", {"person": ann}, template=f"{FRAMES}#online-user"
        ),
        Sample(
            f"{ROOM}#room-entry",
            "quiet, unread, mentions, level mentions, never opened, nothing, long name",
            {"entries": _room_entries(pk)},
            template=f"{FRAMES}#room-entries",
            frame="rooms",
        ),
        Sample(
            f"{ROOM}#room-counts",
            "12 unread, 2 mentions",
            {"entries": _room_entries(pk)[2:3]},
            template=f"{FRAMES}#room-entries",
            frame="rooms",
        ),
        Sample(
            f"{ROOM}#room-activity",
            "a tick's activity: two messages of one author, one mentioning the viewer"
            " (hidden: read by static/js/chat.js)",
            {
                "slug": room.slug,
                "activity": [AuthorActivity(ann.username, seq=2, count=2, mentions=[me.username])],
            },
            pushed=True,
            invisible=True,
        ),
        Sample(
            f"{ROOM}#room-read",
            "the viewer read the room (hidden: read by static/js/chat.js)",
            {"room": room},
            pushed=True,
            invisible=True,
        ),
        Sample(
            f"{ROOM}#mention-notification",
            "a mention of me",
            {"message": message(ann, f"@{me.username} the slides, please", mentioned=me.username)},
            template=f"{FRAMES}#notifications",
            pushed=True,
        ),
        Sample(
            f"{ROOM}#notification-level",
            "everything",
            {
                "room": room,
                "level": ReadPosition.Level.EVERYTHING,
                "levels": ReadPosition.Level.choices,
            },
            frame="header",
        ),
        Sample(
            f"{ROOM}#notification-level",
            "saved: only mentions",
            {
                "room": room,
                "level": ReadPosition.Level.MENTIONS,
                "levels": ReadPosition.Level.choices,
                "level_saved": True,
            },
            frame="header",
        ),
        *(
            Sample(
                f"{ROOM}#connection-status",
                state,
                {"room": room},
                frame="header",
                socket=socket,
            )
            for state, socket in (
                ("connecting", ""),
                ("reconnecting", "reconnecting"),
                ("closed", "closed"),
            )
        ),
    ]

    # The composer --------------------------------------------------------------------------
    too_long = ComposerForm({"body": "x" * (MAX_LENGTH + 1)})
    too_long.is_valid()
    composer = [
        Sample(
            f"{ROOM}#composer",
            "empty",
            {"room": room, "form": ComposerForm(), "error": ""},
            frame="conversation",
        ),
        Sample(
            f"{ROOM}#composer",
            "error (too fast), what was typed kept",
            {
                "room": room,
                "form": ComposerForm(initial={"body": "Did this go out?"}),
                "error": services.TOO_FAST,
            },
            frame="conversation",
        ),
        Sample(
            f"{ROOM}#composer",
            "error (too long)",
            {"room": room, "form": too_long, "error": ""},
            frame="conversation",
        ),
        Sample(
            f"{ROOM}#composer",
            "replying",
            {"room": room, "form": ComposerForm(), "error": "", "reply": original},
            frame="conversation",
        ),
        Sample(
            f"{ROOM}#composer-reply",
            "replying to a long message",
            {"room": room, "reply": message(long_named, f"{LONG_WORD[:200]} and more")},
            frame="conversation",
        ),
    ]

    # A message's actions --------------------------------------------------------------------
    editable = message(me, "Lets meet at 10.", 3)
    refused = message(me, "Too old to edit.", 60)
    try:
        changes.may_edit(refused, me)
        refusal = ""
    except changes.ChangeRefused as why:
        refusal = str(why)
    empty_edit = MessageEditForm({"body": ""})
    empty_edit.is_valid()
    react = {"palette": changes.REACTION_PALETTE, "max_length": changes.REACTION_MAX_LENGTH}
    actions = [
        Sample(
            f"{ACTION}#action-panel",
            "edit form",
            {
                "action": "edit",
                "room": room,
                "message": editable,
                "error": "",
                "form": MessageEditForm(initial={"body": editable.body}),
            },
            frame="panel",
        ),
        Sample(
            f"{ACTION}#action-panel",
            "edit form with an error",
            {"action": "edit", "room": room, "message": editable, "error": "", "form": empty_edit},
            frame="panel",
        ),
        Sample(
            f"{ACTION}#action-panel",
            "delete confirm",
            {"action": "delete", "room": room, "message": editable, "error": ""},
            frame="panel",
        ),
        Sample(
            f"{ACTION}#action-panel",
            "reaction picker",
            {
                "action": "react",
                "room": room,
                "message": editable,
                "error": "",
                "typed": "",
                **react,
            },
            frame="panel",
        ),
        Sample(
            f"{ACTION}#action-panel",
            "a refusal (edit window closed)",
            {"action": "edit", "room": room, "message": refused, "error": "", "refusal": refusal},
            frame="panel",
        ),
    ]

    # Search ------------------------------------------------------------------------------------
    search = [
        Sample(
            f"{SEARCH}#search-result",
            "in a room, highlighted",
            {
                "hit": Hit(
                    pk=pk(),
                    url=f"/rooms/{room.slug}/",
                    author="ann",
                    created_at=_when(now, days=2),
                    parts=[
                        Part("The ", False),
                        Part("agenda", True),
                        Part(" for <Monday> is in the ", False),
                        Part("agenda", True),
                        Part(" folder.", False),
                    ],
                    room=room.slug,
                )
            },
            template=f"{FRAMES}#search-result",
        ),
        Sample(
            f"{SEARCH}#search-result",
            "private, long name, cut snippet",
            {
                "hit": Hit(
                    pk=pk(),
                    url="/messages/",
                    author=LONG_NAME,
                    created_at=_when(now, days=40),
                    parts=[Part("…", False), Part(LONG_WORD[:120], False), Part("agenda", True)],
                    other=me.username,
                )
            },
            template=f"{FRAMES}#search-result",
        ),
    ]

    return [
        Section("messages", "Messages", messages),
        Section("private", "Private messages", private),
        Section("log", "The log: days, history, presence, catch-up, typing", log),
        Section("people", "People, rooms, notifications, the connection", people),
        Section("composer", "The composer", composer),
        Section("actions", "A message's actions", actions),
        Section("search", "Search", search),
    ]


@dataclass(frozen=True)
class Counted:
    """A room as a list shows it with the viewer's counts (rooms.attention.annotate_unread)."""

    pk: int
    slug: str
    unread: int
    mentions: int
    level: str
    read_seq: int | None
    online: int = 0

    def get_absolute_url(self) -> str:
        return reverse("rooms:detail", args=[self.slug])


def _room_entries(pk: _Ids) -> list[Counted]:
    level = ReadPosition.Level
    return [
        Counted(pk(), "all-read", 0, 0, level.EVERYTHING, 10),
        Counted(pk(), "busy", 12, 0, level.EVERYTHING, 10, online=4),
        Counted(pk(), "design", 12, 2, level.EVERYTHING, 10),
        Counted(pk(), "only-mentions", 30, 1, level.MENTIONS, 10),
        Counted(pk(), "never-opened", 0, 1, level.MENTIONS, None),
        Counted(pk(), "muted", 40, 3, level.NOTHING, 10),
        Counted(pk(), ("a-very-long-room-name-" * 3)[:50].strip("-"), 7, 0, level.EVERYTHING, 10),
    ]
