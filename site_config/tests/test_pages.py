"""The landing page, and the error pages people meet with DEBUG off: each says what
happened and links the way back."""

import pytest
from django.conf import settings
from django.db import connection
from django.template import loader
from django.test.utils import CaptureQueriesContext
from pytest_django.asserts import assertRedirects

from conftest import HttpsClient
from rooms.models import Room
from rooms.tests.fragments import parse

pytestmark = pytest.mark.django_db


def error_page(response, status: int) -> dict:
    """What an error page shows: its code line, heading, and where its links go."""
    assert response.status_code == status
    document = parse(response.content.decode())
    card = document.by_id("error")
    assert card is not None, response.content.decode()[:2000]
    return {
        "code": card.one("p", class_="error-code").text.strip(),
        "heading": card.one("h1").text.strip(),
        "links": [a.attrs["href"] for a in card.find_all("a")],
        "stylesheet": [link.attrs["href"] for link in document.find_all("link")],
    }


def test_debug_is_off_in_these_tests() -> None:
    assert settings.DEBUG is False  # Django's own error pages would show otherwise


def test_visitors_get_the_landing_page_with_the_ways_in(client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    document = parse(response.content.decode())
    assert document.one("h1").text.strip() == "Hypertalk"
    hrefs = {a.attrs["href"] for a in document.one_by_id("main").find_all("a")}
    assert {"/accounts/signup/", "/accounts/login/"} <= hrefs


def test_signed_in_users_still_go_to_their_rooms(alice_client) -> None:
    assertRedirects(alice_client.get("/"), "/rooms/")


def test_a_missing_page_is_the_styled_404_with_a_way_back(alice_client) -> None:
    page = error_page(alice_client.get("/no/such/page/"), 404)
    assert page["code"] == "Error 404" and page["heading"] == "There is nothing here"
    assert page["links"] == ["/rooms/"]
    assert any("chat" in href and href.endswith(".css") for href in page["stylesheet"])


def test_a_visitors_404_links_home(client) -> None:
    assert error_page(client.get("/no/such/page/"), 404)["links"] == ["/"]


def test_a_private_rooms_transcript_is_the_same_404_as_a_missing_rooms(
    login, carol, secret
) -> None:
    client = login(carol)  # not a member of alice's "secret"
    private = client.get("/rooms/secret/2026/01/05/")
    missing = client.get("/rooms/nowhere/2026/01/05/")
    assert error_page(private, 404) == error_page(missing, 404)
    # The same page but for what changes on every response (the CSP nonce, CSRF tokens).
    assert parse(private.content.decode()).by_id("main") == parse(missing.content.decode()).by_id(
        "main"
    )


def test_a_forbidden_removal_is_the_404_too(login, carol, bob, secret) -> None:
    page = error_page(login(carol).post("/rooms/secret/members/bob/remove/"), 404)
    assert page["links"] == ["/rooms/"]


def test_a_bad_request_is_the_styled_400(client) -> None:
    page = error_page(client.get("/", HTTP_HOST="not-an-allowed-host.example"), 400)
    assert page["code"] == "Error 400" and page["links"] == ["/"]


def test_a_form_without_its_security_token_is_the_styled_403(alice) -> None:
    client = HttpsClient(enforce_csrf_checks=True)
    client.force_login(alice)
    page = error_page(client.post("/rooms/", {"name": "general"}), 403)
    assert page["code"] == "Error 403" and page["heading"] == "That form has expired"
    assert page["links"] == ["/rooms/"]
    assert not Room.objects.exists()


def test_the_403_page(rf, alice) -> None:
    from django.views.defaults import permission_denied

    request = rf.get("/x/")
    request.user = alice
    page = error_page(permission_denied(request, PermissionError("no")), 403)
    assert page["heading"] == "You may not do that" and page["links"] == ["/rooms/"]


def test_the_429_page_renders_alone() -> None:
    html = loader.get_template("429.html").render()
    document = parse(html)
    assert document.one_by_id("error").one("h1").text.strip() == "Slow down a little"
    assert [a.attrs["href"] for a in document.one_by_id("error").find_all("a")] == ["/"]


@pytest.mark.urls("site_config.tests.error_urls")
def test_a_server_error_is_the_styled_500(alice) -> None:
    client = HttpsClient(raise_request_exception=False)
    client.force_login(alice)
    page = error_page(client.get("/fail/"), 500)
    assert page["code"] == "Error 500" and page["links"] == ["/"]


def test_the_500_page_needs_no_request_and_no_database() -> None:
    """Django's server_error renders 500.html with no context: no user, no request."""
    with CaptureQueriesContext(connection) as queries:
        html = loader.get_template("500.html").render()
    assert len(queries) == 0
    document = parse(html)
    assert document.one_by_id("error").one("h1").text.strip() == "Something went wrong on our side"
    assert "Log out" not in html and "Log in" not in html  # it cannot know who is asking
