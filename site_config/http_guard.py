"""Requests bounded before they are read: a cap on bodies, and no NUL in a URL.

A request body costs memory in two places under Daphne, before Django sees a byte:

1. Twisted's `http.Request` writes the body to `self.content` as it arrives (a BytesIO
   under 100,000 bytes, else a temporary file), and only when the whole body is in does
   it hand the request to Daphne;
2. Daphne's `WebRequest.process` then reads that file **whole** into the application's
   queue, in `request_buffer_size` (8 KiB) chunks, before the application has run.

So a 256 MiB POST, even an anonymous one to /accounts/login/ that ends in a 403, sat in
the process's memory whole (+515 MiB measured). Two guards, for two kinds of server:

- `RequestGuard`, an ASGI middleware in front of the whole application (site_config/asgi.py),
  for any ASGI server: a Content-Length over `CHAT_MAX_REQUEST_BYTES` is answered 413
  without reading the body, and a body without one is counted as it is received and cut
  with 413 at the cap. It also refuses a URL with a NUL byte in its path or query string
  (400 for HTTP, a refused handshake for a socket): no such value can reach the ORM,
  where PostgreSQL refuses it with an exception (a 500).
- `install()`, under Daphne: the same cap at the protocol, before Twisted buffers the body
  (see `install`: a patch of Daphne's `WebRequest`, guarded by the exact Daphne and
  Twisted versions it was tested with, realtime/upstream.py). Under Daphne the ASGI
  guard's cut never fires (the body was refused earlier); it stays as the contract for
  other servers and for tests.

A proxy in front (nginx's `client_max_body_size`, for one) should refuse at the same size;
the README says so.
"""

import logging
import re
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from io import BytesIO
from typing import Any
from urllib.parse import unquote_to_bytes

from django.conf import settings

from realtime import upstream

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# What the Daphne patch (`install`) was written and tested against (realtime/upstream.py):
# read `daphne/http_protocol.py` and `twisted/web/http.py` again before changing these.
TESTED_VERSIONS = {"daphne": "4.2.3", "twisted": "26.10.0"}
# After a refusal, what the client still sends is read and dropped for at most this long,
# so that its kernel does not answer our close with a reset that destroys the 413 it has
# not read yet (RFC 9112 section 9.6, "tear-down"); then the connection is dropped.
LINGER_SECONDS = 2.0


# Answers ---------------------------------------------------------------------------------


def readable_size(size: int) -> str:
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size:,} bytes"


def too_large_text(limit: int) -> str:
    return (
        f"413 Content Too Large: this server accepts request bodies of at most "
        f"{readable_size(limit)}.\n"
    )


NUL_IN_URL_TEXT = "400 Bad Request: the address contains a NUL character (%00).\n"
BAD_LENGTH_TEXT = "400 Bad Request: the Content-Length header is not a number.\n"


async def respond(send: Send, status: int, text: str) -> None:
    """A short plain-text answer."""
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def refuse_handshake(receive: Receive, send: Send) -> None:
    """Close a WebSocket before accepting it: the client sees the handshake fail (HTTP 403
    under Daphne), so no frame of the application's ever reaches it."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 1008})


# What is refused -------------------------------------------------------------------------

# The room composer's URL (rooms/urls.py "post"): the one that takes a file, so the one
# whose bodies may be as large as an attachment plus the form around it.
UPLOAD_PATH = re.compile(r"/rooms/[^/]+/messages/")


def limit_for(path: str) -> int:
    """The most bytes a request body to `path` may have: CHAT_MAX_REQUEST_BYTES, but for
    the composer's URL, which takes a file (CHAT_ATTACHMENT_MAX_BYTES) with its form."""
    limit: int = settings.CHAT_MAX_REQUEST_BYTES
    if UPLOAD_PATH.fullmatch(path):
        attachment = settings.CHAT_ATTACHMENT_MAX_BYTES + settings.CHAT_ATTACHMENT_FORM_OVERHEAD
        limit = max(limit, attachment)
    return limit


def url_has_nul(scope: Scope) -> bool:
    """A NUL in the path (servers decode %00 into it) or in the query string (encoded)."""
    return "\x00" in scope.get("path", "") or b"\x00" in unquote_to_bytes(
        scope.get("query_string", b"")
    )


def declared_length(scope: Scope) -> int | None:
    """The Content-Length the client declared (the largest, if it sent several); None if
    none. Raises ValueError for one that is not a number."""
    lengths = [
        value for name, value in scope.get("headers", ()) if name.lower() == b"content-length"
    ]
    if not lengths:
        return None
    if not all(value.strip().isdigit() for value in lengths):
        raise ValueError("Content-Length is not a number")
    return max(int(value) for value in lengths)


# The ASGI guard ------------------------------------------------------------------------


class RequestGuard:
    """In front of the application: bodies capped before they are read, no NUL in URLs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and url_has_nul(scope):
            log.info("socket refused: NUL byte in its address %r", scope.get("path"))
            return await refuse_handshake(receive, send)
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if url_has_nul(scope):
            return await respond(send, 400, NUL_IN_URL_TEXT)
        limit = limit_for(scope.get("path", ""))
        try:
            length = declared_length(scope)
        except ValueError:
            return await respond(send, 400, BAD_LENGTH_TEXT)
        if length is not None and length > limit:
            # Answered before a single receive(): the body is never read.
            return await respond(send, 413, too_large_text(limit))
        return await self._counted(scope, receive, send, limit)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """The application with a receive() that cuts the body at `limit`: the client gets
        413, the application an `http.disconnect` (Django then stops without answering)."""
        received = 0
        response_started = False
        cut = False  # the body passed the limit: the application is told the client left
        answered = False  # we sent the 413: whatever the application sends is dropped

        async def counted_receive() -> Message:
            nonlocal received, cut, answered
            if cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    cut = True
                    if not response_started:
                        answered = True
                        await respond(send, 413, too_large_text(limit))
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if answered:
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        await self.app(scope, counted_receive, guarded_send)


# Under Daphne: the cap at the protocol -------------------------------------------------

_installed = False


def install() -> None:
    """Refuse an oversized body in Daphne's `WebRequest`, before Twisted buffers it.

    Works around django/daphne#483 ("Memory usage: Daphne loading all the file in memory
    (POST request)", open; also django/daphne#253, closed as a duplicate of #126, "Chunk
    large request bodies into multiple http.request.body events", closed): Twisted
    (26.10) buffers a request's whole body before handing the request over, and Daphne
    (4.2.3) then copies all of it into the application's unbounded queue
    (`WebRequest.process`, http_protocol.py lines 193-195), with no limit at either step:
    Daphne has no body-size option. Relies on these Twisted internals, which is why
    `upstream.require_tested` pins TESTED_VERSIONS:

    - `HTTPChannel.allHeadersReceived` calls `request.gotLength(length)` with the declared
      Content-Length (None for a chunked body) before any of the body, and only then
      answers `Expect: 100-continue`;
    - the transfer decoders deliver the body through `request.handleContentChunk(data)`
      and call their `finishCallback` (which starts the request) at its end;
    - `LineReceiver.dataReceived` looks `rawDataReceived` up on the channel for each
      piece of data, and `_GenericHTTPChannelProtocol` looks up `dataReceived`.

    Over the cap (`CHAT_MAX_REQUEST_BYTES`), declared or counted: a 413 is written straight
    to the connection (no `100 Continue` before it), the request is never started (no
    application instance, nothing queued), the channel stops parsing and drops whatever
    the client still sends, the write side is closed, and the connection is dropped after
    LINGER_SECONDS at most. A no-op where Daphne is not imported (other ASGI servers).
    """
    global _installed
    if _installed or "daphne.server" not in sys.modules:
        return
    upstream.require_tested("site_config/http_guard.py", TESTED_VERSIONS)
    from daphne.http_protocol import WebRequest
    from twisted.web import http

    buffered_got_length = http.Request.gotLength
    buffered_content_chunk = http.Request.handleContentChunk

    def gotLength(self: Any, length: int | None) -> None:
        self._guard_received = 0
        self._guard_refused = False
        # The request line is parsed (HTTPChannel keeps its path until the request
        # starts); the body is not read yet.
        path = getattr(self.channel, "_path", b"").split(b"?", 1)[0]
        self._guard_limit = limit = limit_for(unquote_to_bytes(path).decode("utf-8", "replace"))
        if length is not None and length > limit:
            self.content = BytesIO()  # Twisted and Daphne expect a file; nothing goes in
            _refuse(self, limit, f"Content-Length {length}")
            return
        buffered_got_length(self, length)

    def handleContentChunk(self: Any, data: bytes) -> None:
        if self._guard_refused:
            return
        self._guard_received += len(data)
        limit = self._guard_limit
        if self._guard_received > limit:
            _refuse(self, limit, f"a streamed body past {limit} bytes")
            return
        buffered_content_chunk(self, data)

    WebRequest.gotLength = gotLength
    WebRequest.handleContentChunk = handleContentChunk
    _installed = True


def _discard(*_args: Any) -> None:
    return None


def _refuse(request: Any, limit: int, what: str) -> None:
    """Answer 413 on the request's connection and stop reading the request (see install)."""
    from twisted.internet import reactor

    request._guard_refused = True
    request.requestHeaders.removeHeader(b"Expect")  # no "100 Continue" after our answer
    channel = request.channel
    # This request is never started, and nothing the client sends is parsed any more:
    # the body's remaining bytes (and anything after them) are read and dropped.
    decoder = channel._transferDecoder
    if decoder is not None:  # it may be in the middle of a chunk of data: end it there
        decoder.dataCallback = decoder.finishCallback = _discard
    channel.dataReceived = channel.rawDataReceived = channel.lineReceived = _discard
    channel.setTimeout(None)

    body = too_large_text(limit).encode()
    transport = channel.transport
    transport.write(
        b"HTTP/1.1 413 Content Too Large\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n"
        b"\r\n" + body
    )
    if hasattr(transport, "loseWriteConnection"):  # TCP: FIN once the answer is out
        transport.loseWriteConnection()
    reactor.callLater(LINGER_SECONDS, transport.abortConnection)
    peer = getattr(transport.getPeer(), "host", "?")
    log.info("request refused with 413 from %s: %s (limit %d bytes)", peer, what, limit)
