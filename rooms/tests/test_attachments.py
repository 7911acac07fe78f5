"""Attachments (rooms/attachments.py, rooms/attachment_views.py): posting a file with the
composer, who may fetch it, what is refused, what images become (upright, no EXIF, a
thumbnail made off the request path: in the process, or by the Redis worker), S3 storage,
and deletion with the message."""

import io
import os
import shlex
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from rooms import attachments, changes, services
from rooms.models import Attachment, Message, Room
from rooms.tests import fragments
from site_config import http_guard

PROJECT_DIR = Path(__file__).resolve().parents[2]


# Files -------------------------------------------------------------------------------------


def png(width: int = 64, height: int = 48, color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def jpeg_with_exif(width: int = 80, height: int = 40) -> bytes:
    """A JPEG stored sideways (EXIF orientation 6: turn 90° clockwise to view) that
    carries GPS coordinates and a camera model: what a phone writes."""
    image = Image.new("RGB", (width, height), "white")
    image.paste((255, 0, 0), (0, 0, width // 2, height))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    exif[0x0110] = "Spy Phone 3000"  # Model
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (51.0, 30.0, 0.0)
    gps[3] = "W"
    gps[4] = (0.0, 7.0, 0.0)
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, quality=95)
    return out.getvalue()


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG that declares a huge picture: a valid header, a few bytes of (truncated)
    data. Tiny on disk, 10 gigapixels if decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + chunk(b"IEND", b"")
    )


def upload(name: str, data: bytes, content_type: str = "application/octet-stream") -> Any:
    return SimpleUploadedFile(name, data, content_type=content_type)


def post_file(client: Any, room: Room, name: str, data: bytes, body: str = "", **extra: Any) -> Any:
    return client.post(
        reverse("rooms:post", args=[room.slug]),
        {"body": body, "file": upload(name, data)},
        **extra,
    )


def only_attachment() -> Attachment:
    return Attachment.objects.select_related("message__room").get()


def read_served(response: Any) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def exif_of(data: bytes) -> dict[int, Any]:
    with Image.open(io.BytesIO(data)) as image:
        return dict(image.getexif())


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> Any:
    """`published(group)`: the HTML published to `group` so far (recorded on its way to
    the real publish_on_commit)."""
    import realtime

    sent: list[tuple[str, str]] = []
    publish = realtime.publish_on_commit

    def recorded(group: str, html: str, **options: Any) -> Any:
        sent.append((group, html))
        return publish(group, html, **options)

    monkeypatch.setattr(realtime, "publish_on_commit", recorded)
    return lambda group: [html for to, html in sent if to == group]


# Posting -----------------------------------------------------------------------------------


def test_a_plain_form_posts_text_and_a_file_as_one_message(alice_client, lobby):
    response = post_file(alice_client, lobby, "notes.txt", b"hello", body="see attached")
    assert response.status_code == 302 and response.url == lobby.get_absolute_url()
    message = Message.objects.get()
    attachment = only_attachment()
    assert (message.body, attachment.message_id) == ("see attached", message.pk)
    assert (attachment.original_name, attachment.size, attachment.kind) == ("notes.txt", 5, "file")
    stored = str(attachment.file.name)
    assert stored.startswith("attachments/")
    assert len(stored.split("/")[1]) == 32  # a random folder: not guessable
    page = alice_client.get(lobby.get_absolute_url()).content.decode()
    figure = fragments.parse(page).one("figure", class_="attachment")
    assert figure.attrs["data-attachment-id"] == str(attachment.pk)
    assert figure.attrs["data-kind"] == "file"
    assert "notes.txt" in figure.text and "5 bytes" in figure.text


def test_a_file_alone_is_a_message_and_is_published_once_with_its_attachment(
    alice_client, lobby, published
):
    post_file(alice_client, lobby, "report.pdf", b"%PDF-1.4 not really")
    message = Message.objects.get()
    assert message.body == ""
    published = published(f"room.{lobby.pk}")
    assert len(published) == 1
    article = fragments.messages_in(published[0])[0]
    figure = article.one("figure", class_="attachment")
    assert figure.attrs["data-kind"] == "file"
    assert "application/pdf" in figure.text and "report.pdf" in figure.text


def test_with_htmx_the_answer_is_the_composer_emptied(alice_client, lobby):
    response = post_file(alice_client, lobby, "a.txt", b"x", body="hi", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert fragments.is_composer(html)
    assert fragments.composer_value(html) == ""
    assert Attachment.objects.count() == 1


def test_a_file_sent_again_with_its_send_id_is_stored_once(alice_client, lobby, settings):
    """Its answer was lost and the page posts the same composer again: one message, one
    file in the store (the second upload is not kept)."""
    for _ in range(2):
        response = alice_client.post(
            reverse("rooms:post", args=[lobby.slug]),
            {"body": "once", "file": upload("a.txt", b"x"), "token": "a" * 32},
            HTTP_HX_REQUEST="true",
        )
        assert response.status_code == 200
        assert fragments.composer_errors(response.content.decode()) == []
    assert Message.objects.count() == Attachment.objects.count() == 1
    assert len([f for f in Path(settings.MEDIA_ROOT).rglob("*") if f.is_file()]) == 1


def test_the_composer_is_multipart_with_a_file_input(alice_client, lobby):
    page = fragments.parse(alice_client.get(lobby.get_absolute_url()).content.decode())
    composer = page.one_by_id("composer")
    assert composer.attrs["enctype"] == "multipart/form-data"
    assert composer.attrs["hx-encoding"] == "multipart/form-data"
    assert composer.one("input", type="file").attrs["name"] == "file"


def test_markup_in_a_file_name_is_escaped(alice_client, lobby):
    post_file(alice_client, lobby, '<img src=x onerror="alert(1)">.txt', b"x")
    page = alice_client.get(lobby.get_absolute_url()).content.decode()
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;.txt" in page
    attachment = only_attachment()
    assert "<" not in str(attachment.file.name) and '"' not in str(attachment.file.name)


# Refusals ----------------------------------------------------------------------------------


def test_a_file_over_the_size_limit_is_refused_and_the_text_kept(alice_client, lobby, settings):
    settings.CHAT_ATTACHMENT_MAX_BYTES = 1000
    response = post_file(alice_client, lobby, "big.bin", b"x" * 1001, body="my words")
    assert response.status_code == 400
    html = response.content.decode()
    assert fragments.composer_errors(html) == [
        "That file is too big: 1001 bytes, and files can be at most 1000 bytes."
    ]
    assert fragments.composer_value(html) == "my words"
    assert not Message.objects.exists() and not Attachment.objects.exists()
    assert not any(Path(settings.MEDIA_ROOT).rglob("*.bin"))


def test_with_htmx_a_refusal_is_the_composer_with_its_error(alice_client, lobby):
    response = post_file(alice_client, lobby, "empty.txt", b"", body="keep", HTTP_HX_REQUEST="true")
    assert response.status_code == 400
    html = response.content.decode()
    assert fragments.is_composer(html)
    assert fragments.composer_errors(html) == ["“empty.txt” is empty: nothing was sent."]
    assert fragments.composer_value(html) == "keep"


def test_the_body_cap_is_raised_for_the_composer_url_only(settings):
    settings.CHAT_MAX_REQUEST_BYTES = 2 * 1024 * 1024
    settings.CHAT_ATTACHMENT_MAX_BYTES = 10 * 1024 * 1024
    upload_limit = 10 * 1024 * 1024 + settings.CHAT_ATTACHMENT_FORM_OVERHEAD
    assert http_guard.limit_for("/rooms/lobby/messages/") == upload_limit
    for other in ("/accounts/login/", "/rooms/lobby/messages/1/edit/", "/hooks/x/", "/rooms/"):
        assert http_guard.limit_for(other) == 2 * 1024 * 1024


def test_more_files_a_minute_than_allowed_are_refused_with_429(alice_client, lobby, settings):
    per_minute = settings.CHAT_ATTACHMENTS_PER_MINUTE
    for n in range(per_minute):
        assert post_file(alice_client, lobby, f"f{n}.txt", b"x").status_code == 302
        services.rate_limiter.reset()  # (the messages' own limit is not what is tested)
    response = post_file(alice_client, lobby, "one-more.txt", b"x", body="still here")
    assert response.status_code == 429
    assert fragments.composer_errors(response.content.decode()) == [
        f"Too many files: at most {per_minute} a minute. Wait a little, then send it again."
    ]
    assert Attachment.objects.count() == per_minute


def test_a_decompression_bomb_is_refused(alice_client, lobby):
    bomb = bomb_png()
    assert len(bomb) < 200
    response = post_file(alice_client, lobby, "bomb.png", bomb, body="look")
    assert response.status_code == 400
    assert fragments.composer_errors(response.content.decode()) == [
        "image too large: 10,000,000,000 pixels (at most 40,000,000)."
    ]
    assert not Attachment.objects.exists()


def test_an_image_just_over_the_pixel_limit_is_refused_too(alice_client, lobby, settings):
    settings.CHAT_ATTACHMENT_MAX_PIXELS = 64 * 48 - 1  # past it, under twice it: a warning
    response = post_file(alice_client, lobby, "a.png", png(64, 48))
    assert response.status_code == 400
    assert fragments.composer_errors(response.content.decode()) == [
        "image too large: 3,072 pixels (at most 3,071)."
    ]


def test_a_file_cannot_go_with_a_private_message(alice_client, lobby, bob):
    response = post_file(alice_client, lobby, "a.txt", b"x", body="/pm bob hi")
    assert response.status_code == 400
    assert fragments.composer_errors(response.content.decode()) == [
        attachments.FILE_ONLY_FORBIDDEN_WITH_PM
    ]


# Types -------------------------------------------------------------------------------------


def test_an_html_upload_is_only_ever_a_download(alice_client, lobby):
    post_file(alice_client, lobby, "page.html", b"<script>alert(document.cookie)</script>")
    attachment = only_attachment()
    assert attachment.kind == "file"
    response = alice_client.get(attachment.url())
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith("attachment;")
    assert "filename*=UTF-8''page.html" in response["Content-Disposition"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert response["Cache-Control"].startswith("private")
    assert read_served(response) == b"<script>alert(document.cookie)</script>"


def test_an_image_named_like_something_else_is_an_image_and_a_fake_one_a_file(alice_client, lobby):
    post_file(alice_client, lobby, "holiday.txt", png())
    post_file(alice_client, lobby, "fake.png", b"<svg onload=alert(1)>")
    real, fake = Attachment.objects.order_by("id")
    assert (real.kind, real.content_type, real.width, real.height) == ("image", "image/png", 64, 48)
    assert (fake.kind, fake.content_type) == ("file", "image/png")  # (named so; shown only)
    response = alice_client.get(fake.url())
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith("attachment;")


def test_a_non_ascii_name_is_offered_as_utf8(alice_client, lobby):
    post_file(alice_client, lobby, "Übersicht €.txt", b"x")
    response = alice_client.get(only_attachment().url())
    disposition = response["Content-Disposition"]
    assert "filename*=UTF-8''%C3%9Cbersicht%20%E2%82%AC.txt" in disposition
    assert 'filename="_bersicht _.txt"' in disposition


# Images: EXIF, orientation, thumbnails -----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_exif_is_stripped_and_the_image_turned_upright_in_full_and_thumbnail(
    login, make_user, settings
):
    """The in-process path (no Redis): the thumbnail is made by a thread after commit,
    and the message pushed again as a change once it is."""
    alice = make_user("alice")
    lobby = Room.objects.create(slug="lobby", owner=alice)
    client = login(alice)
    original = jpeg_with_exif(80, 40)
    assert exif_of(original)[0x0112] == 6  # (the test's image does carry it)

    post_file(client, lobby, "IMG_0001.jpg", original)
    attachments.settle()

    attachment = only_attachment()
    assert (attachment.width, attachment.height) == (40, 80)  # turned upright
    assert attachment.thumbnail and (attachment.thumbnail_width, attachment.thumbnail_height) == (
        40,
        80,
    )
    full = client.get(attachment.url())
    assert full["Content-Type"] == "image/jpeg"
    assert full["Content-Disposition"].startswith("inline;")
    thumb = client.get(attachment.thumbnail_url())
    assert thumb["Content-Type"] == "image/jpeg"
    for served in (read_served(full), read_served(thumb)):
        assert exif_of(served) == {}
        assert b"Spy Phone" not in served and b"Exif" not in served
        with Image.open(io.BytesIO(served)) as image:
            assert image.size == (40, 80)
            red = image.convert("RGB").getpixel((20, 10))
            assert isinstance(red, tuple)  # the top: the left half was red
            assert red[0] > 200 and red[1] < 80
    # The message now shows its thumbnail, and the change moved its number on.
    message = Message.objects.get()
    assert message.changed_seq > message.seq
    page = client.get(lobby.get_absolute_url()).content.decode()
    img = fragments.parse(page).one("figure", class_="attachment").one("img")
    assert img.attrs["alt"] == "IMG_0001.jpg"
    assert (img.attrs["width"], img.attrs["height"]) == ("40", "80")
    assert img.attrs["src"] == attachment.thumbnail_url()


def test_an_image_shows_as_a_file_link_until_its_thumbnail_is_made(alice_client, lobby):
    # (Not transactional: the commit never happens, so no thumbnail is scheduled.)
    post_file(alice_client, lobby, "pic.png", png())
    page = alice_client.get(lobby.get_absolute_url()).content.decode()
    figure = fragments.parse(page).one("figure", class_="attachment")
    assert figure.attrs["data-kind"] == "image"
    assert figure.find("img") is None
    assert "pic.png" in figure.text and "preview on its way" in figure.text
    assert alice_client.get(only_attachment().thumbnail_url()).status_code == 404


def test_making_the_thumbnail_pushes_the_message_again_as_a_change(alice_client, lobby, published):
    post_file(alice_client, lobby, "pic.png", png(1000, 500))
    attachment = only_attachment()
    assert attachments.make_thumbnail(attachment.pk) is True
    attachment.refresh_from_db()
    assert (attachment.thumbnail_width, attachment.thumbnail_height) == (480, 240)
    change = published(f"room.{lobby.pk}")[-1]
    article = fragments.messages_in(change)[0]
    assert article.attrs["hx-swap-oob"] == "true"
    assert article.one("img").attrs["src"] == attachment.thumbnail_url()
    assert attachments.make_thumbnail(attachment.pk) is False  # once


# Who may fetch a file ----------------------------------------------------------------------


@pytest.fixture
def secret_file(login, alice, bob, secret) -> Attachment:
    post_file(login(bob), secret, "plan.png", png())
    attachment = only_attachment()
    attachments.make_thumbnail(attachment.pk)
    attachment.refresh_from_db()
    return attachment


def urls_of(attachment: Attachment) -> list[str]:
    return [attachment.url(), attachment.thumbnail_url()]


def test_members_get_every_file_url(login, alice, bob, secret_file):
    for user in (alice, bob):
        for url in urls_of(secret_file):
            assert login(user).get(url).status_code == 200, url


def test_logged_out_gets_404_on_every_file_url(client, secret_file, lobby, login, alice):
    for url in urls_of(secret_file):
        response = client.get(url)
        assert response.status_code == 404, url
        assert b"PNG" not in response.content
    # A public room's file too: a file is for people signed in.
    post_file(login(alice), lobby, "public.txt", b"x")
    public = Attachment.objects.get(original_name="public.txt")
    assert client.get(public.url()).status_code == 404


def test_a_non_member_gets_404_on_every_file_url(login, carol, secret_file):
    for url in urls_of(secret_file):
        assert login(carol).get(url).status_code == 404, url


def test_a_removed_member_gets_404(login, alice, bob, secret, secret_file):
    services.remove_member(secret, alice, bob)
    for url in urls_of(secret_file):
        assert login(bob).get(url).status_code == 404, url


def test_a_deleted_message_takes_its_files_with_it(
    login, alice, bob, secret_file, django_capture_on_commit_callbacks
):
    names = [secret_file.file.name, secret_file.thumbnail.name]
    assert all(default_storage.exists(name) for name in names)
    with django_capture_on_commit_callbacks(execute=True):
        changes.delete_message(secret_file.message, bob)
    for url in urls_of(secret_file):
        assert login(alice).get(url).status_code == 404, url
    assert not Attachment.objects.exists()
    assert not any(default_storage.exists(name) for name in names)


def test_deleting_the_room_deletes_its_files(
    secret, secret_file, django_capture_on_commit_callbacks
):
    names = [secret_file.file.name, secret_file.thumbnail.name]
    with django_capture_on_commit_callbacks(execute=True):
        secret.delete()
    assert not Attachment.objects.exists()
    assert not any(default_storage.exists(str(name)) for name in names)


def test_unknown_ids_and_another_rooms_ids_are_404(login, alice, lobby, secret_file):
    client = login(alice)
    assert client.get(f"/rooms/secret/attachments/{secret_file.pk + 1000}/").status_code == 404
    # alice may see both rooms, but the file is not the lobby's.
    assert client.get(f"/rooms/lobby/attachments/{secret_file.pk}/").status_code == 404
    assert client.get(f"/rooms/lobby/attachments/{secret_file.pk}/thumbnail/").status_code == 404


def test_no_url_serves_the_media_folder(alice_client, secret_file):
    for prefix in ("/media/", "/media-is-not-served/", "/static/../media/"):
        response = alice_client.get(prefix + secret_file.file.name)
        assert response.status_code == 404, prefix


def test_with_accel_redirect_the_proxy_sends_the_file(login, bob, secret_file, settings):
    settings.CHAT_ATTACHMENT_ACCEL_REDIRECT = "/protected/"
    response = login(bob).get(secret_file.url())
    assert response.status_code == 200 and response.content == b""
    assert response["X-Accel-Redirect"] == f"/protected/{secret_file.file.name}"
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"


# S3 (moto: boto3's calls answered in this process) -----------------------------------------


@pytest.fixture
def s3_storage(settings) -> Iterator[str]:
    from moto import mock_aws

    bucket = "hypertalk-test"
    with mock_aws():
        import boto3  # type: ignore[import-untyped]

        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=bucket)
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {
                    "bucket_name": bucket,
                    "region_name": "us-east-1",
                    "default_acl": None,
                    "querystring_auth": True,
                    "querystring_expire": 300,
                    "file_overwrite": False,
                    "access_key": "testing",
                    "secret_key": "testing",
                },
            },
        }
        yield bucket


def test_s3_upload_thumbnail_serve_and_delete(
    s3_storage, login, alice, bob, secret, django_capture_on_commit_callbacks
):
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1")
    post_file(login(bob), secret, "photo.jpg", jpeg_with_exif())
    attachment = only_attachment()
    assert attachments.make_thumbnail(attachment.pk) is True
    attachment.refresh_from_db()
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket=s3_storage)["Contents"]}
    assert keys == {attachment.file.name, attachment.thumbnail.name}
    stored = s3.get_object(Bucket=s3_storage, Key=attachment.file.name)["Body"].read()
    assert exif_of(stored) == {}

    response = login(alice).get(attachment.url())
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith(f"https://{s3_storage}.s3.amazonaws.com/{attachment.file.name}?")
    assert "Signature=" in location or "X-Amz-Signature=" in location
    assert response["Cache-Control"].startswith("private")
    assert login(make_outsider()).get(attachment.url()).status_code == 404

    with django_capture_on_commit_callbacks(execute=True):
        changes.delete_message(attachment.message, bob)
    assert "Contents" not in s3.list_objects_v2(Bucket=s3_storage)


def make_outsider() -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username=f"out-{uuid.uuid4().hex[:8]}")


# The Redis worker, for real --------------------------------------------------------------


def redis_url() -> str:
    return os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def redis_is_up() -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", 6379)) == 0


@pytest.mark.skipif(not redis_is_up(), reason="no Redis on 127.0.0.1:6379")
def test_with_redis_the_thumbnails_worker_makes_the_thumbnail() -> None:
    """`manage.py runworker --layer thumbnails thumbnails` as the Procfile runs it, with a
    database and a media folder of its own (SQLite files, shared with `manage.py shell`
    runs that post and look, as a web process would)."""
    from e2e.servers import manage, run_shell, server_env

    work = Path(tempfile.mkdtemp(prefix="thumbnails-worker-"))
    env = server_env(
        DATABASE_URL=f"sqlite:///{work / 'db.sqlite3'}",
        MEDIA_ROOT=str(work / "media"),
        REDIS_URL=redis_url(),
    )
    manage(env, "migrate")
    log_path = work / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            procfile_worker(),
            cwd=PROJECT_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            post = (
                "import io, json, sys\n"
                "from PIL import Image\n"
                "from django.core.files.uploadedfile import SimpleUploadedFile\n"
                "from django.contrib.auth import get_user_model\n"
                "from rooms import attachments\n"
                "from rooms.models import Room\n"
                "user = get_user_model().objects.create_user(username='ann')\n"
                "room = Room.objects.create(slug='lobby', owner=user)\n"
                "out = io.BytesIO(); Image.new('RGB', (900, 300), 'blue').save(out, 'PNG')\n"
                "upload = SimpleUploadedFile('wide.png', out.getvalue())\n"
                "attachments.post_with_file(room, user, 'via the worker', upload)\n"
                "print(json.dumps(list(attachments._pending)))\n"
            )
            # Posted with REDIS_URL set: the job went to Redis, no thread of its own.
            assert run_shell(env, post, None) == []
            look = (
                "import json\n"
                "from rooms.models import Attachment\n"
                "a = Attachment.objects.get()\n"
                "print(json.dumps([a.thumbnail.name or '', a.thumbnail_width, a.message.changed_seq"
                " > a.message.seq]))\n"
            )
            deadline = time.monotonic() + 60
            while True:
                name, width, changed = run_shell(env, look, None)
                if name or time.monotonic() > deadline or worker.poll() is not None:
                    break
                time.sleep(0.5)
            assert name, f"no thumbnail; worker log:\n{log_path.read_text(errors='replace')}"
            assert width == 480 and changed
            assert (work / "media" / name).is_file()
        finally:
            worker.terminate()
            worker.wait(15)


# Settings ----------------------------------------------------------------------------------

SHOW_STORAGE = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({
    "default": s.STORAGES["default"],
    "media_root": str(s.MEDIA_ROOT),
    "img_src": s.CONTENT_SECURITY_POLICY["DIRECTIVES"]["img-src"],
    "layers": {name: layer["BACKEND"] for name, layer in s.CHANNEL_LAYERS.items()},
}, default=str))
"""


def settings_with(**variables: str) -> dict[str, Any]:
    import json

    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(DJANGO_SETTINGS_MODULE="site_config.settings", SECRET_KEY="x", **variables)
    result = subprocess.run(
        [sys.executable, "-c", SHOW_STORAGE],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    shown: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return shown


def test_storage_is_a_local_folder_by_default_and_s3_by_setting() -> None:
    local = settings_with(MEDIA_ROOT="/srv/chat-media")
    assert local["default"]["BACKEND"] == "django.core.files.storage.FileSystemStorage"
    assert local["default"]["OPTIONS"]["location"] == local["media_root"] == "/srv/chat-media"
    assert local["layers"] == {"default": "realtime.layers.HubInMemoryChannelLayer"}

    s3 = settings_with(
        STORAGE_S3_BUCKET="chat-files",
        STORAGE_S3_ENDPOINT_URL="https://minio.example.net:9000/",
        STORAGE_S3_REGION="eu-west-1",
        REDIS_URL="redis://127.0.0.1:6379/0",
    )
    assert s3["default"] == {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": "chat-files",
            "endpoint_url": "https://minio.example.net:9000/",
            "region_name": "eu-west-1",
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": 300,
            "file_overwrite": False,
        },
    }
    # Thumbnails of the page's images are fetched from the store: its origin is allowed.
    assert s3["img_src"] == ["'self'", "data:", "https://minio.example.net:9000"]
    # With Redis, the thumbnails worker's jobs wait in a list of the core layer.
    assert s3["layers"]["thumbnails"] == "realtime.layers.JobsRedisChannelLayer"


def procfile_worker() -> list[str]:
    """The Procfile's `worker:` command, run with this Python."""
    procfile = (PROJECT_DIR / "Procfile").read_text().splitlines()
    (line,) = [entry for entry in procfile if entry.startswith("worker:")]
    command = shlex.split(line.removeprefix("worker:"))
    assert command[:2] == ["python", "manage.py"], command
    return [sys.executable, *command[1:]]
