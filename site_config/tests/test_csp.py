"""The Content-Security-Policy (django-csp, CONTENT_SECURITY_POLICY): scripts, sockets and
styles from our own origin only; the one inline style allowed is the per-viewer <style>
of templates/base.html, by a nonce new on every response. (e2e/test_csp.py checks in a
browser that nothing on the pages is blocked and that the per-viewer rule applies.)
"""

import re
from pathlib import Path
from typing import Any

import pytest

from rooms.models import Room
from rooms.tests import fragments

pytestmark = pytest.mark.django_db

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def policy(response: Any) -> dict[str, list[str]]:
    directives = [part.split() for part in response["Content-Security-Policy"].split(";")]
    return {name: sources for name, *sources in directives}


def style_nonces(response: Any) -> list[str | None]:
    page = fragments.parse(response.content.decode())
    return [style.attrs.get("nonce") for style in page.find_all("style")]


def test_the_policy_is_the_same_but_for_inline_styles(login: Any, alice: Any) -> None:
    Room.objects.create(slug="lobby")
    directives = policy(login(alice).get("/rooms/lobby/"))
    nonce = directives.pop("style-src")
    assert directives == {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "connect-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    assert nonce[0] == "'self'" and re.fullmatch(r"'nonce-[A-Za-z0-9+/]{22}=='", nonce[1])
    assert len(nonce) == 2  # no 'unsafe-inline'


def test_the_per_viewer_style_carries_this_response_s_nonce(login: Any, alice: Any) -> None:
    Room.objects.create(slug="lobby")
    client = login(alice)
    first, second = client.get("/rooms/lobby/"), client.get("/rooms/lobby/")
    for response in (first, second):
        (nonce,) = style_nonces(response)
        assert policy(response)["style-src"] == ["'self'", f"'nonce-{nonce}'"]
    assert style_nonces(first) != style_nonces(second)


def test_a_page_without_the_per_viewer_style_allows_no_inline_style(client: Any) -> None:
    response = client.get("/accounts/login/")
    assert style_nonces(response) == []
    assert policy(response)["style-src"] == ["'self'"]


@pytest.mark.parametrize(
    "path", sorted(TEMPLATES.rglob("*.html")), ids=lambda path: str(path.relative_to(TEMPLATES))
)
def test_no_template_has_markup_the_policy_would_block(path: Path) -> None:
    """No style="…" attribute, no inline script, no <style> without the nonce: a browser
    would refuse each silently (styles missing, scripts not run)."""
    source = path.read_text()
    assert not re.search(r"\sstyle\s*=", source)
    assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", source)
    assert not re.search(r"""<style(?![^>]*\snonce="\{\{ request\.csp_nonce \}\}")[^>]*>""", source)
    assert not re.search(r"\son[a-z]+\s*=", source)  # onclick="…" is inline script too
