"""Attachments attacked as a hostile client (and a careless user) would: names, contents,
requests, what happens after the fact, and the page. Each test is a hole that was closed
(its commit says which) or a door that already held; each fails if it opens again."""

import io
import struct
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from PIL import Image, PngImagePlugin

from rooms import attachments, changes, services
from rooms.models import Attachment, Message
from rooms.tests import fragments
from rooms.tests.test_attachments import (
    only_attachment,
    png,
    post_file,
    read_served,
    upload,
)

# Helpers -----------------------------------------------------------------------------------


def composer_url(room: Any) -> str:
    return reverse("rooms:post", args=[room.slug])


def stored_files(settings: Any) -> list[Path]:
    return [path for path in Path(settings.MEDIA_ROOT).rglob("*") if path.is_file()]


def gif_with_frames(width: int, height: int, frames: int) -> bytes:
    """An animated GIF whose canvas is width x height and whose `frames` frames are each
    one pixel (alternating colours, so none is merged into the one before): a few bytes a
    frame, but every frame is a whole canvas once decoded."""
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0))
    out += b"\xff\x00\x00\x00\x00\xff"  # the global palette: red, blue
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    for n in range(frames):
        out += b"\x21\xf9\x04\x00\x01\x00\x00\x00"  # 10 ms
        out += b"\x2c" + struct.pack("<HHHHB", n % width, 0, 1, 1, 0)
        out += b"\x02\x02" + (b"\x44\x01" if n % 2 else b"\x4c\x01") + b"\x00"
    return bytes(out + b"\x3b")


def animated_gif(frames: int = 3, size: tuple[int, int] = (40, 30)) -> bytes:
    images = [Image.new("RGB", size, color) for color in ("red", "green", "blue")[:frames]]
    out = io.BytesIO()
    images[0].save(out, "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return out.getvalue()


def image_bytes(image: Image.Image, kind: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, kind, **options)
    return out.getvalue()


# File names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("C:\\Users\\me\\report.txt", "report.txt"),
        ("exe\u202egpj.exe", "exegpj.exe"),  # the RTL override that makes it read .jpg
        ("a\u2066b\u2069c\u200f.txt", "abc.txt"),  # isolates and marks: gone too
        ("..", "file"),
        ("...", "file"),
        (". .", "file"),
        ("   ", "file"),
    ],
)
def test_a_file_name_keeps_no_folders_and_no_bidi_controls(sent, shown):
    assert attachments.display_name(sent) == shown
    stored = attachments.storage_name(shown)
    assert "/" not in stored and "\\" not in stored and not stored.startswith(".")
    assert stored and all(c.isascii() and (c.isalnum() or c in "._-") for c in stored)


@pytest.mark.parametrize(
    "sent",
    [
        "../../etc/passwd",
        "..\\..\\x.txt",
        "a\x00b.txt",
        "evil\u202egpj.exe",
        'say "hi"; filename=x.exe.txt',
        "line\r\nSet-Cookie: pwned=1.txt",
        "<img src=x onerror=alert(1)>.png",
        "🙂 party 🎉.txt",
        "....",
    ],
)
def test_a_hostile_name_is_stored_in_its_own_folder_and_served_safely(alice_client, lobby, sent):
    response = post_file(alice_client, lobby, sent, b"payload")
    assert response.status_code == 302, response.content[:500]
    attachment = only_attachment()
    stored = str(attachment.file.name)
    folder, _, leaf = stored.removeprefix("attachments/").partition("/")
    assert len(folder) == 32 and "/" not in leaf and not leaf.startswith(".")
    assert default_storage.path(stored).startswith(str(default_storage.location))
    for bad in ("\x00", "\r", "\n", "\u202e", "/", "\\"):
        assert bad not in attachment.original_name
    served = alice_client.get(attachment.url())
    assert served.status_code == 200
    disposition = served["Content-Disposition"]
    assert disposition.startswith("attachment; filename=\"")
    assert disposition.count('"') == 2  # the fallback's own quotes, nothing inside them
    assert "\r" not in disposition and "\n" not in disposition
    assert ";" not in disposition.split('filename="', 1)[1].split('"', 1)[0]
    assert "Set-Cookie" not in served.headers or "pwned" not in served.headers["Set-Cookie"]
    assert read_served(served) == b"payload"


def test_a_ten_thousand_character_name_is_cut_short_and_still_stored(alice_client, lobby):
    name = "x" * 10_000 + ".txt"
    assert post_file(alice_client, lobby, name, b"x").status_code == 302
    attachment = only_attachment()
    assert attachment.original_name == "x" * 196 + ".txt"  # the extension kept
    assert len(str(attachment.file.name)) <= 255


def test_a_long_extension_on_a_file_spooled_to_disk_is_no_500(alice_client, lobby, settings):
    """Django spools a file over FILE_UPLOAD_MAX_MEMORY_SIZE to a temporary file named
    after the upload's extension: a 10,000-character extension must not fail the request."""
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1000
    name = "a." + "x" * 10_000
    response = post_file(alice_client, lobby, name, b"y" * 5000, body="kept")
    assert response.status_code in {302, 400}
    if response.status_code == 302:
        assert only_attachment().size == 5000


def test_an_empty_file_name_is_no_file_and_no_crash(alice_client, lobby):
    # A browser sends filename="" for an empty file input: there is no file, the text posts.
    body = (
        b"--B\r\nContent-Disposition: form-data; name=\"body\"\r\n\r\nonly text\r\n"
        b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\"\r\n"
        b"Content-Type: application/octet-stream\r\n\r\n\r\n--B--\r\n"
    )
    response = alice_client.generic(
        "POST", composer_url(lobby), body, content_type="multipart/form-data; boundary=B"
    )
    assert response.status_code == 302
    assert Message.objects.get().body == "only text"
    assert not Attachment.objects.exists()
