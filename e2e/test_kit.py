"""The QA kit itself: its fixtures do what e2e/README.md says, and a failing browser test
leaves a trace, a screenshot, the page's HTML and the server's log behind.

`test_deliberately_failing` fails on purpose. It is skipped unless E2E_KIT_FAIL=1, and
`test_a_failing_test_leaves_its_artifacts` runs it so, in a pytest of its own.
"""

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from e2e import servers
from e2e.chat import NO_JAVASCRIPT, PHONE, expect_message, messages

pytestmark = pytest.mark.e2e

FAIL_ON_PURPOSE = "E2E_KIT_FAIL"
LAST_WORDS = "the last words of a failing test"


# The example in e2e/README.md, as it is there.
@pytest.mark.browser_context_args(**PHONE)
def test_a_member_reads_a_private_room_on_a_phone(private_room, log_in, sign_up):
    room = private_room(members=("bob",), messages=3)
    bob = log_in(room.members[0])
    bob.open_room(room.slug)
    expect(bob.page.locator(".message-body")).to_have_text(
        ["Message 1 of 3", "Message 2 of 3", "Message 3 of 3"]
    )
    assert bob.page.evaluate("matchMedia('(pointer: coarse)').matches")  # a touch screen
    outsider = sign_up("eve")
    response = outsider.page.goto(f"/rooms/{room.slug}/")
    assert response is not None and response.status == 404


def test_a_room_with_history_without_javascript(room_with_history, log_in):
    room = room_with_history(60)
    reader = log_in(room.people[1], **NO_JAVASCRIPT)
    page = reader.page
    page.goto(f"/rooms/{room.slug}/")
    assert [m["id"] for m in messages(page)] == room.message_ids[-50:]
    with page.expect_navigation():
        page.locator("a[rel=prev]").click()
    assert [m["id"] for m in messages(page)] == room.message_ids[:10]
    assert [m["author"] for m in messages(page)][:2] == [p.username for p in room.people]
    assert page.locator(".message-body").first.text_content() == "Message 1 of 60"


def test_the_same_person_on_two_devices(sign_up, log_in, make_users, room_slug):
    ann = sign_up("ann")
    ann_on_a_phone = log_in(ann, **PHONE)
    (bob,) = make_users("bob")
    bob = log_in(bob)
    for person in (ann, ann_on_a_phone, bob):
        person.open_room(room_slug)
    ann_on_a_phone.send("sent from the phone")
    expect_message(ann.page, ann.username, "sent from the phone")
    expect_message(bob.page, ann.username, "sent from the phone")


@pytest.mark.skipif(
    os.environ.get(FAIL_ON_PURPOSE) != "1", reason=f"fails on purpose: {FAIL_ON_PURPOSE}=1"
)
def test_deliberately_failing(sign_up, room_slug):
    ann = sign_up("ann")
    ann.open_room(room_slug)
    ann.send(LAST_WORDS)
    expect_message(ann.page, ann.username, LAST_WORDS)
    pytest.fail("on purpose: test_a_failing_test_leaves_its_artifacts looks at what it left")


def pytest_environment() -> dict[str, str]:
    """This environment as it was before conftest.py set the test settings up (a pytest
    refuses to start with DJANGO_SETTINGS_MODULE and SECRET_KEY exported)."""
    set_up_here = {"DJANGO_SETTINGS_MODULE", "SECRET_KEY", servers.ASYNC_UNSAFE}
    return {key: value for key, value in os.environ.items() if key not in set_up_here}


def test_a_failing_test_leaves_its_artifacts(tmp_path: Path) -> None:
    """Run the failing test as `make test-e2e` runs the suite; its directory of artifacts
    holds pytest-playwright's trace and screenshot, and the kit's page HTML and server log."""
    output = tmp_path / "artifacts"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            f"{Path(__file__).relative_to(servers.PROJECT_DIR)}::test_deliberately_failing",
            "-p",
            "no:cacheprovider",
            "-q",
            "--tracing=retain-on-failure",
            "--screenshot=only-on-failure",
            f"--output={output}",
        ],
        cwd=servers.PROJECT_DIR,
        env={**pytest_environment(), FAIL_ON_PURPOSE: "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed" in result.stdout, result.stdout

    (test_dir,) = output.iterdir()
    assert "test-deliberately-failing" in test_dir.name
    files = {path.name for path in test_dir.iterdir()}

    with zipfile.ZipFile(test_dir / "trace.zip") as trace:
        assert any(name.endswith(".trace") for name in trace.namelist())

    screenshots = sorted(test_dir.glob("test-failed-*.png"))
    assert screenshots, files
    assert screenshots[0].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    html = (test_dir / "page-1.html").read_text()
    assert LAST_WORDS in html and 'id="chat-log"' in html
    assert "page-1.html\thttp://127.0.0.1:" in (test_dir / "pages.txt").read_text()

    (log,) = test_dir.glob("daphne-*.log")  # the server's own lines about this test's user
    assert re.search(r"connected ann\d+_\w+ to ", log.read_text()), log.read_text()[-2000:]
