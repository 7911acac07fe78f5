"""Serving attachments: only to who may see the message, never from a public address.

`GET /rooms/<slug>/attachments/<id>/` (the file) and `.../<id>/thumbnail/`. Each request
is checked as the room's page is (services.find_room: logged out, not a member of a
private room, removed: 404), and the attachment must belong to a message of that room
that is not deleted; anything else is the same 404, so nothing tells a missing file from
one the viewer may not see.

No log-in redirect either: someone logged out gets the same 404 (can_enter lets no
anonymous user in), so a file's address never says that there is something behind it.

Then the file goes out one of three ways:
- from the storage through Django (FileResponse, streamed): the default;
- with CHAT_ATTACHMENT_ACCEL_REDIRECT set (e.g. "/protected/"), an empty answer with
  `X-Accel-Redirect: /protected/<stored name>`: the proxy in front (nginx, an `internal`
  location over MEDIA_ROOT) sends the file, and this process is free at once;
- on S3, a redirect to a presigned URL of the object, valid for STORAGE_S3_URL_EXPIRES.

GET and HEAD (a client or a proxy asking a file's type and size first: the same checks
and headers; the server sends no body for HEAD); any other method is a 405.

Headers: `nosniff`; `Cache-Control: private` (a shared cache must not keep what needs a
session); `Content-Disposition: attachment` for every plain file (served as
application/octet-stream whatever it is: an uploaded .html never renders on our origin)
and inline only for images we re-encoded and our thumbnails; and on file answers a CSP of
`default-src 'none'; sandbox`, so even a document a browser did render could run nothing.
"""

from typing import Any, cast
from urllib.parse import quote

from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_safe

from rooms import services
from rooms.models import Attachment, Room

FILE_CSP = "default-src 'none'; sandbox"


def _attachment_or_404(slug: str, user: Any, attachment_id: int) -> Attachment:
    try:
        room = services.find_room(slug, user)
    except Room.DoesNotExist:
        raise Http404("No such file.") from None
    attachment = (
        Attachment.objects.select_related("message")
        .filter(pk=attachment_id, message__room=room, message__deleted_at__isnull=True)
        .first()
    )
    if attachment is None:
        raise Http404("No such file.")
    return attachment


@require_safe
def attachment_file(request: HttpRequest, slug: str, attachment_id: int) -> HttpResponseBase:
    attachment = _attachment_or_404(slug, request.user, attachment_id)
    name = str(attachment.file.name)
    if attachment.is_image:
        return _serve(name, attachment.content_type, attachment.original_name)
    return _serve(name, "application/octet-stream", attachment.original_name, inline=False)


@require_safe
def attachment_thumbnail(request: HttpRequest, slug: str, attachment_id: int) -> HttpResponseBase:
    attachment = _attachment_or_404(slug, request.user, attachment_id)
    if not attachment.thumbnail:
        raise Http404("No thumbnail (yet).")
    name = str(attachment.thumbnail.name)
    content_type = "image/png" if name.endswith(".png") else "image/jpeg"
    return _serve(name, content_type, f"thumbnail-{attachment.original_name}")


def content_disposition(filename: str, *, inline: bool) -> str:
    """RFC 6266: an ASCII fallback name, and the real one UTF-8 encoded (filename*)."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in filename
    )
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _serve(name: str, content_type: str, filename: str, *, inline: bool = True) -> HttpResponseBase:
    response: HttpResponseBase
    accel = settings.CHAT_ATTACHMENT_ACCEL_REDIRECT
    if not isinstance(default_storage, FileSystemStorage):
        # An object store: the browser fetches the object itself, with a URL that is
        # signed for it and expires soon (django-storages' querystring_auth).
        response = HttpResponseRedirect(
            cast(Any, default_storage).url(
                name,
                parameters={
                    "ResponseContentType": content_type,
                    "ResponseContentDisposition": content_disposition(filename, inline=inline),
                },
            )
            if _takes_parameters()
            else default_storage.url(name)
        )
    elif accel:
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = accel.rstrip("/") + "/" + quote(name)
    else:
        try:
            opened = default_storage.open(name, "rb")
        except FileNotFoundError:
            raise Http404("No such file.") from None
        response = FileResponse(opened, content_type=content_type)
    response["Content-Disposition"] = content_disposition(filename, inline=inline)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=3600"
    response["Content-Security-Policy"] = FILE_CSP
    return response


def _takes_parameters() -> bool:
    """django-storages' S3Storage.url takes `parameters` (response headers S3 sets on
    the presigned download)."""
    return type(default_storage).__module__.startswith("storages.")
