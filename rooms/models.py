import uuid
from typing import Any

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import connection, models, transaction
from django.urls import reverse

# A room's slug is its name and its address, and it becomes part of channel-layer
# group names, so it is held to what both accept: lowercase letters, digits, hyphens.
ROOM_SLUG_PATTERN = r"[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?"
validate_room_slug = RegexValidator(
    rf"\A{ROOM_SLUG_PATTERN}\Z",
    "Use 1 to 50 lowercase letters, digits or hyphens, starting and ending with a letter or digit.",
)


class Room(models.Model):
    class Visibility(models.TextChoices):
        PUBLIC = "public", "Public"
        PRIVATE = "private", "Private (members only)"
        STAFF = "staff", "Staff only"

    slug = models.SlugField(max_length=50, unique=True, validators=[validate_room_slug])
    visibility = models.CharField(
        max_length=10, choices=Visibility.choices, default=Visibility.PUBLIC
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_rooms",
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="member_rooms",
        help_text="Who may enter a private room (the owner always may).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The room's change counter: every message, and every change to one (an edit, a
    # deletion, a reaction), takes the next number under this row's lock, in the
    # transaction that stores it. So numbers commit in order, and a reader that sees N
    # committed has seen 1..N-1 too: the cursor a page catches up from
    # (services.post_message, rooms/changes.py, README "Nothing lost").
    last_seq = models.PositiveBigIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def get_absolute_url(self) -> str:
        return reverse("rooms:detail", args=[self.slug])

    @staticmethod
    def take_seq(room_id: int) -> int:
        """The room's next sequence number. Call inside the transaction that stores the
        change: the UPDATE holds the room's row lock until that transaction ends, so the
        next writer waits, and numbers commit in the order they are taken."""
        # One statement (UPDATE ... RETURNING: PostgreSQL, SQLite 3.35+), not an update and
        # a read: it is on every message's path.
        table = connection.ops.quote_name(Room._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET last_seq = last_seq + 1 WHERE id = %s RETURNING last_seq",
                [room_id],
            )
            row = cursor.fetchone()
        if row is None:
            raise Room.DoesNotExist(f"no room {room_id}")
        return int(row[0])


class Message(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="messages"
    )
    body = models.TextField(max_length=settings.CHAT_MESSAGE_MAX_LENGTH)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Its place in the room's sequence (Room.last_seq). Not the id: ids are taken at
    # insert and can commit out of order on PostgreSQL, so "after id N" could skip one.
    seq = models.PositiveBigIntegerField(editable=False)
    # The room's sequence number of its latest change (its own seq until it changes): a
    # page behind cursor N is sent the current state of every message changed after N.
    changed_seq = models.PositiveBigIntegerField(editable=False)
    edited_at = models.DateTimeField(null=True, blank=True, editable=False)
    # A deleted message keeps its row, without its text, as a tombstone: pages that
    # showed it learn of the deletion (by its changed_seq) and history skips it.
    deleted_at = models.DateTimeField(null=True, blank=True, editable=False)
    reply_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )
    # Who it mentions (usernames as stored, space-separated; "@here" expanded to who was
    # online): what its partial needs (the links, data-mentions) without a query per page.
    # MessageMention holds the same per user, for counting and /mentions/.
    mentioned = models.TextField(blank=True, default="", editable=False)
    # The composer's id for the send that stored it (rooms/forms.py ComposerForm.token):
    # the same send repeated after its answer was lost is not stored twice. None for none
    # (NULLs are distinct in the unique constraint, as Django's docs advise for a unique
    # CharField that may be empty; a lookup by id uses its index).
    send_token = models.CharField(max_length=32, null=True, editable=False)  # noqa: DJ001
    # Its reactions, summed up for its partial (services.attach_reactions sets it).
    reaction_summary: list[Any]

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="message_room_seq_unique"),
            models.UniqueConstraint(
                fields=["author", "send_token"], name="message_send_token_once"
            ),
        ]
        # A day's transcript is a range of created_at within one room, and its previous
        # and next days the nearest rows on either side: created_at's own index would
        # walk every other room's messages of the day (or, for a quiet room, back
        # through everyone's until one of this room's).
        indexes = [
            models.Index(fields=["room", "created_at"], name="message_room_created_at"),
            # A catch-up's "changed after N" (rooms/services.py catch_up_changes).
            models.Index(fields=["room", "changed_seq"], name="message_room_changed_seq"),
        ]

    def __str__(self) -> str:
        return f"{self.author} in {self.room}: {self.body[:40]}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Every way a message is stored (services, the admin, a command, a test) takes
        # its number here, in the same transaction as the insert.
        if self.seq is not None:
            super().save(*args, **kwargs)
            return
        # No savepoint (inside post_message's transaction it was two more statements
        # per message, ~80 us): a failure here fails the whole transaction it is in.
        with transaction.atomic(savepoint=False):
            self.seq = self.changed_seq = Room.take_seq(self.room_id)
            super().save(*args, **kwargs)

    @property
    def file(self) -> "Attachment | None":
        """Its attachment, or None. What templates ask: `message.attachment` raises for a
        message without one, and the template engine answers a failed lookup with a
        dir() of the message: ~15 us of the message partial's ~330 us, on every message."""
        try:
            return self.attachment
        except Attachment.DoesNotExist:
            return None


class MessageRevision(models.Model):
    """A message's text as it was before an edit: for staff, in the admin."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="revisions")
    body = models.TextField()
    written_at = models.DateTimeField()  # when this text was posted, or last edited
    replaced_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["message", "replaced_at", "id"]

    def __str__(self) -> str:
        return f"{self.message_id} before {self.replaced_at:%Y-%m-%d %H:%M}"


class Reaction(models.Model):
    """One person's reaction to a message: an emoji from the palette or a short text."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reactions"
    )
    emoji = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["message", "user", "emoji"], name="reaction_once_per_person"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.emoji} {self.message_id}"


class PrivateMessage(models.Model):
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sent_private_messages"
    )
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="received_private_messages",
    )
    body = models.TextField(max_length=settings.CHAT_MESSAGE_MAX_LENGTH)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # When the recipient read it (None: unread): set in bulk when they open the
    # conversation's newest page, or when it reaches a page of that conversation they
    # have open (services.read_private_messages), never per frame.
    read_at = models.DateTimeField(null=True, blank=True, editable=False)
    send_token = models.CharField(max_length=32, null=True, editable=False)  # noqa: DJ001 (Message's)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["sender", "send_token"], name="pm_send_token_once"),
        ]
        indexes = [
            models.Index(fields=["sender", "recipient", "id"]),
            # The top bar's count on every page: a user's unread ones, and only those.
            models.Index(
                fields=["recipient"], condition=models.Q(read_at__isnull=True), name="pm_unread"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sender} → {self.recipient}: {self.body[:40]}"


class Connection(models.Model):
    """One open WebSocket: who is in which room, through which server process.

    Kept in the database so that presence is right across any number of processes.
    Each process refreshes `seen_at` for its own rows; rows of a process that died
    stop being refreshed and are ignored, then reaped, after CHAT_PRESENCE_TTL.
    """

    socket_id = models.CharField(max_length=200, unique=True)  # "<process>:<n>"
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="connections")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="connections"
    )
    server = models.CharField(max_length=100, db_index=True)
    seen_at = models.DateTimeField(db_index=True)
    # When the socket closed: the user still counts as online for the grace period
    # after it (rooms/presence.py), so that a reconnect is not a leave and a join.
    departed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # Who is online in a room (rooms/presence.py), read from the index alone:
            # a connect storm reads it for every room of every batch of arrivals, and
            # with the room's own index each of a room's rows was a lookup of its own.
            models.Index(
                fields=["room", "user", "seen_at", "departed_at"], name="connection_online"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.room} via {self.server}"


class ReadPosition(models.Model):
    """How far a user has read a room, and how loudly the room calls for them.

    `seq` is the room's sequence number up to which they have seen it (Room.last_seq):
    their unread messages are the room's messages past it, not deleted, not their own
    (rooms/attention.py). Moved forward only: by the room page showing its newest
    messages, and by the room's socket, in batches. A room with no row is one they never
    opened: nothing in it counts as unread but mentions of them.
    """

    class Level(models.TextChoices):
        EVERYTHING = "everything", "Everything"
        MENTIONS = "mentions", "Only mentions of me"
        NOTHING = "nothing", "Nothing"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="read_positions"
    )
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="read_positions")
    seq = models.PositiveBigIntegerField(default=0)
    level = models.CharField(max_length=10, choices=Level.choices, default=Level.EVERYTHING)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "room"], name="read_position_once_per_room")
        ]

    def __str__(self) -> str:
        return f"{self.user} read {self.room} to {self.seq} ({self.level})"


class MessageMention(models.Model):
    """A message mentions a user (by @name, or @here while they were online).

    The message's room and seq are copied here so that counting a user's mentions past
    their read position in each room is a range of one index, (user, room, seq). Kept
    only for users who may enter the room; re-made when the message is edited, dropped
    when it is deleted.
    """

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="mentions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mentions"
    )
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="+")
    seq = models.PositiveBigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "user"], name="mention_once_per_message")
        ]
        indexes = [
            models.Index(fields=["user", "room", "seq"], name="mention_user_room_seq"),
            # /mentions/: a user's, newest first, a keyset page at a time.
            models.Index(fields=["user", "message"], name="mention_user_message"),
        ]

    def __str__(self) -> str:
        return f"{self.message_id} mentions {self.user}"


class Webhook(models.Model):
    """An incoming webhook: a secret URL (`POST /hooks/<token>/`) that posts into `room`
    as `bot`, a user of its own (rooms/hooks.py). Only the token's sha256 is stored: the
    token itself is shown once, when the hook is made. Revoked hooks keep their row (and
    their bot its messages); deleting the room deletes its hooks."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="webhooks")
    bot = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook"
    )
    token_sha256 = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["room", "id"]

    def __str__(self) -> str:
        return f"{self.bot} → {self.room}{' (revoked)' if self.revoked_at else ''}"


def attachment_path(instance: "Attachment", filename: str) -> str:
    """Where a file is stored: a random, unguessable folder per file (so no name collides
    and no address can be guessed from another), then its cleaned-up name."""
    return f"attachments/{uuid.uuid4().hex}/{filename}"


class Attachment(models.Model):
    """A file sent with a room message (rooms/attachments.py): at most one per message,
    which may have text too or be the file alone.

    Images (JPEG, PNG, GIF, WebP, as Pillow reads them, never as the client says) are
    stored re-encoded without their metadata (EXIF, GPS), turned upright, and get a
    thumbnail made off the request path; anything else is a plain file, only ever
    downloaded. Served by the access-checked view only (rooms/attachment_views.py).
    """

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="attachment")
    file = models.FileField(upload_to=attachment_path, max_length=255)
    # As the sender named it: shown (escaped) and offered as the download's name.
    original_name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    # Set for images we re-encoded (is_image), None for other files.
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    # None until made (a thread, or the thumbnails worker): the message then shows the
    # image as a file link, and is pushed again once it exists.
    thumbnail = models.FileField(upload_to=attachment_path, max_length=255, null=True, blank=True)
    thumbnail_width = models.PositiveIntegerField(null=True, blank=True)
    thumbnail_height = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.original_name} ({self.content_type}, {self.size} bytes)"

    @property
    def is_image(self) -> bool:
        return self.width is not None

    @property
    def kind(self) -> str:
        return "image" if self.is_image else "file"

    @property
    def extension(self) -> str:
        """What the file's icon says: its name's extension (PDF, ZIP), else FILE."""
        stem, dot, extension = self.original_name.rpartition(".")
        if (
            stem
            and dot
            and 1 <= len(extension) <= 4
            and extension.isascii()
            and extension.isalnum()
        ):
            return extension.upper()
        return "FILE"

    def url(self) -> str:
        """The access-checked address of the file (rooms/attachment_views.py)."""
        return reverse("rooms:attachment", args=[self.message.room.slug, self.pk])

    def thumbnail_url(self) -> str:
        return reverse("rooms:attachment_thumbnail", args=[self.message.room.slug, self.pk])
