"""Attachments attacked as a hostile client (and a careless user) would: names, contents,
requests, what happens after the fact, and the page. Each test is a hole that was closed
(its commit says which) or a door that already held; each fails if it opens again."""

import io
import struct
import threading
import zlib
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.urls import reverse
from PIL import Image, PngImagePlugin

from rooms import attachments, changes, services
from rooms.models import Attachment, Message, Room
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


def lzw_of_one_colour(pixels: int) -> bytes:
    """GIF image data (LZW, minimum code size 2) of `pixels` pixels of colour 0: a clear
    code before each pixel keeps every code 3 bits wide. Simple, if not small."""
    bits = width = 0
    packed = bytearray()
    for code in [4, 0] * pixels + [5]:  # clear, colour 0, ..., end
        bits |= code << width
        width += 3
        while width >= 8:
            packed.append(bits & 0xFF)
            bits >>= 8
            width -= 8
    packed += bytes([bits]) if width else b""
    blocks = b"".join(
        bytes([len(packed[i : i + 255])]) + packed[i : i + 255] for i in range(0, len(packed), 255)
    )
    return b"\x02" + blocks + b"\x00"


def gif_that_grows(side: int, frames: int) -> bytes:
    """An animation that says it is 1x1, whose second frame is side x side (the picture
    grows to it), then `frames` one-pixel frames, each one now a side x side picture."""
    delay = b"\x21\xf9\x04\x00\x01\x00\x00\x00"
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0))
    out += b"\xff\x00\x00\x00\x00\xff\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    out += delay + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    out += delay + b"\x2c" + struct.pack("<HHHHB", 0, 0, side, side, 0)
    out += lzw_of_one_colour(side * side)
    for n in range(frames):
        out += delay + b"\x2c" + struct.pack("<HHHHB", n % side, 0, 1, 1, 0)
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
        "\uff0e\uff0e\uff0fetc\uff0fpasswd",  # fullwidth dots and slashes: NFKD makes them ASCII
        "\u2215etc\u2215passwd\u2028x.txt",  # division slash, line separator
    ],
)
def test_a_hostile_name_is_stored_in_its_own_folder_and_served_safely(
    alice_client, lobby, settings, sent
):
    response = post_file(alice_client, lobby, sent, b"payload")
    assert response.status_code == 302, response.content[:500]
    attachment = only_attachment()
    stored = str(attachment.file.name)
    folder, _, leaf = stored.removeprefix("attachments/").partition("/")
    assert len(folder) == 32 and "/" not in leaf and not leaf.startswith(".")
    assert Path(default_storage.path(stored)).is_relative_to(Path(settings.MEDIA_ROOT))
    for bad in ("\x00", "\r", "\n", "\u202e", "/", "\\"):
        assert bad not in attachment.original_name
    served = alice_client.get(attachment.url())
    assert served.status_code == 200
    disposition = served["Content-Disposition"]
    assert disposition.startswith('attachment; filename="')
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
        b'--B\r\nContent-Disposition: form-data; name="body"\r\n\r\nonly text\r\n'
        b'--B\r\nContent-Disposition: form-data; name="file"; filename=""\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n\r\n--B--\r\n"
    )
    response = alice_client.generic(
        "POST", composer_url(lobby), body, content_type="multipart/form-data; boundary=B"
    )
    assert response.status_code == 302
    assert Message.objects.get().body == "only text"
    assert not Attachment.objects.exists()


# Contents ----------------------------------------------------------------------------------


def test_an_animation_of_many_tiny_frames_on_a_huge_canvas_is_refused_before_decoding(
    alice_client, lobby, settings
):
    """400 one-pixel frames on a 1000x1000 canvas: 9 KiB sent, 400 megapixels to decode
    (before the fix: 15 s and 290 MB on the request path, for one POST)."""
    bomb = gif_with_frames(1000, 1000, 400)
    assert len(bomb) < 10_000
    response = post_file(alice_client, lobby, "party.gif", bomb, body="look")
    assert response.status_code == 400
    assert fragments.composer_errors(response.content.decode()) == [
        "animation too large: 400 frames of 1,000×1,000 pixels (at most 40,000,000 pixels "
        "in all its frames)."
    ]
    assert fragments.composer_value(response.content.decode()) == "look"
    assert not Attachment.objects.exists() and not stored_files(settings)


def test_an_animation_whose_picture_grows_after_its_first_frame_is_counted_as_it_grows(
    alice_client, lobby, settings
):
    """Its first frame says 1x1: counted at that size, 12 frames were 12 pixels (a 1000x1000
    one of 102 frames, 755 KB, took 5.8 s to re-encode)."""
    settings.CHAT_ATTACHMENT_MAX_PIXELS = 50_000
    response = post_file(alice_client, lobby, "grows.gif", gif_that_grows(100, 10))
    assert response.status_code == 400
    assert fragments.composer_errors(response.content.decode()) == [
        "animation too large: 12 frames of 100×100 pixels (at most 50,000 pixels in all its "
        "frames)."
    ]
    assert post_file(alice_client, lobby, "fits.gif", gif_that_grows(100, 2)).status_code == 302
    attachment = only_attachment()
    assert (attachment.kind, attachment.width, attachment.height) == ("image", 100, 100)


def test_an_animation_of_too_many_frames_is_refused_however_small(alice_client, lobby, settings):
    """500,000 frames of one pixel each: 11 MB, half a megapixel in all, and a minute of
    re-encoding, a frame at a time. (A smaller limit here, for the test's speed.)"""
    settings.CHAT_ATTACHMENT_MAX_FRAMES = 100
    response = post_file(alice_client, lobby, "long.gif", gif_with_frames(1, 1, 101))
    assert response.status_code == 400
    assert fragments.composer_errors(response.content.decode()) == [
        "animation too long: 101 frames (at most 100)."
    ]
    assert post_file(alice_client, lobby, "ok.gif", gif_with_frames(1, 1, 100)).status_code == 302
    assert only_attachment().content_type == "image/gif"


def test_an_animated_webp_counts_all_its_frames_too(alice_client, lobby, settings):
    settings.CHAT_ATTACHMENT_MAX_PIXELS = 100 * 100 * 2
    frames = [Image.new("RGB", (100, 100), color) for color in ("red", "blue", "green")]
    three = image_bytes(frames[0], "WEBP", save_all=True, append_images=frames[1:])
    two = image_bytes(frames[0], "WEBP", save_all=True, append_images=frames[1:2])
    response = post_file(alice_client, lobby, "three.webp", three)
    assert response.status_code == 400
    assert fragments.composer_errors(response.content.decode())[0].startswith(
        "animation too large: 3 frames of 100×100 pixels"
    )
    assert post_file(alice_client, lobby, "two.webp", two).status_code == 302
    with Image.open(io.BytesIO(read_served(alice_client.get(only_attachment().url())))) as served:
        assert (served.format, getattr(served, "n_frames", 1)) == ("WEBP", 2)


def test_an_ordinary_animation_is_kept_animated(alice_client, lobby):
    assert post_file(alice_client, lobby, "wave.gif", animated_gif(3)).status_code == 302
    attachment = only_attachment()
    assert (attachment.content_type, attachment.width, attachment.height) == ("image/gif", 40, 30)
    with Image.open(io.BytesIO(read_served(alice_client.get(attachment.url())))) as served:
        assert getattr(served, "n_frames", 1) == 3
    assert attachments.make_thumbnail(attachment.pk)  # of its first frame


@pytest.mark.parametrize("kind", ["JPEG", "GIF"])
def test_an_images_comment_does_not_survive_reencoding(alice_client, lobby, kind):
    """A JPEG's COM segment and a GIF's comment extension are free text (cameras and
    editors put serial numbers, names, paths there): Pillow copied them into the image
    it wrote, and that one is served to the room."""
    image = Image.new("RGB", (30, 20), "red")
    if kind == "GIF":
        image = image.convert("P")
    data = image_bytes(image, kind, comment=b"owner: Alice Smith, serial 12345")
    post_file(alice_client, lobby, f"photo.{kind.lower()}", data)
    served = read_served(alice_client.get(only_attachment().url()))
    assert b"Alice Smith" not in served and b"12345" not in served
    with Image.open(io.BytesIO(served)) as reopened:
        assert "comment" not in reopened.info


def test_xmp_and_png_text_chunks_do_not_survive_reencoding(alice_client, lobby):
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><GPSLatitude>51,30N</GPSLatitude></x:xmpmeta>'
    image = Image.new("RGB", (30, 20), "red")
    text = PngImagePlugin.PngInfo()
    text.add_text("Author", "Alice Smith")
    text.add_itxt("XML:com.adobe.xmp", xmp.decode())
    for name, data in (
        ("a.jpg", image_bytes(image, "JPEG", xmp=xmp)),
        ("b.webp", image_bytes(image, "WEBP", xmp=xmp)),
        ("c.png", image_bytes(image, "PNG", pnginfo=text)),
    ):
        post_file(alice_client, lobby, name, data)
        services.rate_limiter.reset()
    for attachment in Attachment.objects.all():
        served = read_served(alice_client.get(attachment.url()))
        assert b"51,30N" not in served and b"Alice Smith" not in served, attachment


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>'
XHTML = b'<html xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></html>'


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("logo.svg", SVG),
        ("page.html", b"<!doctype html><script>alert(document.domain)</script>"),
        ("x.png", SVG),
        ("x.xhtml", XHTML),
    ],
)
def test_markup_is_never_served_inline_whatever_its_name(alice_client, lobby, name, data):
    post_file(alice_client, lobby, name, data)
    attachment = only_attachment()
    assert attachment.kind == "file"
    response = alice_client.get(attachment.url())
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert alice_client.get(attachment.thumbnail_url()).status_code == 404


def test_a_gif_html_polyglot_is_served_as_the_gif_we_made_of_it(alice_client, lobby):
    gif = image_bytes(Image.new("P", (10, 10)), "GIF")
    polyglot = gif[:-1] + b"<script>alert(document.domain)</script>" + gif[-1:]
    post_file(alice_client, lobby, "poly.gif", polyglot)
    attachment = only_attachment()
    response = alice_client.get(attachment.url())
    assert response["Content-Type"] == "image/gif"
    served = read_served(response)
    assert b"<script" not in served
    assert served.startswith(b"GIF8")


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("truncated.png", png(200, 200)[:120]),
        ("truncated.jpg", image_bytes(Image.new("RGB", (200, 200), "red"), "JPEG")[:300]),
        ("garbage.gif", b"GIF89a" + b"\xff" * 50),
    ],
)
@pytest.mark.parametrize("spooled", [False, True], ids=["in-memory", "temporary-file"])
def test_a_broken_image_becomes_a_plain_file_not_an_error(
    alice_client, lobby, settings, name, data, spooled
):
    """A truncated PNG opens (its header is whole) and fails to decode: Pillow closed the
    upload as it gave up, and storing it as a file was a 500."""
    if spooled:
        settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 10
    assert post_file(alice_client, lobby, name, data).status_code == 302
    attachment = only_attachment()
    assert attachment.kind == "file"
    response = alice_client.get(attachment.url())
    assert response["Content-Disposition"].startswith("attachment;")
    assert read_served(response) == data


def png_with_chunk_before_data(kind: bytes, data: bytes) -> bytes:
    plain = image_bytes(Image.new("RGB", (20, 20)), "PNG")
    body = kind + data
    chunk = struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    at = plain.index(b"IDAT") - 4  # before the image data, as iCCP must be
    return plain[:at] + chunk + plain[at:]


@pytest.mark.parametrize("kind", [b"zTXt", b"iCCP", b"iTXt"])
def test_a_png_with_a_huge_compressed_chunk_is_not_decompressed(alice_client, lobby, kind):
    """zTXt, iCCP and iTXt are decompressed by Pillow up to its MAX_TEXT_CHUNK only: 50 MB
    of zeros (50 KB sent) do not become 50 MB in this process."""
    zeros = zlib.compress(b"\0" * 50_000_000, 9)
    header = {b"zTXt": b"Comment\0\0", b"iCCP": b"icc\0\0", b"iTXt": b"Comment\0\1\0\0\0"}
    data = png_with_chunk_before_data(kind, header[kind] + zeros)
    assert len(data) < 200_000
    response = post_file(alice_client, lobby, "chunk.png", data)
    assert response.status_code == 302
    attachment = only_attachment()
    served = read_served(alice_client.get(attachment.url()))
    assert len(served) < 200_000  # neither the chunk nor what it unpacks to


def test_a_webp_declaring_a_huge_picture_is_refused(alice_client, lobby):
    """A lossless WebP of 16383x16383 (its largest) of one colour: small, 268 megapixels."""
    data = image_bytes(Image.new("L", (16383, 4000)), "WEBP", lossless=True)
    response = post_file(alice_client, lobby, "bomb.webp", data)
    assert response.status_code == 400
    assert "image too large" in fragments.composer_errors(response.content.decode())[0]


@pytest.mark.parametrize(
    ("size", "thumb"), [((1, 10_000), (1, 480)), ((10_000, 1), (480, 1)), ((3, 4000), (1, 480))]
)
def test_an_extreme_aspect_ratio_has_a_thumbnail_of_at_least_a_pixel(
    alice_client, lobby, size, thumb
):
    post_file(alice_client, lobby, "line.png", png(*size))
    attachment = only_attachment()
    assert attachments.make_thumbnail(attachment.pk)
    attachment.refresh_from_db()
    assert (attachment.thumbnail_width, attachment.thumbnail_height) == thumb


def cmyk_jpeg() -> bytes:
    return image_bytes(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG")


def png16() -> bytes:
    return image_bytes(Image.new("I;16", (40, 30), 40_000), "PNG")


def palette_with_transparency() -> bytes:
    image = Image.new("P", (40, 30), 1)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    return image_bytes(image, "PNG", transparency=0)


def la_png() -> bytes:
    return image_bytes(Image.new("LA", (40, 30), (128, 100)), "PNG")


def rgba_webp() -> bytes:
    return image_bytes(Image.new("RGBA", (40, 30), (255, 0, 0, 100)), "WEBP")


@pytest.mark.parametrize(
    ("name", "make", "thumb_format"),
    [
        ("cmyk.jpg", cmyk_jpeg, "JPEG"),
        ("deep.png", png16, "JPEG"),
        ("palette.png", palette_with_transparency, "PNG"),
        ("grey-alpha.png", la_png, "PNG"),
        ("alpha.webp", rgba_webp, "PNG"),
    ],
)
def test_unusual_modes_are_stored_and_thumbnailed(alice_client, lobby, name, make, thumb_format):
    assert post_file(alice_client, lobby, name, make()).status_code == 302
    attachment = only_attachment()
    assert attachment.kind == "image" and (attachment.width, attachment.height) == (40, 30)
    with Image.open(io.BytesIO(read_served(alice_client.get(attachment.url())))) as full:
        full.load()
    assert attachments.make_thumbnail(attachment.pk)
    attachment.refresh_from_db()
    thumb = read_served(alice_client.get(attachment.thumbnail_url()))
    with Image.open(io.BytesIO(thumb)) as image:
        assert image.format == thumb_format and image.size == (40, 30)
        if name == "deep.png":  # 40,000 of 65,535: a mid grey, not white (clipped at 255)
            grey = image.convert("L").getpixel((20, 15))
            assert isinstance(grey, int) and 140 <= grey <= 170, grey


# Requests ----------------------------------------------------------------------------------


def multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    """A multipart body of (field, file name or None, content) parts, boundary B."""
    out = b""
    for field, filename, content in parts:
        disposition = f'form-data; name="{field}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--B\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return out + b"--B--\r\n"


def post_multipart(client: Any, room: Any, body: bytes, **extra: Any) -> Any:
    return client.generic(
        "POST", composer_url(room), body, content_type="multipart/form-data; boundary=B", **extra
    )


def test_two_file_fields_store_one_file(alice_client, lobby, settings):
    body = multipart(("body", None, b"two"), ("file", "a.txt", b"AAA"), ("file", "b.txt", b"BBB"))
    assert post_multipart(alice_client, lobby, body).status_code == 302
    attachment = only_attachment()
    assert len(stored_files(settings)) == 1
    assert read_served(alice_client.get(attachment.url())) in {b"AAA", b"BBB"}


def test_a_file_field_that_is_a_plain_string_is_text_only(alice_client, lobby, settings):
    response = alice_client.post(composer_url(lobby), {"body": "hi", "file": "/etc/passwd"})
    assert response.status_code == 302
    assert Message.objects.get().body == "hi"
    assert not Attachment.objects.exists() and not stored_files(settings)


def test_a_body_of_a_thousand_file_parts_is_refused_whole(alice_client, lobby, settings):
    parts = [("file", f"{n}.txt", b"x") for n in range(1000)]
    response = post_multipart(alice_client, lobby, multipart(("body", None, b"hi"), *parts))
    assert response.status_code == 400  # DATA_UPLOAD_MAX_NUMBER_FILES (100)
    assert not Message.objects.exists() and not stored_files(settings)


def test_a_body_of_too_many_fields_is_refused_whole(alice_client, lobby, settings):
    parts = [(f"f{n}", None, b"x") for n in range(1500)]
    response = post_multipart(alice_client, lobby, multipart(("file", "a.txt", b"x"), *parts))
    assert response.status_code == 400  # DATA_UPLOAD_MAX_NUMBER_FIELDS (1000)
    assert not Attachment.objects.exists() and not stored_files(settings)


def test_a_room_one_may_not_enter_stores_nothing(login, carol, secret, settings):
    response = post_file(login(carol), secret, "x.txt", b"x")
    assert response.status_code == 404
    assert not Attachment.objects.exists() and not stored_files(settings)


def test_a_removed_member_cannot_upload(login, alice, bob, secret, settings):
    client = login(bob)
    services.remove_member(secret, alice, bob)
    assert post_file(client, secret, "x.txt", b"x").status_code == 404
    assert not Attachment.objects.exists() and not stored_files(settings)


def test_logged_out_cannot_upload(client, lobby, settings):
    response = post_file(client, lobby, "x.txt", b"x")
    assert response.status_code in {302, 404}
    assert not Attachment.objects.exists() and not stored_files(settings)


def test_an_upload_without_its_csrf_token_is_refused(alice, lobby, settings):
    from conftest import HttpsClient

    client = HttpsClient(enforce_csrf_checks=True)
    client.force_login(alice)
    response = post_file(client, lobby, "x.txt", b"x")
    assert response.status_code == 403
    assert not Attachment.objects.exists() and not stored_files(settings)


@pytest.fixture
def lobby_file(alice_client: Any, lobby: Any) -> Attachment:
    post_file(alice_client, lobby, "pic.png", png())
    attachment = only_attachment()
    attachments.make_thumbnail(attachment.pk)
    attachment.refresh_from_db()
    return attachment


@pytest.mark.parametrize(
    "suffix",
    [
        str(2**63),  # past a signed 64-bit column
        str(2**64 + 1),
        "9" * 100,
        "-1",
        "0",
        "1e3",
        "0x1",
        "%2e%2e",
    ],
)
def test_odd_ids_are_404_not_500(alice_client, lobby_file, suffix):
    for url in (
        f"/rooms/lobby/attachments/{suffix}/",
        f"/rooms/lobby/attachments/{suffix}/thumbnail/",
    ):
        assert alice_client.get(url).status_code == 404, url


def test_head_answers_as_get_does_for_who_may_see_it(alice_client, client, lobby_file):
    """HEAD was a 405 (require_GET): a client asking a file's type and size first."""
    for url in (lobby_file.url(), lobby_file.thumbnail_url()):
        got, head = alice_client.get(url), alice_client.head(url)
        assert head.status_code == 200, url
        for header in ("Content-Type", "Content-Disposition", "X-Content-Type-Options"):
            assert head[header] == got[header]
        assert client.head(url).status_code == 404  # logged out: as GET


def test_other_methods_are_refused(alice_client, lobby_file):
    for method in ("post", "put", "delete", "patch"):
        assert getattr(alice_client, method)(lobby_file.url()).status_code == 405


def test_a_range_request_gets_the_whole_file_or_a_proper_part(alice_client, lobby_file):
    response = alice_client.get(lobby_file.url(), HTTP_RANGE="bytes=0-3")
    assert response.status_code in {200, 206}
    served = read_served(response)
    assert served[:4] == b"\x89PNG"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_another_rooms_slug_and_a_missing_room_are_404(login, alice, lobby_file, secret, ops):
    for slug in ("secret", "ops", "no-such-room", "lobby%2F..", "LOBBY"):
        assert login(alice).get(f"/rooms/{slug}/attachments/{lobby_file.pk}/").status_code == 404


# After the fact ----------------------------------------------------------------------------


def test_a_message_deleted_while_its_thumbnail_is_made_leaves_no_file(
    alice, alice_client, lobby, settings, monkeypatch, django_capture_on_commit_callbacks
):
    """The deletion lands between the worker reading the image and storing its thumbnail:
    the thumbnail is not stored for a row that is gone (nor the message pushed again)."""
    post_file(alice_client, lobby, "pic.png", png())
    attachment = only_attachment()
    make = attachments.thumbnail_of

    def deleted_meanwhile(data: bytes) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            changes.delete_message(Message.objects.get(), alice)
        return make(data)

    monkeypatch.setattr(attachments, "thumbnail_of", deleted_meanwhile)
    assert attachments.make_thumbnail(attachment.pk) is False
    assert not Attachment.objects.exists() and not stored_files(settings)


def test_the_worker_shrugs_off_a_deleted_room_and_a_missing_file(
    alice_client, lobby, settings, caplog
):
    from rooms.workers import ThumbnailConsumer

    post_file(alice_client, lobby, "gone.png", png())
    gone = only_attachment()
    default_storage.delete(str(gone.file.name))
    worker = ThumbnailConsumer()
    worker.thumbnail_make({"type": "thumbnail.make", "attachment": gone.pk})  # logged only
    assert "thumbnail of attachment" in caplog.text
    assert not stored_files(settings)  # no thumbnail of nothing
    assert alice_client.get(gone.url()).status_code == 404  # not a 500
    for odd in (None, "1", 2**70, -1):
        worker.thumbnail_make({"type": "thumbnail.make", "attachment": odd})
    lobby.delete()
    assert attachments.make_thumbnail(gone.pk) is False


def test_a_thumbnail_missing_from_the_store_is_404(alice_client, lobby_file):
    default_storage.delete(str(lobby_file.thumbnail.name))
    assert alice_client.get(lobby_file.thumbnail_url()).status_code == 404


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="PostgreSQL's row locks (SQLite has one write lock for the whole database)",
)
@pytest.mark.django_db(transaction=True)
def test_deleting_a_message_as_its_thumbnail_is_stored_neither_deadlocks_nor_leaks(
    make_user, settings, monkeypatch
):
    """The thumbnail's transaction took the attachment's row, then the room's (to push the
    change); a deletion takes the room's, then the attachment's: each waited for the other
    and PostgreSQL killed one (the deletion a 500, or the thumbnail left in the store). Now
    both take the room's row first: the deletion waits, then takes the thumbnail too."""
    alice = make_user("alice")
    room = Room.objects.create(slug="busy", owner=alice)
    monkeypatch.setattr(attachments, "schedule_thumbnail", lambda attachment_id: None)
    attachments.post_with_file(room, alice, "", upload("pic.png", png()))
    attachment = only_attachment()
    errors: list[BaseException] = []

    def delete() -> None:
        try:
            changes.delete_message(Message.objects.get(), alice)
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    deleter = threading.Thread(target=delete)
    push = changes.attachment_changed

    def deleted_as_it_is_pushed(message: Message) -> Any:
        deleter.start()
        # Until the deletion waits for a lock this transaction holds.
        for _ in range(1000):
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
                if cursor.fetchone()[0] or not deleter.is_alive():
                    break
            threading.Event().wait(0.01)
        return push(message)

    monkeypatch.setattr(changes, "attachment_changed", deleted_as_it_is_pushed)
    try:
        attachments.make_thumbnail(attachment.pk)
    finally:
        deleter.join(30)
    assert not errors
    assert not Attachment.objects.exists()
    assert not stored_files(settings)


# The page ----------------------------------------------------------------------------------

HOSTILE_NAME = "'><img src=x onerror=alert(1)><b onclick=alert(2)>.png"


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> Any:
    """`published(group)`: the HTML published to `group` so far, on its way to the real
    publish_on_commit."""
    import realtime

    sent: list[tuple[str, str]] = []
    publish = realtime.publish_on_commit

    def recorded(group: str, html: str, **options: Any) -> Any:
        sent.append((group, html))
        return publish(group, html, **options)

    monkeypatch.setattr(realtime, "publish_on_commit", recorded)
    return lambda group: [html for to, html in sent if to == group]


def test_a_hostile_name_is_escaped_in_the_push_and_the_page_with_and_without_thumbnail(
    alice_client, lobby, published
):
    post_file(alice_client, lobby, HOSTILE_NAME, png())
    attachment = only_attachment()
    attachments.make_thumbnail(attachment.pk)
    first, change = published(f"room.{lobby.pk}")
    page = alice_client.get(lobby.get_absolute_url()).content.decode()
    for html in (first, change, page):
        assert "<b onclick" not in html and "<img src=x" not in html
        figure = fragments.messages_in(html)[-1].one("figure", class_="attachment")
        assert HOSTILE_NAME in figure.text  # shown as the text it is
        for element in figure.iter():
            assert not any(name.startswith("on") for name in element.attrs), element
            for name in ("href", "src"):
                if (value := element.attrs.get(name)) is not None:
                    assert value.startswith(f"/rooms/{lobby.slug}/attachments/"), value
    img = fragments.messages_in(change)[-1].one("figure", class_="attachment").one("img")
    assert img.attrs["alt"] == HOSTILE_NAME
    assert (img.attrs["width"], img.attrs["height"]) == ("64", "48")


def test_a_plain_files_link_is_the_checked_address_and_its_type_is_escaped(alice_client, lobby):
    post_file(alice_client, lobby, "javascript:alert(1).html", b"<b>x</b>")
    page = alice_client.get(lobby.get_absolute_url()).content.decode()
    figure = fragments.messages_in(page)[-1].one("figure", class_="attachment")
    links = figure.find_all("a")
    assert links and all(a.attrs["href"] == only_attachment().url() for a in links)
    assert "javascript:" not in " ".join(str(a.attrs.get("href")) for a in links)
    assert figure.one("span", class_="attachment-type").text == "text/html"


def test_a_phones_multi_picture_jpeg_is_an_image_of_its_first_picture(alice_client, lobby):
    """MPO (a JPEG with a depth or gain map after the photo): Pillow names it by the
    container, and it was stored as a plain file, without a preview."""
    photo, depth = Image.new("RGB", (40, 30), "red"), Image.new("L", (20, 15), 128)
    data = image_bytes(photo, "MPO", save_all=True, append_images=[depth])
    post_file(alice_client, lobby, "IMG_0002.jpg", data)
    attachment = only_attachment()
    assert (attachment.kind, attachment.content_type) == ("image", "image/jpeg")
    with Image.open(io.BytesIO(read_served(alice_client.get(attachment.url())))) as served:
        assert (served.format, served.size, getattr(served, "n_frames", 1)) == ("JPEG", (40, 30), 1)
    assert attachments.make_thumbnail(attachment.pk)


def progressive_jpeg_with_scans(extra: int, size: int = 64) -> bytes:
    """A progressive JPEG whose last scan is repeated `extra` times: libjpeg decodes each
    again over the whole picture (a bogus progression is only a warning to it)."""
    data = image_bytes(Image.new("L", (size, size)), "JPEG", progressive=True)
    last_scan = data[data.rindex(b"\xff\xda") : -2]  # up to the end-of-image marker
    return data[:-2] + last_scan * extra + b"\xff\xd9"


def test_a_jpeg_of_too_many_scans_is_refused_before_decoding(alice_client, lobby, settings):
    """A 37 KiB 2000x2000 JPEG of 1,000 scans took 5.4 s to decode on the request path;
    10 MiB holds hundreds of thousands of scans."""
    ordinary = progressive_jpeg_with_scans(0)
    assert 5 <= ordinary.count(b"\xff\xda") <= 10
    bomb = progressive_jpeg_with_scans(101 - ordinary.count(b"\xff\xda"))
    response = post_file(alice_client, lobby, "scans.jpg", bomb, body="kept")
    assert response.status_code == 400
    assert fragments.composer_errors(response.content.decode()) == [
        "image too complex: 101 scans (a JPEG may have at most 100)."
    ]
    assert not Attachment.objects.exists() and not stored_files(settings)
    at_most = progressive_jpeg_with_scans(100 - ordinary.count(b"\xff\xda"))
    for name, data in (("ordinary.jpg", ordinary), ("at-most.jpg", at_most)):
        assert post_file(alice_client, lobby, name, data).status_code == 302
        services.rate_limiter.reset()
    assert [a.kind for a in Attachment.objects.all()] == ["image", "image"]


def test_a_jpeg_with_a_huge_exif_block_is_stored_without_it(alice_client, lobby):
    exif = Image.Exif()
    exif[0x9286] = b"ASCII\0\0\0" + b"SECRET" * 10_000  # UserComment: 60 KB
    exif[0x0112] = 3  # upside down
    data = image_bytes(Image.new("RGB", (40, 30), "red"), "JPEG", exif=exif)
    assert len(data) > 60_000
    post_file(alice_client, lobby, "big-exif.jpg", data)
    served = read_served(alice_client.get(only_attachment().url()))
    assert b"SECRET" not in served and len(served) < 2000


@pytest.mark.parametrize("case", ["not a member", "too big", "a bomb"])
def test_no_temporary_file_outlives_a_refused_upload(
    login, alice, carol, lobby, secret, settings, tmp_path, case
):
    """Django spools a large upload to a temporary file as it parses the body (before the
    view can look at who sent it): it is gone when the answer is."""
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 100
    if case == "not a member":
        response = post_file(login(carol), secret, "x.bin", b"x" * 5000)
        assert response.status_code == 404
    elif case == "too big":
        settings.CHAT_ATTACHMENT_MAX_BYTES = 1000
        response = post_file(login(alice), lobby, "x.bin", b"x" * 5000)
        assert response.status_code == 400
    else:
        response = post_file(login(alice), lobby, "b.gif", gif_with_frames(1000, 1000, 400))
        assert response.status_code == 400
    assert not any(tmp_path.iterdir())
    assert not Attachment.objects.exists() and not stored_files(settings)
