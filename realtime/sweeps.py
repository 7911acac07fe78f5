"""Daphne's sweeps over every connection, a slice per loop turn instead of all in one.

Daphne's `Server` checks every connection on two timers:
- `application_checker`, every second: reap the application instances that finished
  (logging their exceptions), cancel those that outlived `application_close_timeout`
  after their connection closed, and forget a closed connection whose application ended;
- `timeout_checker`, every two seconds: each protocol's `check_timeouts` (a socket that
  outlived `websocket_timeout` or never finished its handshake is closed, and one that
  was quiet for `ping_interval` is pinged).

Each sweep is one reactor turn over all connections (daphne/server.py lines 268 and 333),
and nothing else runs meanwhile: no delivery, no handshake, no /healthz. With 10,000
sockets held, `application_checker` took 12-39 ms every second and `timeout_checker` 18-65
ms every two seconds (the most when it pings every socket that connected in the same two
seconds), and /healthz took up to 120 ms (bench/RESULTS.md, "Issue 16: /healthz while
10,000 sockets are held").

`install()` makes each sweep walk the connections there were when it started, SLICE at a
time, SLICE_PAUSE apart; the next sweep is scheduled when the last slice is done, as far
apart as Daphne's. Each connection gets exactly Daphne's checks (`_check_application` is
the body of Daphne's loop), at most one sweep later than before (0.8 s at 10,000); one
that went away meanwhile is skipped. The pause is for the pings: the sockets that
connected in the same two seconds are due together (1,700 of them after a storm of
10,000), and their pongs came back together, each read by a callback of its own, all
queued ahead of whatever became ready after them: /healthz waited 77 ms behind them.

Written and tested against TESTED_VERSIONS (realtime/upstream.py); relies on
`Server.connections` (protocol -> details with "application_instance" and
"disconnected"), `application_close_timeout`, `stop()`, and the protocols'
`check_timeouts()` and `handle_exception()`.
"""

import asyncio
import concurrent.futures
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from realtime import upstream

log = logging.getLogger("daphne.server")  # (Daphne's own messages, under Daphne's logger)

# What `install` was written and tested against (realtime/upstream.py).
TESTED_VERSIONS = {"daphne": "4.2.3"}

# Connections checked per reactor turn (about 2-8 ms of a turn; pings are the dearest),
# and the pause between turns, which spreads the pinged clients' pongs out.
SLICE = 256
SLICE_PAUSE = 0.02  # seconds: 10,000 connections swept in 0.8 s
APPLICATION_EVERY = 1.0  # seconds between application sweeps (Daphne's)
TIMEOUTS_EVERY = 2.0  # seconds between timeout sweeps (Daphne's)

CallLater = Callable[..., Any]  # reactor.callLater(delay, function, *args)


def _check_application(server: Any, protocol: Any) -> None:
    """Daphne's `application_checker` for one connection (daphne/server.py line 273)."""
    details = server.connections.get(protocol)
    if details is None:
        return  # gone since the sweep began
    disconnected = details.get("disconnected", None)
    application_instance = details.get("application_instance", None)
    # A closed connection whose application takes too long to shut down is cancelled.
    overdue = disconnected and time.time() - disconnected > server.application_close_timeout
    if overdue and application_instance and not application_instance.done():
        log.warning(
            "Application instance %r for connection %s took too long to shut down and was killed.",
            application_instance,
            repr(protocol),
        )
        application_instance.cancel()
    # A finished application is reaped, its exception logged.
    if application_instance and application_instance.done():
        try:
            exception = application_instance.exception()
        except (concurrent.futures.CancelledError, asyncio.CancelledError):
            pass  # cancelled: nothing to report
        else:
            if exception:
                if isinstance(exception, KeyboardInterrupt):
                    server.stop()  # (the protocol asks the server to exit: tests)
                else:
                    log.error("Exception inside application: %s", exception, exc_info=exception)
                    if not disconnected:
                        protocol.handle_exception(exception)
        del details["application_instance"]
        application_instance = None
    # A closed connection whose application is over is forgotten.
    if not application_instance and disconnected:
        del server.connections[protocol]


def _check_timeouts(server: Any, protocol: Any) -> None:
    """Daphne's `timeout_checker` for one connection (daphne/server.py line 338)."""
    if protocol in server.connections:
        protocol.check_timeouts()


def sweep(
    server: Any,
    check: Callable[[Any, Any], None],
    every: float,
    call_later: CallLater,
    protocols: list[Any] | None = None,
    start: int = 0,
) -> None:
    """Check the SLICE of `protocols` from `start` (at first: every connection now), then
    the rest on the next turns; `every` seconds after the last slice, sweep again."""
    if protocols is None:
        protocols = list(server.connections)
    end = start + SLICE
    for protocol in protocols[start:end]:
        check(server, protocol)
    if end < len(protocols):
        call_later(SLICE_PAUSE, sweep, server, check, every, call_later, protocols, end)
    else:
        call_later(every, sweep, server, check, every, call_later)


def application_checker(server: Any) -> None:
    """Daphne's `Server.application_checker`, in slices."""
    from twisted.internet import reactor

    sweep(server, _check_application, APPLICATION_EVERY, reactor.callLater)


def timeout_checker(server: Any) -> None:
    """Daphne's `Server.timeout_checker`, in slices."""
    from twisted.internet import reactor

    sweep(server, _check_timeouts, TIMEOUTS_EVERY, reactor.callLater)


_installed = False


def install() -> None:
    """Under Daphne (a no-op elsewhere), once, before its server runs (Daphne imports the
    application first). Raises ImproperlyConfigured on untested upstream versions
    (realtime/upstream.py)."""
    global _installed
    if _installed or "daphne.server" not in sys.modules:
        return
    upstream.require_tested("realtime/sweeps.py", TESTED_VERSIONS)
    from daphne.server import Server

    Server.application_checker = application_checker
    Server.timeout_checker = timeout_checker
    _installed = True
