"""Files sent with room messages: checked, stored, thumbnailed, deleted with their message.

A file comes with the composer's form (a multipart POST, rooms/views.py post_message; with
JavaScript the same POST by htmx, the text of a message without a file still going over
the socket). It takes the composer's path: the message and its Attachment are stored in
one transaction, rendered once and published (services.post_message).

What is refused, each with its own sentence for the composer: an empty file, one over
CHAT_ATTACHMENT_MAX_BYTES, more than CHAT_ATTACHMENTS_PER_MINUTE files a minute from one
user, an image over CHAT_ATTACHMENT_MAX_PIXELS (a decompression bomb: a small file that
declares a huge picture), a file with a /pm (private messages carry text only).

Images are whatever Pillow reads as JPEG, PNG, GIF or WebP, whatever the client said:
stored re-encoded on the request path (turned upright by their EXIF orientation, and
without EXIF, GPS or other metadata, which Pillow writes only when asked), so the full
image served inline is one we made. Anything else is a plain file, only ever served as a
download (rooms/attachment_views.py). Thumbnails are made off the request path: with Redis
by the thumbnails worker (`manage.py runworker --layer thumbnails thumbnails`, rooms/
workers.py), else in this process; when one is ready the message is pushed again as a
change (rooms/changes.py), so pages that were offline get it in their catch-up too.
"""

import asyncio
import concurrent.futures
import io
import logging
import mimetypes
import re
import threading
import unicodedata
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asgiref.sync import SyncToAsync, async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import close_old_connections, connection, transaction
from django.db.models import Q
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils.text import get_valid_filename
from PIL import Image, ImageOps, UnidentifiedImageError

from rooms import services
from rooms.forms import ComposerForm
from rooms.models import Attachment, Message, Room, attachment_path

log = logging.getLogger(__name__)

# A file as a request carries it (in memory, or spooled to a temporary file).
# (Generic only in django-stubs, so the alias is for the type checker alone.)
if TYPE_CHECKING:
    Upload = UploadedFile[bytes]
else:
    Upload = UploadedFile

# Pillow's format name -> the type we serve the image (re-encoded by us) as.
IMAGE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
# The formats re-encoded with all their frames (reencode): an animation stays one.
ANIMATED = {"GIF", "WEBP"}
# Pillow names a JPEG that carries more pictures after the photo (MPO: what phone
# cameras write for a depth or gain map) by the container; the photo is its first
# picture, and is a JPEG like any other. (It was stored as a plain file: no preview.)
SAME_AS = {"MPO": "JPEG"}


def format_of(image: Image.Image) -> str:
    return SAME_AS.get(image.format or "", image.format or "")


# The worker's channel, and the channel layer it listens on (settings.CHANNEL_LAYERS).
THUMBNAILS_CHANNEL = "thumbnails"
THUMBNAILS_LAYER = "thumbnails"
FILE_ONLY_FORBIDDEN_WITH_PM = "Files can only be sent to the room: send the /pm without the file."

# Files per user per minute, in the style of the messages' limit: a bucket of
# CHAT_ATTACHMENTS_PER_MINUTE refilled over a minute (per process, as that one is).
rate_limiter = services.RateLimiter(
    settings.CHAT_ATTACHMENTS_PER_MINUTE, settings.CHAT_ATTACHMENTS_PER_MINUTE / 60
)


class AttachmentRefused(Exception):
    """Why a file was not accepted; its text is the composer's error as it is."""

    status = 400


class TooManyFiles(AttachmentRefused):
    status = 429


# Sizes -------------------------------------------------------------------------------------


def readable_size(size: int) -> str:
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            return f"{size / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def check_size(upload: Upload) -> None:
    """An empty file, or one over the limit, is refused before anything is stored. (A body
    much larger never got here: http_guard caps the composer's POST at the limit plus the
    form's overhead before reading it.)"""
    size = upload.size or 0
    if size == 0:
        raise AttachmentRefused(f"“{display_name(upload.name)}” is empty: nothing was sent.")
    limit = settings.CHAT_ATTACHMENT_MAX_BYTES
    if size > limit:
        raise AttachmentRefused(
            f"That file is too big: {readable_size(size)}, and files can be at most "
            f"{readable_size(limit)}."
        )


def check_rate(user_id: int) -> None:
    """Charge one file to the user's bucket; TooManyFiles once it is empty."""
    if not rate_limiter.allow(user_id):
        per_minute = settings.CHAT_ATTACHMENTS_PER_MINUTE
        raise TooManyFiles(
            f"Too many files: at most {per_minute} a minute. Wait a little, then send it again."
        )


# Names -------------------------------------------------------------------------------------


def display_name(name: str | None) -> str:
    """The name as sent, fit to show and to offer as a download's name: no folders, no
    control or bidi-override characters, not only dots, at most 200 characters (its
    extension kept). (Escaped where shown.)"""
    base = re.split(r"[\\/]", name or "")[-1]
    clean = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    if not clean.replace(".", "").strip():
        return "file"  # only dots ("..", ". ."): a path's parent, not a name to offer
    if len(clean) > 200:
        # Cut the stem, not the extension: the download keeps what opens it.
        stem, dot, extension = clean.rpartition(".")
        if stem and len(extension) <= 16:
            return stem[: 200 - len(dot + extension)] + dot + extension
    return clean[:200]


def storage_name(name: str) -> str:
    """The name part of the stored file's path (in its random folder): ASCII letters,
    digits, '-', '_' and '.', so it is safe in any store and in X-Accel-Redirect."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    try:
        safe = get_valid_filename(ascii_name)
    except Exception:  # SuspiciousFileOperation: nothing usable left ("..", "")
        safe = ""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", safe)[-100:].lstrip(".")
    return safe or "file"


# Images ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inspected:
    """What a file turned out to be: for an image, its re-encoded bytes and size."""

    content_type: str
    image: bytes | None = None
    width: int | None = None
    height: int | None = None


def image_too_large(pixels: int) -> AttachmentRefused:
    return AttachmentRefused(
        f"image too large: {pixels:,} pixels (at most {settings.CHAT_ATTACHMENT_MAX_PIXELS:,})."
    )


def open_image(data: Any) -> Image.Image | None:
    """The image in `data` (a file), only its header read yet; None for what is not one
    of IMAGE_TYPES. A decompression bomb (more than CHAT_ATTACHMENT_MAX_PIXELS declared)
    is refused here, before its pixels are decoded."""
    Image.MAX_IMAGE_PIXELS = settings.CHAT_ATTACHMENT_MAX_PIXELS
    try:
        with warnings.catch_warnings():
            # Pillow warns past MAX_IMAGE_PIXELS and raises only past twice that: both
            # are refusals here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(data, formats=list(IMAGE_TYPES))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as bomb:
        found = re.search(r"\((\d+) pixels\)", str(bomb))
        raise image_too_large(int(found[1]) if found else 0) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    if image.width * image.height > settings.CHAT_ATTACHMENT_MAX_PIXELS:
        raise image_too_large(image.width * image.height)
    return image


class Borrowed:
    """The upload as Pillow reads it, which it may not close. Closing an image closes the
    file it was read from, and an image that opens but does not decode (a truncated PNG)
    is then stored as a plain file: from a closed upload, a 500 (an upload spooled to a
    temporary file is even deleted as it closes)."""

    def __init__(self, file: Upload) -> None:
        self.file = file

    def read(self, size: int = -1) -> bytes:
        return bytes(self.file.read(size))

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self.file.seek(offset, whence))

    def tell(self) -> int:
        return int(self.file.tell())

    def close(self) -> None:
        """The upload stays open: it belongs to the request."""


def animation_too_large(frames: int, width: int, height: int) -> AttachmentRefused:
    return AttachmentRefused(
        f"animation too large: {frames:,} frames of {width:,}×{height:,} pixels (at most "
        f"{settings.CHAT_ATTACHMENT_MAX_PIXELS:,} pixels in all its frames)."
    )


def check_frames(image: Image.Image) -> None:
    """An animation is re-encoded frame by frame, and each frame is decoded at the full
    picture's size however small it is in the file: a GIF of a few bytes a frame could
    declare thousands of them (a 9 KiB file of 400 one-pixel frames on a 1000x1000 canvas
    took 15 s and 290 MB to re-encode). So every frame counts against the pixel limit,
    counted before any is decoded (Pillow reads the frames' headers only: 1.7 s for the
    500,000 one-pixel frames 10 MiB holds). And each frame costs its own work however
    small (those 500,000 took 65 s): at most CHAT_ATTACHMENT_MAX_FRAMES.

    A GIF's picture grows as a later frame reaches past it (Pillow follows), so the size
    read at its first frame is not the size of the others (a 1x1 GIF whose second frame
    was 1000x1000 passed as 102 pixels and took 5.8 s): each frame is counted at the size
    the picture has at it, walking the frames' headers (Image.seek, which decodes
    nothing) and stopping as soon as the sum is past the limit."""
    if image.format not in ANIMATED:
        return
    try:
        frames = getattr(image, "n_frames", 1)
    except (OSError, ValueError, SyntaxError, EOFError):
        return  # frames that cannot be counted cannot be decoded: a plain file (inspect)
    if frames > settings.CHAT_ATTACHMENT_MAX_FRAMES:
        raise AttachmentRefused(
            f"animation too long: {frames:,} frames (at most "
            f"{settings.CHAT_ATTACHMENT_MAX_FRAMES:,})."
        )
    if frames == 1:
        return
    pixels = 0
    try:
        for index in range(frames):
            image.seek(index)
            pixels += image.width * image.height
            if pixels > settings.CHAT_ATTACHMENT_MAX_PIXELS:
                raise animation_too_large(frames, image.width, image.height)
        image.seek(0)
    except Image.DecompressionBombError:
        raise animation_too_large(frames, image.width, image.height) from None
    except (OSError, ValueError, SyntaxError, EOFError):
        return  # a frame that cannot be read cannot be re-encoded: a plain file (inspect)


# A progressive JPEG is decoded in as many passes over the whole picture as it has scans
# (start-of-scan markers), and nothing limits their number: a 37 KiB 2000x2000 JPEG with
# 1,000 scans took 5.4 s to decode, and 10 MiB holds hundreds of thousands. An ordinary
# one has about ten (libjpeg's own progression: 6 grey, 10 colour).
JPEG_MAX_SCANS = 100
START_OF_SCAN = b"\xff\xda"


def check_scans(upload: Upload) -> None:
    """Count a JPEG's scans before it is decoded: in the data after a scan's header a
    0xFF byte is always followed by 0x00 or a marker, so every FF DA is a scan (or a byte
    pair inside metadata: an over-count only ever refuses, and needs 100 of them)."""
    upload.seek(0)
    if upload.read(2) != b"\xff\xd8":
        return  # not a JPEG
    scans, carried = 0, b""
    while chunk := upload.read(1 << 16):
        data = carried + chunk
        scans += data.count(START_OF_SCAN)
        carried = data[-1:]  # a marker may straddle two chunks (one byte cannot hold one)
    if scans > JPEG_MAX_SCANS:
        raise AttachmentRefused(
            f"image too complex: {scans:,} scans (a JPEG may have at most {JPEG_MAX_SCANS})."
        )


# A picture at the pixel limit takes about half a gigabyte while it is decoded, and every
# request runs in a thread of its own: at most this many decodes at once per process (the
# re-encode on the request path and the thumbnails made here), the others wait their turn,
# so memory stays bounded however many large uploads arrive together.
DECODING = threading.BoundedSemaphore(2)


def inspect(upload: Upload, name: str) -> Inspected:
    """What the upload is. An image (by its content, as Pillow reads it) comes back
    re-encoded: upright, without metadata. Anything else (or an image Pillow cannot
    decode) is a file, typed by its name for display only: files are always served as
    downloads."""
    check_scans(upload)
    upload.seek(0)
    with DECODING:
        return _inspect(upload, name)


def _inspect(upload: Upload, name: str) -> Inspected:
    image = open_image(Borrowed(upload))
    if image is not None:
        try:
            check_frames(image)
        except BaseException:
            image.close()
            raise
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                encoded, width, height = reencode(image)
            return Inspected(IMAGE_TYPES[format_of(image)], encoded, width, height)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise image_too_large(image.width * image.height) from None
        except (OSError, ValueError, SyntaxError, EOFError, KeyError) as error:
            log.info("%r looks like an image but does not decode (%r): a plain file", name, error)
        finally:
            image.close()
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return Inspected(guessed or "application/octet-stream")


# Pillow copies a JPEG's or GIF's comment (COM segment, comment extension: free text a
# camera or an editor fills, a serial number, a name, a path) into the file it writes
# unless told otherwise; an empty one is written as none.
NO_COMMENT: dict[str, Any] = {"comment": b""}


def reencode(image: Image.Image) -> tuple[bytes, int, int]:
    """The image written again in its own format, turned upright by its EXIF
    orientation, with no EXIF (nor GPS, XMP: Pillow writes those only when given them,
    and nothing is given; comments it would copy, so it is given an empty one). Animated
    GIF and WebP keep their frames."""
    kind = format_of(image) or "PNG"
    out = io.BytesIO()
    if getattr(image, "n_frames", 1) > 1 and kind in ANIMATED:
        extra = {"loop": image.info.get("loop", 0), "duration": image.info.get("duration")}
        extra = {k: v for k, v in extra.items() if v is not None}
        image.save(out, kind, save_all=True, **extra, **NO_COMMENT)
        return out.getvalue(), image.width, image.height
    upright = ImageOps.exif_transpose(image)
    if kind == "JPEG":
        upright = upright.convert("RGB") if upright.mode not in {"RGB", "L"} else upright
        upright.save(out, "JPEG", quality=90, optimize=True, **NO_COMMENT)
    elif kind == "WEBP":
        upright.save(out, "WEBP", quality=90)
    elif kind == "GIF":
        upright.save(out, "GIF", **NO_COMMENT)
    else:
        upright.save(out, "PNG", optimize=True)
    return out.getvalue(), upright.width, upright.height


SIXTEEN_BIT_GREY = {"I;16", "I;16B", "I;16L", "I"}


def thumbnail_of(data: bytes) -> tuple[bytes, str, int, int]:
    """A thumbnail (JPEG, or PNG where the image has transparency) no larger than
    CHAT_THUMBNAIL_SIZE square, of an image we stored (already upright, no metadata)."""
    with DECODING:
        return _thumbnail_of(data)


def _thumbnail_of(data: bytes) -> tuple[bytes, str, int, int]:
    image = open_image(io.BytesIO(data))
    if image is None:
        raise ValueError("not an image")
    with image:
        image.seek(0)
        image.draft("RGB", (settings.CHAT_THUMBNAIL_SIZE, settings.CHAT_THUMBNAIL_SIZE))
        small = image.copy()
    if small.mode in SIXTEEN_BIT_GREY:
        # 16-bit grey (a PNG from a scanner, a microscope): converted as it is, every
        # value past 255 is white, so the preview was a white square. Scaled to 8 bits.
        small = small.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    size = settings.CHAT_THUMBNAIL_SIZE
    small.thumbnail((size, size))
    out = io.BytesIO()
    transparent = small.mode in {"RGBA", "LA", "PA"} or "transparency" in small.info
    if transparent:
        small.convert("RGBA").save(out, "PNG", optimize=True)
        return out.getvalue(), "png", small.width, small.height
    small.convert("RGB").save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue(), "jpg", small.width, small.height


# Posting -----------------------------------------------------------------------------------


@dataclass
class Submitted:
    """The composer's form (bound; with errors when refused), what was posted if
    anything, and a refusal of the file, if that is why nothing was."""

    form: ComposerForm
    posted: services.Posted | None
    error: str = ""
    status: int = 400


def submit_with_file(room: Room, user: Any, data: Any, upload: Upload) -> Submitted:
    """The composer's form with a file: text optional. Validate the text as any message's,
    then the file, then store both in one transaction and publish the message once."""
    form = ComposerForm(data)
    form.fields["body"].required = False  # a file alone is a message
    if not form.is_valid():
        return Submitted(form, None)
    if form.cleaned_data["recipient"] is not None:
        return Submitted(form, None, FILE_ONLY_FORBIDDEN_WITH_PM)
    reply_to = None
    if (reply_id := form.cleaned_data.get("reply_to")) is not None:
        reply_to = room.messages.filter(pk=reply_id, deleted_at__isnull=True).first()
        if reply_to is None:
            form.add_error(None, services.REPLY_GONE)
            return Submitted(form, None)
    try:
        posted = post_with_file(
            room,
            user,
            form.cleaned_data["body"] or "",
            upload,
            reply_to,
            form.cleaned_data["token"],
        )
    except AttachmentRefused as refusal:
        return Submitted(form, None, str(refusal), refusal.status)
    return Submitted(form, posted)


def post_with_file(
    room: Room,
    user: Any,
    body: str,
    upload: Upload,
    reply_to: Message | None = None,
    token: str = "",
) -> services.Posted:
    """Check the file (size, the user's files a minute, what it is), then store the message
    and its Attachment together and publish the message once. AttachmentRefused if the
    file is not accepted (nothing stored then); nothing stored either for a send repeated
    (its `token` again: services.post_message)."""
    check_size(upload)
    check_rate(user.pk)
    name = display_name(upload.name)
    found = inspect(upload, name)
    stored: list[str] = []

    def attach(message: Message) -> None:
        attachment = Attachment(
            message=message,
            original_name=name,
            content_type=found.content_type,
            size=len(found.image) if found.image is not None else upload.size or 0,
            width=found.width,
            height=found.height,
        )
        safe = storage_name(name)
        if found.image is not None:
            attachment.file.save(safe, ContentFile(found.image), save=False)
        else:
            upload.seek(0)
            attachment.file.save(safe, upload, save=False)
        stored.append(str(attachment.file.name))
        attachment.save()
        if found.image is not None:
            transaction.on_commit(lambda: schedule_thumbnail(attachment.pk))

    try:
        posted = services.post_message(
            room, user, body, reply_to=reply_to, attach=attach, token=token
        )
    except BaseException:
        for name_stored in stored:  # the transaction rolled back: no row points at it
            default_storage.delete(name_stored)
        raise
    log.info("%s attached %r (%s) in %s", user, name, found.content_type, room)
    return posted


def discard(message: Message) -> None:
    """Delete the message's attachment (its row now, its files once this transaction
    commits: files_leave_with_their_row): called as the message is deleted
    (changes.delete_message)."""
    Attachment.objects.filter(message=message).delete()


@receiver(post_delete, sender=Attachment, dispatch_uid="attachment-files")
def files_leave_with_their_row(sender: type[Attachment], instance: Attachment, **_: Any) -> None:
    """However a row goes (its message deleted, its room deleted, its author's account
    deleted, the admin), its files leave the store once that transaction commits (not
    before: a rollback would leave a row pointing at nothing)."""
    names = [str(name) for name in (instance.file.name, instance.thumbnail.name) if name]
    if names:
        transaction.on_commit(lambda: _delete_files(names))


def _delete_files(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except Exception:  # a store that is down: the row is gone, the file is orphaned
            log.exception("could not delete attachment file %s", name)


# Thumbnails --------------------------------------------------------------------------------


def make_thumbnail(attachment_id: int) -> bool:
    """Make the attachment's thumbnail, store it, and push its message again (as a
    change: rooms/changes.py). False if there is nothing to do (gone, not an image,
    already made)."""
    from rooms import changes  # (changes imports this module, to discard files)

    attachment = Attachment.objects.select_related("message").filter(pk=attachment_id).first()
    if attachment is None or not attachment.is_image or attachment.thumbnail:
        return False
    with attachment.file.open("rb") as full:
        data, extension, width, height = thumbnail_of(full.read())
    stem = storage_name(attachment.original_name).rsplit(".", 1)[0]
    name = default_storage.save(
        attachment_path(attachment, f"thumb-{stem}.{extension}"), ContentFile(data)
    )
    not_made = Q(thumbnail="") | Q(thumbnail__isnull=True)
    try:
        with transaction.atomic():
            # The room's row first, as every change to the room (changes._locked) and a
            # deletion take it: the attachment's row after it. (The other way round, a
            # message deleted meanwhile deadlocked with this on PostgreSQL, and one of the
            # two failed.)
            list(Room.objects.select_for_update().filter(pk=attachment.message.room_id))
            updated = Attachment.objects.filter(not_made, pk=attachment.pk).update(
                thumbnail=name, thumbnail_width=width, thumbnail_height=height
            )
            if updated:
                changes.attachment_changed(attachment.message)
    except Message.DoesNotExist:
        updated = 0  # deleted meanwhile (rolled back): its rows are gone with it
    except BaseException:
        default_storage.delete(name)  # no row points at it
        raise
    if not updated:
        default_storage.delete(name)
        return False
    log.info("thumbnail made for attachment %s (%dx%d)", attachment.pk, width, height)
    return True


def _make_quietly(attachment_id: int) -> None:
    """make_thumbnail in a thread of its own: its failure is logged (the message keeps
    showing the image as a file link), and its database connection is closed at the end."""
    try:
        close_old_connections()
        make_thumbnail(attachment_id)
    except Exception:
        log.exception("thumbnail of attachment %s failed", attachment_id)
    finally:
        connection.close()


# In-process thumbnails still being made (tests wait for them: settle()).
_pending: set["concurrent.futures.Future[None] | threading.Thread"] = set()


def schedule_thumbnail(attachment_id: int) -> None:
    """Have the thumbnail made off the request path: by the thumbnails worker when there
    is one (Redis), else in this process."""
    if THUMBNAILS_LAYER in settings.CHANNEL_LAYERS:
        layer = get_channel_layer(THUMBNAILS_LAYER)
        assert layer is not None
        message = {"type": "thumbnail.make", "attachment": attachment_id}
        try:
            async_to_sync(layer.send)(THUMBNAILS_CHANNEL, message)
        except Exception:
            log.exception("could not queue the thumbnail of attachment %s", attachment_id)
        return
    # Under Daphne the view's thread belongs to the event loop's executor: the work goes
    # to a thread of the default pool from the loop, which publishes on the loop as any
    # view does. Elsewhere (a command, a sync test) a thread of its own.
    loop: asyncio.AbstractEventLoop | None = getattr(
        SyncToAsync.threadlocal, "main_event_loop", None
    )
    if loop is not None and loop.is_running():
        run: Callable[[int], Any] = sync_to_async(_make_quietly, thread_sensitive=False)
        future = asyncio.run_coroutine_threadsafe(run(attachment_id), loop)
        _pending.add(future)
        future.add_done_callback(_pending.discard)
        return
    thread = threading.Thread(
        target=_run_and_forget, args=(attachment_id,), name="thumbnail", daemon=True
    )
    _pending.add(thread)
    thread.start()


def _run_and_forget(attachment_id: int) -> None:
    try:
        _make_quietly(attachment_id)
    finally:
        _pending.discard(threading.current_thread())


def settle(timeout: float = 30) -> None:
    """Wait for the in-process thumbnails being made (for tests)."""
    for job in list(_pending):
        if isinstance(job, threading.Thread):
            job.join(timeout)
        else:
            job.result(timeout)
