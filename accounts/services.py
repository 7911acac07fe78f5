"""Accounts: signing up under a name people can trust, and the limits on log-ins and sign-ups.

Log-in attempts are counted by django-axes (site_config/settings.py, "Accounts"): after
LOGIN_FAILURE_LIMIT failures for one username, or from one address, further attempts are
refused before any password is hashed, for LOGIN_COOLOFF_MINUTES after the last failure.
Sign-ups are counted here, per address, in the database (RecentSignUp), so that every
process of a deployment shares one count.
"""

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.forms import BaseUserCreationForm
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max, Sum
from django.http import HttpRequest
from django.utils import timezone

from accounts.addresses import client_address
from accounts.models import Handle, RecentSignUp, likeness_key

log = logging.getLogger("accounts")

SIGNUP_WINDOW = timedelta(hours=1)
# The count for requests whose address could not be read.
UNKNOWN_ADDRESS = "unknown"

LOOKALIKE_MESSAGE = "That name looks like an existing user's name (“%(existing)s”): choose another."


@dataclass(frozen=True)
class Throttled:
    """An action refused for now: which, why, and until when."""

    action: str  # "login" or "signup"
    reason: str  # "account": too many failures for one username; "address": from one address
    until: datetime
    limit: int
    username: str = ""

    def seconds_left(self, now: datetime | None = None) -> int:
        remaining = (self.until - (now or timezone.now())).total_seconds()
        return max(1, math.ceil(remaining))

    def minutes_left(self, now: datetime | None = None) -> int:
        return math.ceil(self.seconds_left(now) / 60)


# Names ------------------------------------------------------------------------------


def lookalike_of(username: str, *, excluding_user_id: int | None = None) -> str | None:
    """The name of the (oldest) existing user whose name looks like `username`, if any."""
    handles = Handle.objects.filter(likeness_key=likeness_key(username))
    if excluding_user_id is not None:
        handles = handles.exclude(user_id=excluding_user_id)
    return handles.order_by("user_id").values_list("user__username", flat=True).first()


def check_name_is_free(username: str, *, user: AbstractBaseUser | None = None) -> None:
    """Raise a ValidationError, for the username field, when `username` is taken or looks
    like a taken name. `user` is the one being renamed: their own name does not count."""
    existing = lookalike_of(username, excluding_user_id=user.pk if user else None)
    if existing is None:
        return
    if existing.casefold() == username.casefold():
        # Same name, or the same but for case (which Django's own form refuses too).
        model = get_user_model()
        instance = user if user is not None else model()
        raise ValidationError(instance.unique_error_message(model, [model.USERNAME_FIELD]))
    raise ValidationError(LOOKALIKE_MESSAGE, code="lookalike", params={"existing": existing})


class NameTaken(Exception):
    """The name was free when the form checked it, and taken by the time it was saved."""

    def __init__(self, error: ValidationError) -> None:
        super().__init__(error.messages)
        self.error = error


def sign_up(form: "BaseUserCreationForm[User]", address: str | None) -> User:
    """Create the account of a valid sign-up form, counted against `address`.

    Two sign-ups of look-alike names at once both pass the form; the second one to
    commit hits the unique constraint on Handle and raises NameTaken, creating nothing.
    """
    try:
        with transaction.atomic():
            user = form.save()
            RecentSignUp.objects.create(address=address or UNKNOWN_ADDRESS)
    except IntegrityError:
        try:
            check_name_is_free(form.cleaned_data["username"])
        except ValidationError as taken:
            raise NameTaken(taken) from None
        raise  # not a name clash: a real fault
    RecentSignUp.objects.filter(created_at__lte=timezone.now() - SIGNUP_WINDOW).delete()
    return user


# Limits -----------------------------------------------------------------------------


def signup_throttle(address: str | None) -> Throttled | None:
    """Why `address` may not sign up now (SIGNUPS_PER_HOUR made in the last hour), or None."""
    limit = settings.SIGNUPS_PER_HOUR
    now = timezone.now()
    newest = list(
        RecentSignUp.objects.filter(
            address=address or UNKNOWN_ADDRESS, created_at__gt=now - SIGNUP_WINDOW
        )
        .order_by("-created_at")
        .values_list("created_at", flat=True)[:limit]
    )
    if len(newest) < limit:
        return None
    # The window has room again once the oldest of the newest `limit` sign-ups leaves it.
    log.warning("sign-up refused: %d sign-ups from one address within the hour", limit)
    return Throttled("signup", "address", until=newest[-1] + SIGNUP_WINDOW, limit=limit)


def login_lockout(request: HttpRequest) -> Throttled:
    """Why django-axes refused this log-in, and when the lockout ends.

    It ends when the failures that caused it are older than the cool-off; attempts during
    a lockout are not counted (AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT is off), so
    the end stays put. When both the account and the address are locked, the later end.
    """
    cool_off = get_cool_off(request) or timedelta(0)
    limit = settings.AXES_FAILURE_LIMIT
    now = timezone.now()
    username = get_client_username(request, getattr(request, "axes_credentials", None)) or ""
    address = getattr(request, "axes_ip_address", None) or client_address(request)
    recent = AccessAttempt.objects.filter(attempt_time__gte=now - cool_off)
    lockouts = []
    for reason, attempts in (
        ("account", recent.filter(username=username)),
        ("address", recent.filter(ip_address=address)),
    ):
        totals = attempts.aggregate(failures=Sum("failures_since_start"), last=Max("attempt_time"))
        if (totals["failures"] or 0) >= limit:
            until = totals["last"] + cool_off
            lockouts.append(Throttled("login", reason, until, limit, username))
    fallback = Throttled("login", "address", now + cool_off, limit, username)
    return max(lockouts, key=lambda lockout: lockout.until, default=fallback)
