"""HTTP requests through the whole ASGI application (site_config.asgi), as Daphne hands them
over: the guard, then Django. The test client skips asgi.py; these do not."""

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from asgiref.testing import ApplicationCommunicator

TIMEOUT = 5


@dataclass
class Reply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def http_scope(
    method: str, path: str, *, query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
) -> dict[str, Any]:
    """What Daphne passes for a request: `path` decoded (as it unquotes %xx), over HTTPS
    (the test settings redirect plain HTTP), to localhost."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": quote(path).encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"localhost"), *(headers or [])],
        "client": ["127.0.0.1", 50000],
        "server": ["localhost", 443],
    }


async def read_reply(communicator: ApplicationCommunicator) -> Reply:
    start = await communicator.receive_output(TIMEOUT)
    assert start["type"] == "http.response.start", start
    body = b""
    while True:
        message = await communicator.receive_output(TIMEOUT)
        assert message["type"] == "http.response.body", message
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    return Reply(start["status"], dict(start.get("headers", [])), body)


async def request(
    method: str,
    path: str,
    *,
    query: bytes = b"",
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Reply:
    from site_config.asgi import application

    communicator = ApplicationCommunicator(
        application, http_scope(method, path, query=query, headers=headers)
    )
    await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
    reply = await read_reply(communicator)
    await communicator.wait(TIMEOUT)
    return reply
