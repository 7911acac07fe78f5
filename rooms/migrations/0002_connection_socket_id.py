from django.db import migrations


class Migration(migrations.Migration):
    """Sockets no longer have a channel-layer channel each (rooms/fanout.py): a presence
    row is keyed by a socket id the process gives out."""

    dependencies = [
        ("rooms", "0001_initial"),
    ]

    operations = [
        migrations.RenameField(
            model_name="connection",
            old_name="channel_name",
            new_name="socket_id",
        ),
    ]
