"""The viewer's time zone: what a page render uses for times and day dividers.

A page is rendered for one viewer, so it can use their zone; a fragment pushed over a
room socket is rendered once for everyone, in UTC, and the page converts it
(static/js/chat.js). Without a saved choice the zone is UTC.
"""

import functools
import zoneinfo
from collections.abc import Callable
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from django.http import HttpRequest
from django.utils import dateformat, timezone

from accounts.models import Preferences

DEFAULT_TIME_ZONE = "UTC"

P = ParamSpec("P")
R = TypeVar("R")


def time_zone_of(user: Any) -> str:
    """The zone `user` chose (an IANA name), or UTC (also for anonymous users)."""
    if not getattr(user, "is_authenticated", False):
        return DEFAULT_TIME_ZONE
    chosen = Preferences.objects.filter(user=user).values_list("time_zone", flat=True).first()
    return chosen or DEFAULT_TIME_ZONE


def has_chosen_time_zone(user: Any) -> bool:
    return Preferences.objects.filter(user=user).exists()


def choose_time_zone(user: Any, zone: str) -> None:
    Preferences.objects.update_or_create(user=user, defaults={"time_zone": zone})


def in_viewer_time_zone(view: Callable[P, R]) -> Callable[P, R]:
    """Run a (sync) view with the signed-in viewer's zone active, for its renders only:
    timezone.override restores the previous zone afterwards, so nothing leaks to the next
    request served by the same thread."""

    @functools.wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        request = args[0]
        assert isinstance(request, HttpRequest)
        zone = zoneinfo.ZoneInfo(time_zone_of(request.user))
        with timezone.override(zone):
            return view(*args, **kwargs)

    return wrapped


def day_label(moment: datetime, now: datetime) -> str:
    """What a day divider says for the day of `moment`, in the active zone, seen at `now`:
    "Today", "Yesterday", the weekday and date within a week, else the full date."""
    day = timezone.localtime(moment).date()
    days_ago = (timezone.localtime(now).date() - day).days
    if days_ago == 0:
        return "Today"
    if days_ago == 1:
        return "Yesterday"
    if 1 < days_ago < 7:
        return dateformat.format(day, "l j F")
    return dateformat.format(day, "l j F Y")
