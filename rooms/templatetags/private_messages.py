"""`{% pm_unread %}`: the top bar's count of the viewer's unread private messages.

`{% load private_messages %}` (templates/base.html). One query per page, and only on
pages that show the top bar to someone signed in. The markup is room.html's pm-unread
partial, the same one a push replaces it with.
"""

from typing import Any

from django import template
from django.template.loader import render_to_string
from django.utils.safestring import SafeString, mark_safe

from rooms import services

register = template.Library()


@register.simple_tag(takes_context=True)
def pm_unread(context: template.Context) -> SafeString:
    user: Any = context.get("user")
    if user is None or not user.is_authenticated:
        return mark_safe("")
    unread = services.unread_private_messages(user.pk)
    # A rendered template (autoescaped): safe as it is.
    return mark_safe(render_to_string(f"{services.ROOM_TEMPLATE}#pm-unread", {"unread": unread}))
