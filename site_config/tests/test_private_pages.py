"""What a signed-in person is shown is `Cache-Control: private, no-store`
(site_config/middleware.py, PrivatePagesMiddleware)."""

import pytest
from django.http import HttpResponse
from django.test import RequestFactory
from django.utils.cache import get_max_age

from rooms.models import Room
from site_config.middleware import PrivatePagesMiddleware

pytestmark = pytest.mark.django_db


def cache_directives(response) -> set[str]:
    return {part.strip() for part in response.get("Cache-Control", "").split(",") if part.strip()}


def vary(response) -> set[str]:
    return {part.strip().lower() for part in response.get("Vary", "").split(",") if part.strip()}


@pytest.mark.parametrize("path", ["/rooms/", "/rooms/lobby/", "/messages/", "/messages/bob/"])
def test_signed_in_pages_are_private_and_not_stored(login, alice, bob, path) -> None:
    Room.objects.create(slug="lobby", owner=alice)
    response = login(alice).get(path)
    assert response.status_code == 200
    assert cache_directives(response) == {"private", "no-store"}
    assert "cookie" in vary(response)


def test_a_signed_in_redirect_is_private_too(login, alice) -> None:
    response = login(alice).get("/")
    assert response.status_code == 302
    assert cache_directives(response) == {"private", "no-store"}


def test_anonymous_pages_are_left_as_they_are(client) -> None:
    response = client.get("/rooms/")  # to the log-in page: nobody's in particular
    assert response.status_code == 302
    assert "Cache-Control" not in response
    # The log-in page keeps Django's own never_cache headers.
    login_page = client.get("/accounts/login/")
    assert {"private", "no-store", "no-cache", "must-revalidate"} <= cache_directives(login_page)
    assert get_max_age(login_page) == 0


def test_a_view_that_chose_its_own_cache_control_keeps_it(alice) -> None:
    request = RequestFactory().get("/somewhere/")
    request.user = alice

    def view(request) -> HttpResponse:
        response = HttpResponse("public facts")
        response["Cache-Control"] = "public, max-age=60"
        return response

    response = PrivatePagesMiddleware(view)(request)
    assert response["Cache-Control"] == "public, max-age=60"
