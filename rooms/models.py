from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
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

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def get_absolute_url(self) -> str:
        return reverse("rooms:detail", args=[self.slug])

    @property
    def group_name(self) -> str:
        return f"room.{self.pk}"


class Message(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="messages"
    )
    body = models.TextField(max_length=settings.CHAT_MESSAGE_MAX_LENGTH)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        # The primary key is the room's sequence: ids only grow, so "after id N" is
        # exactly what a client that has seen N is missing.
        ordering = ["id"]
        indexes = [models.Index(fields=["room", "id"])]

    def __str__(self) -> str:
        return f"{self.author} in {self.room}: {self.body[:40]}"


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

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["sender", "recipient", "id"])]

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

    def __str__(self) -> str:
        return f"{self.user} in {self.room} via {self.server}"
