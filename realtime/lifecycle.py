"""Graceful stop under Daphne: on SIGTERM, sockets close with 1012 and come back elsewhere.

What Daphne 4.2 does by itself on SIGTERM (measured with e2e/test_multiprocess.py's
clients): Twisted stops the reactor and the process exits within half a second. No
close frame is sent: the browser sees the TCP connection drop (1006). (django/daphne#38,
"SIGTERM should gracefully close websockets", was closed in 2016 as done by Twisted; it
is not, in Daphne 4.2.3.) Daphne's shutdown trigger means to cancel every application
instance, but it raises KeyError whenever a connection has no application (see
`cancel_applications_reliably`), and then cancels nothing; either way no consumer runs
its disconnect handler, so the process's presence rows stay until other processes reap
them after CHAT_PRESENCE_TTL (ghosts), and in two runs out of three here the interpreter
then died with SIGSEGV while collecting the abandoned coroutines at exit. htmx does retry
after 1006.

What this module adds, installed by `install()` from site_config/asgi.py:

1. `allow_close_codes()`, a patch of Daphne's `WebSocketProtocol.serverClose`: any code a
   server may send reaches the client (1012 "service restart", 1013 "try again later",
   1003, 1008, 1009), where autobahn's `sendClose` raised for all but 1000 and 3000-4999.

2. `cancel_applications_reliably()`, a patch of Daphne's `Server.kill_all_applications`:
   Daphne's own shutdown trigger cancels every application instance, as it means to.

   Both patches refuse to start on other Daphne, autobahn or Twisted versions than the
   ones they were tested with (realtime/upstream.py), unless
   CHAT_ALLOW_UNVERIFIED_DAPHNE=true; their docstrings name the upstream issues.

3. A "before shutdown" trigger on Twisted's reactor (public API only: no patch). Daphne
   implements no ASGI lifespan protocol (it never sends `lifespan.shutdown`); the
   reactor's system events are the only shutdown hook it has, and "before" triggers run
   while the reactor still does I/O. Reactor shutdown waits for the Deferred a trigger
   returns. Ours:
     a. stops listening, so that reconnects go to another process (or are refused until
        this one is replaced) rather than to a process on its way out;
     b. closes every open room socket with 1012, which htmx retries at once (after a
        jittered delay of at most 0.5 s, static/js/chat.js);
     c. if it closed any, waits CHAT_SHUTDOWN_GRACE seconds (default 2) while the
        close handshakes finish and the clients reconnect, to another process if any;
     d. runs the shutdown hooks the apps registered (`on_shutdown`): the chat's deletes
        this process's presence rows (`rooms.presence.leave_server`) and announces "left"
        for each user who is not online in that room through another process;
     e. cancels the tasks still running (heartbeat, layer watchdog, room fan-out, the
        layer's readers) and lets them unwind before the reactor stops the loop.
   The grace period is what keeps a hand-over from flickering: while this process's
   rows are still fresh, a user who reconnects elsewhere is not announced as joining
   (presence.arrive sees them online already), and once the rows are gone they are not
   announced as leaving either (they are online elsewhere). Users who do not come back
   within the grace period are announced as leaving then, not a TTL later. A user who
   comes back later than that is seen to leave and join again.

   Daphne's own "before shutdown" trigger (`kill_all_applications`, made reliable by
   2.) runs in the same phase, right after ours has only scheduled its work, and cancels
   every consumer. So consumers never run their
   disconnect handlers here, however fast a client answers the close: the sockets are
   closed from outside (their ASGI `send` still works), and presence is settled in bulk
   by (d). A socket still in its handshake is not in `sockets.open_sockets`; it is
   dropped with the reactor (1006, which htmx retries too).

If the database fails during (d), the rows are left to expire after CHAT_PRESENCE_TTL,
as after a crash; if the channel layer fails, the other users miss the "left" lines and
see the right list on their next reconnect or page. The stop takes CHAT_SHUTDOWN_GRACE
plus a fraction of a second, and at most STEP_TIMEOUT more per step. Where Daphne is not
imported (other ASGI servers) `install()` does nothing; where it is imported but does
not serve (the unit tests, through INSTALLED_APPS) the trigger never fires.
"""

import asyncio
import functools
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

from realtime import upstream

# Under "rooms", whose INFO lines the LOGGING setting keeps (the root logs warnings only).
log = logging.getLogger(__name__)

CLOSE_SERVICE_RESTART = 1012
# Codes a server may send in a close frame (RFC 6455 7.4.1 and the IANA registry):
# 1004-1006 and 1015 are reserved, 1010 is for clients; 3000-4999 are for applications.
SERVER_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1012, 1013, 1014})
# Each step of the stop (closing, settling presence) gives up after this long.
STEP_TIMEOUT = 10.0

_installed = False
_shutdown_hooks: list[Callable[[], Awaitable[object]]] = []


def on_shutdown(hook: Callable[[], Awaitable[object]]) -> None:
    """Run `hook` when the process stops gracefully, once its sockets have had their
    grace period (the chat forgets their presence there): each hook gets STEP_TIMEOUT."""
    if hook not in _shutdown_hooks:
        _shutdown_hooks.append(hook)


def install() -> None:
    """Hook the graceful stop into Daphne's reactor, once; a no-op outside Daphne.

    Raises ImproperlyConfigured where a patch meets untested upstream versions
    (realtime/upstream.py)."""
    global _installed
    if _installed or "daphne.server" not in sys.modules:
        # daphne.server installs Twisted's asyncio reactor when imported; without it,
        # importing the reactor here would install the wrong one.
        return
    allow_close_codes()
    cancel_applications_reliably()
    from twisted.internet import reactor

    reactor.addSystemEventTrigger("before", "shutdown", _before_shutdown)
    _installed = True


# What `allow_close_codes` was written and tested against (realtime/upstream.py).
CLOSE_CODES_TESTED_VERSIONS = {"daphne": "4.2.3", "autobahn": "26.10.2"}


def allow_close_codes(protocol_class: type[Any] | None = None) -> None:
    """Let applications close WebSockets with any code a server may send.

    Works around crossbario/autobahn-python#1642 ("Allign websocket close codes with
    RFC", open; reported from Daphne, see also django/daphne#374): autobahn's public
    `sendClose` accepts only 1000 and 3000-4999, the codes a browser's `WebSocket.close()`
    may use (its design since crossbario/autobahn-python#31), and raises for the others.
    Daphne 4.2.3's `WebSocketProtocol.serverClose` (ws_protocol.py line 263), the one path
    of an application's `websocket.close` once the socket is open (`handle_reply`, line
    195), calls it. So a consumer closing with 1012 ("service restart"), 1013 ("try
    again later"), 1003, 1008 or 1009 crashed instead: the close became a 1011 a second
    later (from Daphne's application checker, with a traceback in the log and no
    disconnect handler run), and a close sent from outside the consumer
    (`sockets.close_all`) was silently dropped.

    This `serverClose` sends any code a server may send (RFC 6455 section 7.4,
    SERVER_CLOSE_CODES and 3000-4999) through autobahn's `sendCloseFrame`, which
    `sendClose` itself ends in (the same state change, without the check); any other
    code still goes to `sendClose`, which raises as before. Relies on: daphne's
    `handle_reply` calling `serverClose(code=...)`; autobahn's `sendCloseFrame(code)`
    ignoring a socket already closing or closed, as `sendClose` does.

    Patches Daphne's `WebSocketProtocol`, or `protocol_class` (a subclass, in the tests);
    a no-op where already done. Raises ImproperlyConfigured on untested versions
    (CLOSE_CODES_TESTED_VERSIONS) unless CHAT_ALLOW_UNVERIFIED_DAPHNE.
    """
    if protocol_class is None:
        from daphne.ws_protocol import WebSocketProtocol

        protocol_class = WebSocketProtocol
    if "_allows_all_close_codes" in vars(protocol_class):
        return
    upstream.require_tested(
        "allow_close_codes (realtime/lifecycle.py)", CLOSE_CODES_TESTED_VERSIONS
    )

    def serverClose(self: Any, code: int | None = None) -> None:
        code = 1000 if code is None else code
        if code in SERVER_CLOSE_CODES or 3000 <= code <= 4999:
            self.sendCloseFrame(code=code)
        else:
            self.sendClose(code=code)  # autobahn's own error for an invalid code

    # What it replaces stays reachable (inspect.unwrap), for the tests to show the bug.
    functools.update_wrapper(serverClose, protocol_class.serverClose, assigned=(), updated=())
    protocol_class.serverClose = serverClose
    protocol_class._allows_all_close_codes = True


# What `cancel_applications_reliably` was written and tested against (realtime/upstream.py).
CANCEL_TESTED_VERSIONS = {"daphne": "4.2.3", "twisted": "26.10.0"}


def cancel_applications_reliably(server_class: type[Any] | None = None) -> None:
    """Make Daphne's shutdown cancel every application instance, as it means to.

    No upstream issue found as of 2026-11 (the nearest, django/daphne#205 and its open
    PR django/daphne#213, are a KeyError in the same bookkeeping, from
    `create_application`). The behaviour, in Daphne 4.2.3: `Server.run` registers
    `kill_all_applications` as a "before shutdown" trigger (server.py line 149), which
    reads `details["application_instance"]` for every entry of `self.connections`
    (line 323). But entries exist without one: `protocol_connected` (line 192) adds a
    connection as soon as its HTTP request starts (http_protocol.py line 56), before its
    body is in and its application is created, and a request upgraded to a WebSocket is
    marked disconnected without ever getting one (http_protocol.py line 147), its entry
    staying until the next application check (server.py lines 312-313, up to a second
    later). So a shutdown within a second of any WebSocket handshake, or during any
    request's upload, raised KeyError: the trigger aborted and nothing was cancelled.

    This is the same method, skipping entries without an application. Relies on:
    daphne's `connections` (protocol -> dict with an optional "application_instance"
    asyncio future), its module `logger`, and the trigger being registered by name at
    `Server.run` (so patching the class method before the server runs is enough);
    twisted's `Deferred.fromFuture`, which the reactor's shutdown waits on.

    Patches Daphne's `Server`, or `server_class` (a subclass, in the tests); a no-op
    where already done. Raises ImproperlyConfigured on untested versions
    (CANCEL_TESTED_VERSIONS) unless CHAT_ALLOW_UNVERIFIED_DAPHNE.
    """
    from daphne import server as daphne_server
    from twisted.internet import defer

    if server_class is None:
        server_class = daphne_server.Server
    if "_cancels_applications_reliably" in vars(server_class):
        return
    upstream.require_tested(
        "cancel_applications_reliably (realtime/lifecycle.py)", CANCEL_TESTED_VERSIONS
    )

    def kill_all_applications(self: Any) -> Any:
        instances = (details.get("application_instance") for details in self.connections.values())
        pending = [instance for instance in instances if instance and not instance.done()]
        for instance in pending:
            instance.cancel()
        daphne_server.logger.info("Killed %i pending application instances", len(pending))
        waiting = defer.Deferred.fromFuture(asyncio.gather(*pending))
        waiting.addErrback(lambda _: None)
        return waiting

    functools.update_wrapper(
        kill_all_applications, server_class.kill_all_applications, assigned=(), updated=()
    )
    server_class.kill_all_applications = kill_all_applications
    server_class._cancels_applications_reliably = True


def _before_shutdown() -> Any:
    """The reactor's "before shutdown" trigger: returns a Deferred the reactor waits for."""
    from twisted.internet import defer

    _stop_listening()
    loop = asyncio.get_event_loop()  # the reactor's loop: this runs inside it
    return defer.Deferred.fromFuture(loop.create_task(graceful_stop(), name="graceful-stop"))


def _stop_listening() -> None:
    from twisted.internet import reactor
    from twisted.internet.interfaces import IListeningPort

    for reader in reactor.getReaders():
        if IListeningPort.providedBy(reader):
            reader.stopListening()


async def graceful_stop(grace: float | None = None) -> None:
    """Close this process's sockets with 1012, give them `grace` seconds (default
    settings.CHAT_SHUTDOWN_GRACE) to reconnect elsewhere, then run the shutdown hooks.
    Never raises: the process is stopping anyway."""
    if grace is None:
        grace = settings.CHAT_SHUTDOWN_GRACE
    closed = 0
    try:
        closed = await asyncio.wait_for(_close_sockets(), STEP_TIMEOUT)
    except Exception:
        log.exception("stopping: could not close the sockets")
    if closed:
        # Also lets the close frames go out and the clients' replies come back.
        grace = max(grace, 0.5)
        log.info("stopping: closed %d sockets; grace period %ss", closed, grace)
        await asyncio.sleep(grace)
    for hook in _shutdown_hooks:
        try:
            await asyncio.wait_for(hook(), STEP_TIMEOUT)
        except Exception:
            log.exception("stopping: %s failed", getattr(hook, "__qualname__", hook))
    await _cancel_remaining_tasks()


async def _close_sockets() -> int:
    from realtime import sockets

    for socket in list(sockets.open_sockets):
        user, room = getattr(socket, "user", "?"), getattr(socket, "room", "?")
        log.info("stopping: closing %s's socket in %s (code %d)", user, room, CLOSE_SERVICE_RESTART)
    return await sockets.close_all(CLOSE_SERVICE_RESTART)


async def _cancel_remaining_tasks() -> None:
    """Cancel what still runs on the loop (the presence heartbeat, the layer watchdog, room
    fan-out, the layer's readers) and let it unwind, rather than abandon it to the
    interpreter's exit (where Daphne 4.2 sometimes died with SIGSEGV collecting it)."""
    current = asyncio.current_task()
    remaining = [task for task in asyncio.all_tasks() if task is not current]
    for task in remaining:
        task.cancel()
    if remaining:
        await asyncio.wait(remaining, timeout=1)
