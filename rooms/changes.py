"""A message's life after it is posted: edited, deleted, reacted to.

Each change is stored like a message is: in one transaction that takes the room's next
sequence number (the message's `changed_seq`), then the message as it is now is rendered
once and published to the room after commit. Every open page swaps it in by id; a page
that was offline is sent the current state of every message changed after its cursor when
it reconnects (services.catch_up_frames). Views and the admin call these; whoever calls,
the same checks hold.
"""

import logging
import unicodedata
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

import realtime
from rooms import attachments, attention
from rooms.models import Message, MessageRevision, Reaction, Room
from rooms.services import Posted, User, attach_reactions, render_fragment, room_group

log = logging.getLogger(__name__)

# The reactions offered with one tap; anything else up to REACTION_MAX_LENGTH characters
# may be typed (Campfire's "boosts").
REACTION_PALETTE = ("👍", "❤️", "😂", "🎉", "😮", "🙏")
REACTION_MAX_LENGTH = 16


class ChangeRefused(Exception):
    """Why a change was refused; its text is shown to the user as it is."""

    status = 403


class NotYours(ChangeRefused):
    pass


class EditWindowClosed(ChangeRefused):
    pass


class InvalidReaction(ChangeRefused):
    status = 400


def edit_window() -> timedelta:
    return timedelta(minutes=settings.CHAT_EDIT_WINDOW_MINUTES)


def edit_deadline(message: Message) -> datetime:
    return message.created_at + edit_window()


def may_edit(message: Message, user: User) -> None:
    """Raise ChangeRefused unless `user` may edit `message` now: their own, within the
    edit window (staff too: they may delete anyone's message, not reword it)."""
    if message.author_id != user.pk:
        raise NotYours("Only its author can edit a message.")
    if timezone.now() >= edit_deadline(message):
        minutes = settings.CHAT_EDIT_WINDOW_MINUTES
        raise EditWindowClosed(
            f"This message can no longer be edited: messages can be edited for "
            f"{minutes} minute{'s' if minutes != 1 else ''} after they are sent."
        )


def may_delete(message: Message, user: User) -> None:
    if message.author_id != user.pk and not user.is_staff:
        raise NotYours("Only its author (or a moderator) can delete a message.")


def live_messages(room: Room) -> QuerySet[Message]:
    """The room's messages that are not deleted, with what rendering one needs."""
    return room.messages.filter(deleted_at__isnull=True).select_related(
        "author", "reply_to__author", "attachment"
    )


def edit_message(message: Message, user: User, body: str) -> Posted:
    """Replace the text of `message` (its author's, in the edit window) with `body`,
    already validated as a composer's is; the old text is kept for staff (the admin).
    Its mentions are read again: whoever it mentions now is notified, once."""
    may_edit(message, user)
    if message.body == body:
        # Nothing changed. (No sequence number may be spent without a change to show for
        # it: a page's cursor moves only over numbers it has seen.)
        return Posted(_render_change(message), [])
    with transaction.atomic():
        message = _locked(message)
        may_edit(message, user)
        MessageRevision.objects.create(
            message=message, body=message.body, written_at=message.edited_at or message.created_at
        )
        message.body = body
        message.edited_at = timezone.now()
        mentioned = attention.mentioned_users(message.room, message.author, body)
        message.mentioned = attention.mentioned_text(mentioned)
        newly = attention.store_mentions(message, mentioned)
        posted = _changed(message, "body", "edited_at", "mentioned")
        posted.publications += attention.notify(message, newly)
    log.info("message %s edited by %s", message.pk, user)
    return posted


def delete_message(message: Message, user: User) -> Posted:
    """Delete `message` (its author, or staff): its text, earlier versions and reactions
    go; its row stays as a tombstone so that open and reconnecting pages learn of it."""
    may_delete(message, user)
    with transaction.atomic():
        message = _locked(message)
        message.revisions.all().delete()
        message.reactions.all().delete()
        attention.forget_mentions(message)
        attachments.discard(message)  # its files leave the store once this commits
        message.body = ""
        message.deleted_at = timezone.now()
        posted = _changed(message, "body", "deleted_at", "mentioned")
    log.info("message %s deleted by %s", message.pk, user)
    return posted


def attachment_changed(message: Message) -> Posted:
    """Push `message` again: its attachment changed (its thumbnail is ready). A change
    like any other, so a page offline meanwhile gets the message as it is now in its
    catch-up. Message.DoesNotExist if it was deleted meanwhile."""
    with transaction.atomic():
        return _changed(_locked(message))


def clean_reaction(text: str) -> str:
    """A reaction as typed, normalised (NFC, trimmed); InvalidReaction for an empty one,
    one too long, or one with control or formatting-only characters."""
    emoji = unicodedata.normalize("NFC", text.strip())
    if not emoji:
        raise InvalidReaction("Choose a reaction, or type one.")
    if len(emoji) > REACTION_MAX_LENGTH:
        raise InvalidReaction(
            f"A reaction is at most {REACTION_MAX_LENGTH} characters (that one has {len(emoji)})."
        )
    # Emoji sequences join with ZWJ (Cf) and take variation selectors (Mn): allowed;
    # line breaks, tabs, bidi overrides and other controls are not.
    if any(
        unicodedata.category(char) == "Cc"
        or char in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
        for char in emoji
    ):
        raise InvalidReaction("A reaction cannot contain line breaks or control characters.")
    return emoji


def toggle_reaction(message: Message, user: Any, text: str) -> Posted:
    """Add `user`'s reaction `text` to `message`, or take it back if they had it."""
    emoji = clean_reaction(text)
    with transaction.atomic():
        message = _locked(message)
        removed, _ = Reaction.objects.filter(message=message, user=user, emoji=emoji).delete()
        if not removed:
            Reaction.objects.create(message=message, user=user, emoji=emoji)
        posted = _changed(message)
    log.info(
        "%s %s %s on message %s", user, "took back" if removed else "reacted", emoji, message.pk
    )
    return posted


def _locked(message: Message) -> Message:
    """The message as stored now (not deleted meanwhile), its room's row locked: taking
    the room's sequence number first serialises changes to the room."""
    seq = Room.take_seq(message.room_id)
    fresh = live_messages(message.room).select_related("room").get(pk=message.pk)
    fresh.changed_seq = seq
    return fresh


def _changed(message: Message, *fields: str) -> Posted:
    message.save(update_fields=["changed_seq", *fields])
    html = _render_change(message)
    published = realtime.publish_on_commit(
        room_group(message.room_id), html, seq=message.changed_seq
    )
    return Posted(html, [published])


def _render_change(message: Message) -> str:
    """What every page of the room is sent: the message as it is now, to swap in by id
    (dropped by pages that do not show it), and its change's number for the cursor."""
    attach_reactions([message])
    return render_fragment("message-change", message=message)
