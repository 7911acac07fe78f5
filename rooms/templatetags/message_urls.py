"""`{% message_url name message %}`: `{% url name message.room.slug message.pk %}`, reversed
once per URL name instead of on every render.

A message's partial links to its own pages five times (permalink, react twice, edit,
delete), and each `{% url %}` resolved the pattern again: about a fifth of the partial's
render, which every posted message pays (on the event loop's one ORM thread, where it
delays every delivery behind it: bench/RESULTS.md, "Issue 16: CPU per delivery"). The
URL is reversed once with placeholders, per name, script prefix and URL conf (what
`reverse` depends on), and the message's slug and id are put in their places. A slug
that `reverse` would quote differently than a room name (never made by the app: room
names are lowercase letters, digits and hyphens) takes `reverse` itself.
"""

import functools
import re
from typing import Any

from django import template
from django.core.exceptions import ImproperlyConfigured
from django.urls import get_script_prefix, get_urlconf, reverse

from rooms.models import ROOM_SLUG_PATTERN

register = template.Library()

_SLUG = "slug-placeholder"  # a room name, quoted by reverse() as it is
_ID = "918273645546372819"  # an id no message has (the <int:> converter takes it)
_ROOM_SLUG = re.compile(ROOM_SLUG_PATTERN)


@functools.lru_cache(maxsize=256)
def _parts(name: str, prefix: str, urlconf: str | None) -> tuple[str, str, str]:
    """The URL before the slug, between the slug and the id, and after the id."""
    url = reverse(name, args=[_SLUG, int(_ID)], urlconf=urlconf)
    head, slug, rest = url.partition(_SLUG)
    between, pk, after = rest.partition(_ID)
    if not slug or not pk:
        raise ImproperlyConfigured(f"{name} is no URL of a room's slug then a message's id")
    return head, between, after


@register.simple_tag
def message_url(name: str, message: Any) -> str:
    """`{% url name message.room.slug message.pk %}`."""
    slug = message.room.slug
    if not _ROOM_SLUG.fullmatch(slug):
        return reverse(name, args=[slug, message.pk])
    head, between, after = _parts(name, get_script_prefix(), get_urlconf())
    return f"{head}{slug}{between}{message.pk}{after}"
