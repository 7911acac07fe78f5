"""realtime/writes.py on a real socket pair and a real (never run) reactor."""

import contextlib
import socket
from collections.abc import Iterator

import pytest
from twisted.internet import abstract, tcp
from twisted.internet.protocol import Protocol
from twisted.internet.selectreactor import SelectReactor

from realtime import writes
from realtime.tests.versions import another_version_tested, assert_allowed, assert_refused, keep


@pytest.fixture
def connection(monkeypatch) -> Iterator[tuple[tcp.Connection, socket.socket, SelectReactor]]:
    monkeypatch.setattr(tcp.Connection, "write", writes.write_now)
    ours, peer = socket.socketpair()
    peer.settimeout(2)
    reactor = SelectReactor()
    conn = tcp.Connection(ours, Protocol(), reactor)
    conn.connected = True
    yield conn, peer, reactor
    reactor.removeAll()
    ours.close()
    peer.close()


def test_a_frame_reaches_the_socket_without_a_reactor_turn(connection) -> None:
    conn, peer, reactor = connection
    conn.write(b"a frame")
    assert peer.recv(100) == b"a frame"  # the reactor never ran
    assert conn not in reactor.getWriters()  # and the socket was never registered


def test_upstream_holds_a_frame_for_a_reactor_turn(connection, monkeypatch) -> None:
    """What writes.py works around (twisted/twisted#5303): Twisted's own write."""
    conn, peer, reactor = connection
    monkeypatch.setattr(tcp.Connection, "write", abstract.FileDescriptor.write)
    conn.write(b"a frame")
    assert conn in reactor.getWriters()  # registered with the reactor (epoll_ctl)...
    peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        peer.recv(100)  # ...and nothing sent
    conn.doWrite()  # the reactor's next turn
    peer.settimeout(2)
    assert peer.recv(100) == b"a frame"


def test_what_the_kernel_refuses_waits_in_order_for_the_reactor(connection) -> None:
    conn, peer, reactor = connection
    big = bytes(range(256)) * (32 * 1024)  # 8 MiB: more than a socket buffer takes
    conn.write(big)
    conn.write(b"and then this")  # must not overtake what is buffered
    assert conn in reactor.getWriters()
    received = bytearray()
    peer.setblocking(False)
    while len(received) < len(big) + len(b"and then this"):
        conn.doWrite()  # what the reactor does when the socket is writable
        with contextlib.suppress(BlockingIOError):  # nothing sent this time
            received += peer.recv(1 << 20)
    assert bytes(received) == big + b"and then this"
    assert conn not in reactor.getWriters()


def test_a_closing_connection_keeps_twisteds_own_path(connection) -> None:
    conn, peer, reactor = connection
    conn.disconnecting = True  # loseConnection() was called: Twisted flushes, then closes
    conn.write(b"last words")
    assert conn in reactor.getWriters()
    conn.doWrite()
    assert peer.recv(100) == b"last words"


def test_an_untested_twisted_is_refused(monkeypatch, settings) -> None:
    settings.CHAT_ALLOW_UNVERIFIED_DAPHNE = False
    another_version_tested(monkeypatch, writes, "TESTED_VERSIONS", "twisted")
    keep(monkeypatch, tcp.Connection, "write")
    upstream_write = tcp.Connection.write
    assert_refused(writes.install, "realtime/writes.py", "twisted")
    assert tcp.Connection.write is upstream_write  # not patched


def test_the_operator_may_allow_an_untested_twisted(monkeypatch, settings, caplog) -> None:
    settings.CHAT_ALLOW_UNVERIFIED_DAPHNE = True
    another_version_tested(monkeypatch, writes, "TESTED_VERSIONS", "twisted")
    keep(monkeypatch, tcp.Connection, "write")
    assert_allowed(writes.install, "realtime/writes.py", "twisted", caplog)
    assert tcp.Connection.write is writes.write_now
