"""{{ moment|day_label }}: a day divider's words, in the active zone (accounts.time_zones)."""

from datetime import datetime

from django import template
from django.utils import timezone

from accounts import time_zones

register = template.Library()


@register.filter
def day_label(moment: datetime) -> str:
    return time_zones.day_label(moment, timezone.now())
