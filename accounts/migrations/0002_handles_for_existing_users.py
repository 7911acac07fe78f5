"""A Handle for every user who existed before names were held to look unlike each other.

Users whose names already looked alike keep them: the oldest holds the claim, the others
are marked grandfathered (the unique constraint skips them). New names are checked
against all of them.
"""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import migrations

from accounts.models import likeness_key

BATCH = 1000


def create_handles(apps, schema_editor):
    User = apps.get_model(settings.AUTH_USER_MODEL)
    Handle = apps.get_model("accounts", "Handle")
    claimed: set[str] = set()
    batch = []
    # Historical models lack USERNAME_FIELD; the field's name is the live model's.
    name_field = get_user_model().USERNAME_FIELD
    users = User.objects.filter(handle__isnull=True).order_by("pk")
    for pk, username in users.values_list("pk", name_field).iterator(BATCH):
        key = likeness_key(username)
        batch.append(Handle(user_id=pk, likeness_key=key, grandfathered=key in claimed))
        claimed.add(key)
        if len(batch) >= BATCH:
            Handle.objects.bulk_create(batch)
            batch = []
    Handle.objects.bulk_create(batch)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [migrations.RunPython(create_handles, migrations.RunPython.noop)]
