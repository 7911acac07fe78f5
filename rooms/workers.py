"""The thumbnails worker: `python manage.py runworker --layer thumbnails thumbnails`.

With Redis, a stored image's thumbnail is a job on the "thumbnails" channel of the
"thumbnails" channel layer (settings.CHANNEL_LAYERS: channels_redis' core layer, whose
channels are Redis lists, so a job waits for a worker and only one worker takes it). The
worker makes it (rooms/attachments.py make_thumbnail) and the message is pushed again to
the room, through the default layer, as any change is. Routed by site_config/asgi.py
("channel": ChannelNameRouter).
"""

import logging
from typing import Any

from channels.consumer import SyncConsumer

from rooms import attachments

log = logging.getLogger(__name__)


class ThumbnailConsumer(SyncConsumer):
    """One job at a time, in the worker's own thread (SyncConsumer: database calls are
    allowed, and its connections are closed between jobs)."""

    def thumbnail_make(self, message: dict[str, Any]) -> None:
        attachment_id = message.get("attachment")
        if not isinstance(attachment_id, int):
            log.warning("thumbnail job without an attachment id: %r", message)
            return
        try:
            attachments.make_thumbnail(attachment_id)
        except Exception:
            # The message keeps showing the image as a file link; the worker goes on.
            log.exception("thumbnail of attachment %s failed", attachment_id)
