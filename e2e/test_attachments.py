"""Attachments in a real browser against a real Daphne (issue 15).

A file goes with the composer's form: with JavaScript the text of other messages still
goes over the socket and a form with a file is posted by htmx; without JavaScript the
browser posts the multipart form itself. Either way every open page of the room gets the
message live, rendered once; an image first as a file link, then (a change pushed when
the thumbnail is made in the server process) as its thumbnail, linking to the full image.
"""

import io
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Locator, Page, expect

from e2e import servers
from e2e.accessibility import assert_no_axe_violations
from e2e.chat import LIVE_TIMEOUT_MS, NO_JAVASCRIPT, expect_socket, screenshot
from e2e.conftest import SignUp

PDF = b"%PDF-1.4\n" + b"0" * 1200 + b"\n%%EOF\n"  # 1,216 bytes: "1.2 KB"


def photo(width: int = 640, height: int = 400) -> bytes:
    """A JPEG with a few colours, so the thumbnail shows something."""
    image = Image.new("RGB", (width, height), (147, 197, 253))
    image.paste((101, 163, 13), (0, height * 2 // 3, width, height))
    image.paste((253, 224, 71), (width - 140, 40, width - 60, 120))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def attach(page: Page, name: str, data: bytes, mime: str) -> None:
    page.locator("#composer input[type=file][name=file]").set_input_files(
        {"name": name, "mimeType": mime, "buffer": data}
    )


def figure_of(page: Page, author: str, kind: str) -> Locator:
    return page.locator(
        f'article.message[data-author="{author}"] figure.attachment[data-kind="{kind}"]'
    )


def expect_thumbnail(page: Page, author: str, name: str) -> None:
    """The image's thumbnail is shown (it was pushed as a change) and has loaded."""
    image = page.locator(f'article.message[data-author="{author}"] figure.attachment img')
    expect(image).to_have_attribute("alt", name, timeout=LIVE_TIMEOUT_MS * 3)
    expect(image).to_have_js_property("complete", True)
    assert image.evaluate("img => img.naturalWidth") > 0


def test_with_javascript_an_image_goes_over_http_and_appears_live(
    sign_up: SignUp, room_slug: str
) -> None:
    ann = sign_up("ann")
    bob = sign_up("bob")
    ann.open_room(room_slug)
    bob.open_room(room_slug)

    attach(ann.page, "garden.jpg", photo(), "image/jpeg")
    ann.send("Our garden <b>today</b>")  # Enter: htmx posts the form, the socket does not

    for page in (ann.page, bob.page):
        body = page.locator(f'article.message[data-author="{ann.username}"] .message-body')
        expect(body).to_have_text("Our garden <b>today</b>", timeout=LIVE_TIMEOUT_MS)
        expect_thumbnail(page, ann.username, "garden.jpg")
    # The composer came back empty, the file too; the socket stayed open.
    expect(ann.page.locator("#composer input[type=file]")).to_have_value("")
    expect_socket(ann.page, "open")
    # Text alone still goes over the socket.
    ann.send("and no file")
    expect(bob.page.locator(".message-body").last).to_have_text("and no file")

    # The full image opens (inline: an image we re-encoded).
    link = bob.page.locator("figure.attachment a.attachment-image")
    answer = bob.page.request.get(link.get_attribute("href") or "")
    assert answer.status == 200 and answer.headers["content-type"] == "image/jpeg"
    assert answer.headers["content-disposition"].startswith("inline;")
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_without_javascript_the_form_posts_the_file(sign_up: SignUp, room_slug: str) -> None:
    ann = sign_up("ann")
    ann.open_room(room_slug)  # ann, with JavaScript, watches live
    plain = sign_up("plain", **NO_JAVASCRIPT)
    page = plain.page
    page.goto(f"{plain.base_url}/rooms/{room_slug}/")

    page.locator("#composer [name=body]").fill("From a browser without scripts")
    attach(page, "map.png", png_bytes(), "image/png")
    page.get_by_role("button", name="Send").click()

    expect(page).to_have_url(f"{plain.base_url}/rooms/{room_slug}/")
    expect(figure_of(page, plain.username, "image")).to_have_count(1)
    expect(figure_of(ann.page, plain.username, "image")).to_have_count(1)
    expect_thumbnail(ann.page, plain.username, "map.png")
    page.reload()  # (no socket here: the thumbnail shows on the next load)
    expect_thumbnail(page, plain.username, "map.png")


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (300, 200), (79, 70, 229)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("java_script", [True, False], ids=["js", "no-js"])
def test_a_file_shows_its_name_type_and_size_and_downloads(
    sign_up: SignUp, room_slug: str, java_script: bool
) -> None:
    owner = sign_up("owner")
    owner.open_room(room_slug)
    sender = sign_up("sender", java_script_enabled=java_script)
    page = sender.page
    page.goto(f"{sender.base_url}/rooms/{room_slug}/")
    if java_script:
        expect_socket(page, "open")
    attach(page, "quarterly <report>.pdf", PDF, "application/pdf")
    page.get_by_role("button", name="Send").click()

    for seen in (page, owner.page):
        figure = figure_of(seen, sender.username, "file")
        expect(figure).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
        expect(figure.locator(".attachment-name")).to_have_text("quarterly <report>.pdf")
        expect(figure.locator(".attachment-type")).to_have_text("application/pdf")
        expect(figure.locator(".attachment-size")).to_have_text("1.2 KB")
    href = figure_of(owner.page, sender.username, "file").locator("a.attachment-file")
    answer = owner.page.request.get(href.get_attribute("href") or "")
    assert answer.status == 200 and answer.body() == PDF
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.headers["content-disposition"].startswith("attachment;")


def test_screenshots_at_phone_and_desktop_light_and_dark(sign_up: SignUp, room_slug: str) -> None:
    ann = sign_up("ann")
    ann.open_room(room_slug)
    attach(ann.page, "garden.jpg", photo(), "image/jpeg")
    ann.send("The garden this morning")
    expect_thumbnail(ann.page, ann.username, "garden.jpg")
    attach(ann.page, "minutes-2026-11-26-with-a-rather-long-name.pdf", PDF, "application/pdf")
    ann.send("Minutes attached")
    expect(figure_of(ann.page, ann.username, "file")).to_have_count(1)

    viewer = sign_up("viewer")
    page = viewer.page
    for size, width, height in (("desktop", 1280, 900), ("phone", 390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            viewer.open_room(room_slug)
            expect_thumbnail(page, ann.username, "garden.jpg")
            screenshot(page, f"15-attachments-{size}-{scheme}")
            assert_no_axe_violations(page, f"a room with attachments ({size}, {scheme})")


@pytest.mark.console_errors("the refusal is answered 400, and Chromium logs it as a failed load")
def test_with_javascript_refusals_show_in_the_composer_and_keep_the_text(
    sign_up: SignUp, room_slug: str
) -> None:
    ann = sign_up("ann")
    page = ann.open_room(room_slug)
    body = page.locator("#composer [name=body]")

    # The server's refusal: the composer comes back with its error, the text kept.
    attach(page, "empty.txt", b"", "text/plain")
    ann.send("keep these words", expect_cleared=False)
    expect(page.locator("#composer .composer-error")).to_have_text(
        "“empty.txt” is empty: nothing was sent."
    )
    expect(body).to_have_value("keep these words")

    # Over the limit: refused before anything is sent (the server would cut it off).
    attach(page, "huge.bin", b"\0" * (10 * 1024 * 1024 + 1), "application/octet-stream")
    body.press("Enter")
    file = page.locator("#composer input[type=file]")
    expect(file).to_have_js_property(
        "validationMessage", "That file is too big: files can be at most 10 MiB."
    )
    expect(body).to_have_value("keep these words")
    expect(page.locator("article.message")).to_have_count(0)


def test_the_composer_url_alone_takes_bodies_as_large_as_a_file(
    sign_up: SignUp, room_slug: str
) -> None:
    """Daphne refuses bodies over CHAT_MAX_REQUEST_BYTES (2 MiB) before reading them
    (site_config/http_guard.py), but for the composer's URL, which takes a file of up to
    CHAT_ATTACHMENT_MAX_BYTES (10 MiB) with its form."""
    sender = sign_up("sender", **NO_JAVASCRIPT)
    page = sender.page
    page.goto(f"{sender.base_url}/rooms/{room_slug}/")
    page.locator("#create-room").get_by_role("button").click()
    three_mib = b"\x01" * (3 * 1024 * 1024)
    attach(page, "backup.bin", three_mib, "application/octet-stream")
    page.get_by_role("button", name="Send").click()
    expect(figure_of(page, sender.username, "file").locator(".attachment-size")).to_have_text(
        "3.0 MB"
    )
    elsewhere = page.request.post(f"{sender.base_url}/search/", data=three_mib)
    assert elsewhere.status == 413


def test_with_redis_the_thumbnails_worker_makes_it_and_it_appears_live(
    sign_up: SignUp, room_slug: str, redis_server: servers.RedisProcess, tmp_path: Path
) -> None:
    """The production shape: Daphne and `manage.py runworker --layer thumbnails
    thumbnails` (the Procfile's worker line) on one Redis, one database, one media
    folder. The web process queues the job; the worker makes the thumbnail and pushes
    the message again through the room's group, to the page of someone else."""
    env = servers.server_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        MEDIA_ROOT=str(tmp_path / "media"),
        REDIS_URL=redis_server.url,
        STATIC_ROOT=servers.collected_static_root(),
    )
    servers.migrate(env)
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            procfile_worker(),
            cwd=servers.PROJECT_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            with servers.daphne(env) as server:
                ann = sign_up("ann", server=server)
                bob = sign_up("bob", server=server)
                ann.open_room(room_slug)
                bob.open_room(room_slug)
                attach(ann.page, "worker.jpg", photo(), "image/jpeg")
                ann.send("made by the worker")
                expect_thumbnail(bob.page, ann.username, "worker.jpg")
                expect_thumbnail(ann.page, ann.username, "worker.jpg")
        except AssertionError as failure:
            failure.add_note(
                f"The worker's exit code: {worker.poll()}; the end of its log:\n"
                + log_path.read_text(errors="replace")[-4000:]
            )
            raise
        finally:
            worker.terminate()
            worker.wait(15)
    assert "thumbnail made for attachment" in log_path.read_text(errors="replace")


def procfile_worker() -> list[str]:
    """The Procfile's `worker:` command, run with this Python."""
    procfile = (servers.PROJECT_DIR / "Procfile").read_text().splitlines()
    (line,) = [entry for entry in procfile if entry.startswith("worker:")]
    command = shlex.split(line.removeprefix("worker:"))
    assert command[:2] == ["python", "manage.py"], command
    return [sys.executable, *command[1:]]
