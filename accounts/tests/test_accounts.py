import pytest
from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.sessions.models import Session
from pytest_django.asserts import assertRedirects

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-long-unusual-passphrase-42"


def logged_in_user_id(client) -> str | None:
    return client.session.get(SESSION_KEY)


def test_signing_up_creates_the_account_and_logs_in(client) -> None:
    response = client.post(
        "/accounts/signup/",
        {"username": "newcomer", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assertRedirects(response, "/rooms/")
    user = get_user_model().objects.get(username="newcomer")
    assert user.check_password(NEW_PASSWORD)
    assert logged_in_user_id(client) == str(user.pk)
    assert "Signed in as <strong>newcomer</strong>" in client.get("/rooms/").content.decode()


def test_signing_up_with_mismatched_passwords_creates_nothing(client) -> None:
    response = client.post(
        "/accounts/signup/",
        {"username": "newcomer", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD + "x"},
    )
    assert response.status_code == 200
    assert "The two password fields didn’t match." in response.content.decode()
    assert not get_user_model().objects.exists()
    assert logged_in_user_id(client) is None


def test_signing_up_with_a_taken_username_is_refused(client, alice) -> None:
    response = client.post(
        "/accounts/signup/",
        {"username": "alice", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert response.status_code == 200
    assert "A user with that username already exists." in response.content.decode()
    assert get_user_model().objects.count() == 1


def test_logging_in_goes_to_the_room_list(client, alice, password) -> None:
    response = client.post("/accounts/login/", {"username": "alice", "password": password})
    assertRedirects(response, "/rooms/")
    assert logged_in_user_id(client) == str(alice.pk)


def test_logging_in_returns_to_the_page_asked_for(client, alice, password) -> None:
    response = client.post(
        "/accounts/login/?next=/rooms/lobby/",
        {"username": "alice", "password": password, "next": "/rooms/lobby/"},
    )
    assertRedirects(response, "/rooms/lobby/", fetch_redirect_response=False)


def test_logging_in_never_redirects_off_site(client, alice, password) -> None:
    response = client.post(
        "/accounts/login/",
        {"username": "alice", "password": password, "next": "https://evil.example/"},
    )
    assertRedirects(response, "/rooms/")


def test_a_wrong_password_does_not_log_in(client, alice) -> None:
    response = client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert "Please enter a correct username and password." in response.content.decode()
    assert logged_in_user_id(client) is None


def test_the_login_page_sends_a_logged_in_user_on(login, alice) -> None:
    assertRedirects(login(alice).get("/accounts/login/"), "/rooms/")


def test_logging_out_takes_a_post(login, alice) -> None:
    client = login(alice)
    assert client.get("/accounts/logout/").status_code == 405
    assert logged_in_user_id(client) == str(alice.pk)


def test_logging_out_ends_the_session(login, alice) -> None:
    client = login(alice)
    session_key = client.cookies[settings.SESSION_COOKIE_NAME].value

    assertRedirects(client.post("/accounts/logout/"), "/accounts/login/")

    assert not Session.objects.filter(session_key=session_key).exists()
    assertRedirects(client.get("/rooms/"), "/accounts/login/?next=/rooms/")


@pytest.mark.skipif(
    not settings.SESSION_COOKIE_SECURE, reason="secure cookies are off in this environment"
)
def test_the_session_cookie_is_secure_and_http_only(client, alice, password) -> None:
    client.post("/accounts/login/", {"username": "alice", "password": password})
    session = client.cookies[settings.SESSION_COOKIE_NAME]
    assert session["secure"] and session["httponly"]
