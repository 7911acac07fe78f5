"""Full-text search of messages and private messages (rooms/search.py).

PostgreSQL: a stored generated tsvector column (`search_vector`, the 'simple'
configuration: lower-cased words, no stemming) on each table, with a GIN index.
SQLite: an external-content FTS5 table per table, kept in sync by triggers, filled
from what is already there. Neither is part of Django's model state: the columns and
tables exist only on their database, and only rooms/search.py reads them.
"""

from django.db import migrations


def install(apps, schema_editor):
    from rooms import search

    search.install(schema_editor.connection)


def uninstall(apps, schema_editor):
    from rooms import search

    search.uninstall(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("rooms", "0007_private_message_read_at")]

    operations = [migrations.RunPython(install, uninstall)]
