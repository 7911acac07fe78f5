"""Every user's Handle follows their username, whichever way the user was saved."""

from typing import Any

from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver

from accounts.models import Handle, likeness_key


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="accounts.keep_handle")
def keep_handle(
    sender: Any, instance: Any, created: bool, raw: bool, update_fields: Any, **kwargs: Any
) -> None:
    """Claim the likeness of a new or renamed user's name.

    A name that looks like another user's raises IntegrityError here (the unique
    constraint), whatever made it: the forms refuse such names first with a clear
    message, and the sign-up turns a race into that message (services.sign_up). Saves
    that cannot change the name (a log-in's `last_login`) cost nothing.
    """
    if raw or (update_fields is not None and "username" not in update_fields):
        return
    key = likeness_key(instance.get_username())
    if created:
        Handle.objects.create(user=instance, likeness_key=key)
        return
    if Handle.objects.filter(user=instance, likeness_key=key).exists():
        return  # unchanged (a grandfathered look-alike keeps its name this way too)
    Handle.objects.update_or_create(
        user=instance, defaults={"likeness_key": key, "grandfathered": False}
    )
