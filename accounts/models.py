import hashlib

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts import names


def likeness_key(username: str) -> str:
    """The stored form of a name's likeness (accounts.names.likeness): its SHA-256.

    A digest, because a likeness can be seven times longer than the name (a Hangul
    syllable decomposes into jamo with prototypes of their own), and a 150-character name
    would then pass PostgreSQL's limit for a b-tree index entry.
    """
    return hashlib.sha256(names.likeness(username).encode()).hexdigest()


class Handle(models.Model):
    """A user's claim on how their name looks: no two users share a likeness.

    Kept in step with the username by a post_save signal (accounts/signals.py), so every
    way of making or renaming a user (sign-up, admin, shell) is held to it; the unique
    constraint makes a race between two look-alike sign-ups fail in the database.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="handle"
    )
    likeness_key = models.CharField(max_length=64, db_index=True)
    # Users who already shared a likeness with an older user when this rule came in keep
    # their names; only the oldest of them holds the claim (migration 0002).
    grandfathered = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["likeness_key"],
                condition=Q(grandfathered=False),
                name="accounts_handle_one_user_per_likeness",
            )
        ]

    def __str__(self) -> str:
        return f"handle of user {self.user_id}"


class RecentSignUp(models.Model):
    """An account made from an address: what the per-address sign-up limit counts.

    Only the limit's window is kept (older rows are deleted as new ones come), so no
    address is stored for longer than that, and no row says which account it made.
    """

    address = models.CharField(max_length=45)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["address", "created_at"])]

    def __str__(self) -> str:
        return f"sign-up from {self.address} at {self.created_at:%Y-%m-%d %H:%M}"


class Preferences(models.Model):
    """What a user chose about how pages look to them: for now, the time zone that page
    renders use for times and day dividers (pushed messages are converted by the page)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="preferences",
    )
    time_zone = models.CharField(max_length=64, default="UTC")

    def __str__(self) -> str:
        return f"preferences of user {self.user_id}"
