from django.db import migrations, models


def number_existing_messages(apps, schema_editor):
    """Number each room's messages 1, 2, ... in id order (what was the cursor until now)."""
    Room = apps.get_model("rooms", "Room")
    Message = apps.get_model("rooms", "Message")
    for room in Room.objects.all().iterator():
        seq = 0
        for message_id in room.messages.order_by("id").values_list("id", flat=True).iterator():
            seq += 1
            Message.objects.filter(pk=message_id).update(seq=seq)
        Room.objects.filter(pk=room.pk).update(last_seq=seq)


class Migration(migrations.Migration):
    """Messages get a per-room sequence number, taken under the room's row lock: ids can
    commit out of order on PostgreSQL, so they cannot be the catch-up cursor. A closed
    socket's presence row is kept for a grace period (rooms/presence.py)."""

    dependencies = [
        ("rooms", "0002_connection_socket_id"),
    ]

    operations = [
        migrations.AddField(
            model_name="room",
            name="last_seq",
            field=models.PositiveBigIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="message",
            name="seq",
            field=models.PositiveBigIntegerField(editable=False, null=True),
        ),
        migrations.RunPython(number_existing_messages, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="message",
            name="seq",
            field=models.PositiveBigIntegerField(editable=False),
        ),
        migrations.RemoveIndex(
            model_name="message",
            name="rooms_messa_room_id_0bf2cf_idx",
        ),
        migrations.AddField(
            model_name="connection",
            name="departed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddConstraint(
            model_name="message",
            constraint=models.UniqueConstraint(
                fields=("room", "seq"), name="message_room_seq_unique"
            ),
        ),
    ]
