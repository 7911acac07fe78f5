"""A NUL byte never reaches the database (PostgreSQL refuses it: a 500).

Run on both databases: `make test` runs this file on SQLite, then again on PostgreSQL
(DATABASE_URL=postgres://...). Three layers, each tested on its own:

- the ASGI guard (site_config/http_guard.py): a NUL in a path or query string is a 400,
  or a refused socket handshake, before Django runs;
- URL converters (rooms/converters.py): a path whose username is not a username is a 404
  from the resolver (the Django test client below skips asgi.py, so the guard too);
- forms and sessions: a NUL in a POST field is a form error (Django's CharField refuses
  it), and a NUL in a session cookie is no session (site_config/sessions.py).
"""

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections

from conftest import logged_in
from rooms import presence
from rooms.models import Message, PrivateMessage, Room
from rooms.tests import fragments
from site_config.http_guard import NUL_IN_URL_TEXT
from site_config.tests.asgi_http import request

NULL_REFUSED = "Null characters are not allowed."


def session_cookie(user: Any) -> bytes:
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={logged_in(user).cookies[name].value}".encode()


# The ASGI guard: before Django -----------------------------------------------------------


@pytest.mark.parametrize(
    "path, query",
    [
        ("/messages/\x00/", b""),  # as Daphne hands over /messages/%00/ (decoded)
        ("/rooms/\x00/", b""),
        ("/rooms/lob\x00by/messages/", b""),
        ("/rooms/lobby/", b"after=%00"),
        ("/rooms/lobby/", b"after=1&x=a%00b"),
        ("/accounts/login/", b"next=/rooms/%00/"),
    ],
)
async def test_a_nul_in_the_address_is_a_400_before_django(
    transactional_db, alice, lobby, path, query
) -> None:
    cookie = await sync_to_async(session_cookie)(alice)
    reply = await request("GET", path, query=query, headers=[(b"cookie", cookie)])
    assert reply.status == 400
    assert reply.text == NUL_IN_URL_TEXT
    await sync_to_async(connections.close_all)()


@pytest.mark.parametrize("path", ["/ws/rooms/%00/", "/ws/rooms/lobby/?after=%00"])
async def test_a_nul_in_a_socket_address_is_refused_before_accepting(
    transactional_db, alice, lobby, path
) -> None:
    from site_config.asgi import application

    cookie = await sync_to_async(session_cookie)(alice)
    headers = [(b"host", b"localhost"), (b"origin", b"http://localhost"), (b"cookie", cookie)]
    communicator = WebsocketCommunicator(application, path, headers=headers)
    accepted, code = await communicator.connect(timeout=5)
    assert (accepted, code) == (False, 1008)
    assert await communicator.receive_nothing(0.05)
    await presence.drain()
    await sync_to_async(connections.close_all)()


# URL converters: Django alone (the test client skips asgi.py) -----------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/messages/%00/", "/messages/bob%00/", "/messages/b%20ob/"])
def test_a_conversation_with_no_possible_username_is_a_404(login, alice, bob, path) -> None:
    assert login(alice).get(path).status_code == 404


@pytest.mark.django_db
def test_removing_no_possible_username_is_a_404(login, alice, secret) -> None:
    client = login(alice)
    assert client.post("/rooms/secret/members/%00/remove/").status_code == 404
    assert client.post("/rooms/secret/members/bob%00/remove/").status_code == 404
    assert list(secret.members.values_list("username", flat=True)) == ["bob"]


@pytest.mark.django_db
def test_every_username_character_still_routes(login, alice, make_user) -> None:
    other = make_user("Zoë.o@x+y-z_1")
    response = login(alice).get(f"/messages/{other.username}/")
    assert response.status_code == 200


# POST fields: a form error, nothing stored ---------------------------------------------


@pytest.mark.django_db
def test_a_nul_in_a_room_message_is_a_form_error(login, alice, lobby) -> None:
    response = login(alice).post("/rooms/lobby/messages/", {"body": "a\x00b"})
    assert response.status_code == 400
    assert NULL_REFUSED in response.content.decode()
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_a_nul_in_a_pm_command_is_a_form_error(login, alice, bob, lobby) -> None:
    response = login(alice).post("/rooms/lobby/messages/", {"body": "/pm \x00bob hi"})
    assert response.status_code == 400
    assert NULL_REFUSED in response.content.decode()
    assert not PrivateMessage.objects.exists()


@pytest.mark.django_db
def test_a_nul_in_a_private_message_is_a_form_error(login, alice, bob) -> None:
    response = login(alice).post("/messages/bob/", {"body": "hi\x00"})
    assert response.status_code == 400
    assert NULL_REFUSED in response.content.decode()
    assert not PrivateMessage.objects.exists()


@pytest.mark.django_db
def test_a_nul_in_an_invite_is_a_form_error(login, alice, secret) -> None:
    response = login(alice).post("/rooms/secret/members/", {"username": "bob\x00"})
    assert response.status_code in {200, 400}
    assert NULL_REFUSED in response.content.decode()
    assert list(secret.members.values_list("username", flat=True)) == ["bob"]


@pytest.mark.django_db
def test_a_nul_in_a_room_name_is_a_form_error(login, alice) -> None:
    response = login(alice).post("/rooms/", {"name": "lob\x00by"})
    assert response.status_code == 400
    assert not Room.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["username", "password"])
def test_a_nul_in_a_login_is_a_form_error(client, alice, password, field) -> None:
    data = {"username": "alice", "password": password, field: "\x00"}
    response = client.post("/accounts/login/", data)
    assert response.status_code == 200
    assert NULL_REFUSED in response.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_a_nul_in_a_signup_is_a_form_error(client, alice) -> None:
    password = "a long and uncommon passphrase"
    data = {"username": "bob\x00", "password1": password, "password2": password}
    response = client.post("/accounts/signup/", data)
    assert response.status_code in {200, 400}
    page = response.content.decode()
    assert "U+0000" in page or NULL_REFUSED in page  # accounts/ names the character
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["alice"]


# Sessions: a NUL from a cookie is no session ---------------------------------------------

NUL_SESSION = f'{settings.SESSION_COOKIE_NAME}="\\000abcdefghijklmnop"'  # octal escape: a NUL


@pytest.mark.django_db
def test_a_nul_in_the_session_cookie_is_no_session(client) -> None:
    response = client.get("/rooms/", HTTP_COOKIE=NUL_SESSION)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert client.get("/accounts/login/", HTTP_COOKIE=NUL_SESSION).status_code == 200


async def test_a_nul_in_a_sockets_session_cookie_is_no_session(transactional_db, lobby) -> None:
    from site_config.asgi import application

    headers = [
        (b"host", b"localhost"),
        (b"origin", b"http://localhost"),
        (b"cookie", NUL_SESSION.encode()),
    ]
    communicator = WebsocketCommunicator(application, "/ws/rooms/lobby/", headers=headers)
    accepted, _ = await communicator.connect(timeout=5)
    if accepted:  # the consumer closes a socket without a user (4401)
        output = await communicator.receive_output(5)
        while output["type"] == "websocket.send":
            assert fragments.messages_in(output["text"]) == []
            output = await communicator.receive_output(5)
        assert output == {"type": "websocket.close", "code": 4401}
    await communicator.disconnect()
    await presence.drain()
    await sync_to_async(connections.close_all)()
