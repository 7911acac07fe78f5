"""Request bodies refused before they are read, under a real Daphne.

Before site_config/http_guard.py, a 256 MiB anonymous POST to /accounts/login/ was held
whole in the server's memory (Twisted's buffer, then Daphne's application queue) before
Django's CSRF check answered 403. Each test streams its body from a generator over a raw
socket, as a browser or curl uploads: it watches for an early answer while it sends and
stops when one comes, so the test itself never holds the body either. The server's memory
is read with psutil (RSS) and from /proc (VmHWM, the peak), before and after.
"""

import re
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from e2e import servers

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
HUGE = 256 * MiB
CHUNK = 64 * 1024
LIMIT_TEXT = "413 Content Too Large: this server accepts request bodies of at most 2 MiB.\n"
# Growth allowed while refusing a 256 MiB body: a few MiB of allocator noise, nowhere near
# the body (the limit itself is 2 MiB and is never buffered either).
MAX_GROWTH = 4 * MiB


@pytest.fixture(scope="module")
def server(e2e_env: dict[str, str]) -> Iterator[servers.DaphneProcess]:
    """A Daphne of this module's own, so that its memory is this module's doing alone."""
    with servers.daphne(e2e_env) as daphne:
        yield daphne


@dataclass
class Upload:
    status: int
    head: str
    body: str
    sent: int  # body bytes the client got to send before the answer came
    seconds: float


def body_chunks(total: int) -> Iterator[bytes]:
    """`total` bytes of form-looking data, one chunk at a time (never all at once)."""
    chunk = b"username=" + b"a" * (CHUNK - 9)
    for start in range(0, total, CHUNK):
        yield chunk[: min(CHUNK, total - start)]


def upload(
    port: int,
    path: str,
    total: int,
    *,
    chunked: bool = False,
    expect_continue: bool = False,
    send_body: bool = True,
) -> Upload:
    """POST `total` bytes, stopping as soon as the server answers; returns the answer."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        head = [
            f"POST {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Content-Type: application/x-www-form-urlencoded",
            "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}",
        ]
        if expect_continue:
            head.append("Expect: 100-continue")
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sent = 0
        if send_body:
            for chunk in body_chunks(total):
                if select.select([sock], [], [], 0)[0]:
                    break  # an answer (or a close) came: stop sending, as browsers do
                data = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
                try:
                    sock.sendall(data)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += len(chunk)
            else:
                if chunked:
                    sock.sendall(b"0\r\n\r\n")
        answer = read_answer(sock)
    head_text, _, body = answer.partition(b"\r\n\r\n")
    status = int(head_text.split(b" ", 2)[1])
    return Upload(
        status, head_text.decode(), body.decode(errors="replace"), sent, time.monotonic() - started
    )


def read_answer(sock: socket.socket) -> bytes:
    """One HTTP response: its head, then Content-Length bytes of body (or up to the close)."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            return data
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    while length is None or len(body) < int(length[1]):
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            break
        if not piece:
            break
        body += piece
    return head + b"\r\n\r\n" + body


def peak_rss(pid: int) -> int:
    """The process's resident high-water mark (Linux), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    high_water = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert high_water is not None, status
    return int(high_water[1]) * 1024


def warm_up(server: servers.DaphneProcess) -> None:
    """What every first request allocates once (Django's URL resolver, templates, CSRF)."""
    for _ in range(3):
        upload(server.port, "/accounts/login/", 64 * 1024)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_256_mib_post_to_login_is_refused_before_it_is_read(server, chunked) -> None:
    process = psutil.Process(server.process.pid)
    warm_up(server)
    rss_before, peak_before = process.memory_info().rss, peak_rss(process.pid)

    answer = upload(server.port, "/accounts/login/", HUGE, chunked=chunked)

    rss_after, peak_after = process.memory_info().rss, peak_rss(process.pid)
    print(
        f"\n{'chunked' if chunked else 'Content-Length'} 256 MiB POST /accounts/login/: "
        f"{answer.status} after {answer.sent / MiB:.1f} MiB sent, {answer.seconds:.2f} s; "
        f"server RSS {rss_before / MiB:.1f} -> {rss_after / MiB:.1f} MiB, "
        f"peak {peak_before / MiB:.1f} -> {peak_after / MiB:.1f} MiB"
    )
    assert answer.status == 413, answer
    assert answer.body == LIMIT_TEXT
    assert "content-type: text/plain; charset=utf-8" in answer.head.lower()
    assert answer.sent < HUGE  # the client was told to stop long before the end
    assert rss_after - rss_before < MAX_GROWTH
    assert peak_after - peak_before < MAX_GROWTH
    assert server.healthy()


def test_a_declared_length_over_the_cap_is_answered_before_any_body(server) -> None:
    """Nothing of the body is sent at all: the answer comes from the headers alone (an
    application behind a buffering server could not answer before the body is in)."""
    answer = upload(server.port, "/accounts/login/", HUGE, send_body=False)
    assert answer.status == 413
    assert answer.body == LIMIT_TEXT


def test_expect_100_continue_gets_413_instead_of_continue(server) -> None:
    answer = upload(server.port, "/accounts/login/", HUGE, expect_continue=True, send_body=False)
    assert answer.status == 413, answer.head  # the first thing the client hears
    assert "100 Continue" not in answer.head + answer.body


def test_a_body_within_the_cap_still_reaches_django(server) -> None:
    answer = upload(server.port, "/accounts/login/", 2 * MiB)  # exactly the cap
    assert answer.status == 403  # Django's CSRF check read it and answered
    assert "CSRF" in answer.body
    streamed = upload(server.port, "/accounts/login/", MiB, chunked=True)
    assert streamed.status == 403
