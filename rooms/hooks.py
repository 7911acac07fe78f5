"""Incoming webhooks: a script or another service posts into a room over HTTP.

A room's owner (or staff) makes a hook on the room's hooks page (`/rooms/<slug>/hooks/`),
naming it: the name becomes a bot user, held to the same naming rules as anyone's. The
hook's URL is `POST /hooks/<token>/` with JSON `{"text": "..."}` or a form field `text`;
the token is `secrets.token_urlsafe(32)`, shown once, and only its sha256 is stored, so a
copy of the database gives no way in. What a hook sends takes the composer's path:
validated as a message is (MessageEditForm: the composer's text field, no `/pm`),
charged to the hook's own rate-limit bucket, stored, rendered once and pushed live by
services.post_message. A wrong or revoked token is a 404.

The hook keeps posting whatever becomes of its owner's access: the room's owner manages
it (and staff), and deleting the room deletes its hooks.
"""

import hashlib
import json
import logging
import math
import secrets
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.db import transaction
from django.utils import timezone

from accounts.forms import TrustedUsernameField
from accounts.services import check_name_is_free
from rooms import services
from rooms.forms import MessageEditForm
from rooms.models import Room, Webhook

log = logging.getLogger(__name__)

# Every hook has a bucket of its own, as every user has (services.rate_limiter): a
# script in a loop is refused with 429 and a Retry-After instead of filling the room.
rate_limiter = services.RateLimiter(settings.CHAT_RATE_BURST, settings.CHAT_RATE_PER_SECOND)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def may_manage(room: Room, user: Any) -> bool:
    """The room's owner and staff manage its hooks (even an owner the room no longer
    lets in: they are still the one responsible for it)."""
    return bool(user.is_authenticated and user.is_active) and (
        user.is_staff or room.owner_id == user.pk
    )


def create_hook(room: Room, creator: Any, name: str) -> tuple[Webhook, str]:
    """A new hook for `room` posting as a new bot user called `name` (already checked
    by HookForm); returns it and its token, which is not stored and cannot be shown
    again."""
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        bot = get_user_model().objects.create_user(username=name)  # no password: no log-in
        hook = Webhook.objects.create(
            room=room, bot=bot, created_by=creator, token_sha256=token_digest(token)
        )
    log.info("%s made webhook %s (%s) for %s", creator, hook.pk, bot, room)
    return hook, token


def revoke_hook(hook: Webhook, user: Any) -> None:
    if hook.revoked_at is None:
        Webhook.objects.filter(pk=hook.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        log.info("%s revoked webhook %s of %s", user, hook.pk, hook.room)


def find_hook(token: str) -> Webhook | None:
    """The live hook whose token this is, or None (unknown or revoked alike)."""
    if not token or len(token) > 200:
        return None
    return (
        Webhook.objects.select_related("room", "bot")
        .filter(token_sha256=token_digest(token), revoked_at__isnull=True)
        .first()
    )


@dataclass(frozen=True)
class Answer:
    """What the hook's URL answers: a status and a JSON body (and Retry-After)."""

    status: int
    body: dict[str, Any]
    retry_after: int | None = None


NOT_FOUND = Answer(404, {"ok": False, "error": "No such webhook (wrong or revoked token)."})


def read_text(content_type: str, raw: bytes, form: Any) -> str | Answer:
    """The text a request carries: JSON {"text": "..."} or the form field `text`."""
    if content_type.split(";")[0].strip().lower() == "application/json":
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            return Answer(400, {"ok": False, "error": "The body is not JSON."})
        if not isinstance(data, dict):
            return Answer(400, {"ok": False, "error": 'Send a JSON object: {"text": "..."}.'})
        text = data.get("text")
    else:
        text = form.get("text")
    if text is None:
        return Answer(400, {"ok": False, "error": 'No text: send {"text": "..."} or text=....'})
    if not isinstance(text, str):
        return Answer(400, {"ok": False, "error": "The text must be a string."})
    return text


def deliver(token: str, content_type: str, raw: bytes, form: Any) -> Answer:
    """Post what a request to `/hooks/<token>/` carries, as the hook's bot."""
    hook = find_hook(token)
    if hook is None:
        return NOT_FOUND
    text = read_text(content_type, raw, form)
    if isinstance(text, Answer):
        return text
    checked = MessageEditForm({"body": text})
    if not checked.is_valid():
        errors = [str(error) for error in checked.errors.get("body", [])] or ["Invalid text."]
        return Answer(400, {"ok": False, "error": " ".join(errors)})
    if not rate_limiter.allow(hook.pk):
        wait = max(1, math.ceil(1 / rate_limiter.per_second)) if rate_limiter.per_second else 60
        return Answer(429, {"ok": False, "error": services.TOO_FAST}, retry_after=wait)
    services.post_message(hook.room, hook.bot, checked.cleaned_data["body"])
    return Answer(200, {"ok": True})


class HookForm(forms.Form):
    """A new hook's name: its bot's username, held to the rules of anyone's (visible,
    not taken, not like a taken name)."""

    name = TrustedUsernameField(
        label="Bot name",
        max_length=150,
        help_text="What its messages are signed with, e.g. deploy-bot. Letters, digits and "
        "@ . + - _ only.",
        validators=[UnicodeUsernameValidator()],
    )

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        check_name_is_free(name)
        return name
