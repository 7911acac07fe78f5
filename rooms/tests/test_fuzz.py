"""Thousands of random frames thrown at one open room socket (property-based).

Whatever arrives, the socket must answer with one of three things: the composer (reset
after a send, or showing an error), the fragment of what was sent (after a reset), or a
clean close with the code that frame calls for. It must never crash, and it must never
store anything but a valid, stripped, non-empty body of at most 4,000 characters.

One socket serves every example of a test (connecting per example would cost more than
the frames); it is reopened when a frame closes it.
"""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from rooms import services
from rooms.consumers import MAX_FRAME_BYTES
from rooms.forms import TYPING_FIELD
from rooms.models import Connection, Message, PrivateMessage, Room
from rooms.tests import fragments

pytestmark = pytest.mark.django_db(transaction=True)

MAX_BODY = settings.CHAT_MESSAGE_MAX_LENGTH

fuzz_settings = hypothesis_settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# The oracle: what must become of a frame, judged without the application's code ---------


NOT_JSON = "That message could not be read (it was not JSON)."


def must_become(frame: str | bytes) -> str:
    """The fate the socket must give `frame`: "close 1003", "close 1009", "refused",
    "posted", "either" for a /pm command (whose fate depends on whom it names), or
    "typing" for the composer's typing signal (no answer; a notice to the room, maybe)."""
    if isinstance(frame, bytes):
        return "close 1003"
    if len(frame) > MAX_FRAME_BYTES:
        return "close 1009"
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError):
        return "refused"
    if isinstance(data, dict) and TYPING_FIELD in data and "body" not in data:
        return "typing"
    if not isinstance(data, dict) or not isinstance(data.get("body"), str):
        return "refused"
    try:
        data["body"].encode("utf-8")  # no unpaired surrogates
    except UnicodeEncodeError:
        return "refused"
    text = as_stored(data["body"])
    if not text or len(text) > MAX_BODY or "\x00" in text:
        return "refused"
    if text.startswith("/pm") and (len(text) == 3 or text[3].isspace()):
        return "either"
    return "posted"


def as_stored(body: str) -> str:
    """Stripped, with every line break as "\n" (a textarea's "\r\n" too)."""
    return body.strip().replace("\r\n", "\n").replace("\r", "\n")


def body_of(frame: str | bytes) -> str:
    return as_stored(json.loads(frame)["body"])


# The socket under fire ----------------------------------------------------------------


class Target:
    """alice's socket in the lobby, and what she has had stored so far."""

    def __init__(self, connect: Any, user: Any) -> None:
        self.connect = connect
        self.user = user
        self.socket: Any = None
        self.last_message_id = 0
        self.last_pm_id = 0

    async def open(self) -> None:
        # A socket that crashed never left: forget it, so that this one joins afresh.
        await database_sync_to_async(Connection.objects.filter(user=self.user).delete)()
        self.socket = await self.connect(self.user, "lobby")
        await self.socket.expect_presence(self.user.username, "joined")

    async def reopen(self) -> None:
        await self.socket.disconnect(1000)  # re-raises if the consumer crashed
        await self.check_nothing_new()
        await self.open()

    async def throw(self, frame: str | bytes) -> None:
        """Send one frame and check the answer. That a refused frame stored nothing is
        checked by the next accepted one (which must find exactly one new row), or at
        the end of the example (`throw_all`)."""
        fate = must_become(frame)
        if isinstance(frame, bytes):
            await self.socket.send_bytes(frame)
        else:
            await self.socket.send_text(frame)
        if fate == "typing":
            await self.typed()
            return
        output = await self.socket.receive_output()

        if output["type"] == "websocket.close":
            assert fate == f"close {output.get('code')}", (fate, output)
            await self.reopen()
            return
        assert output["type"] == "websocket.send", output
        first = output["text"]
        assert fate in ("refused", "posted", "either"), (fate, first[:200])

        if fragments.is_composer(first) and fragments.composer_errors(first):
            assert fate in ("refused", "either"), (frame[:200], first[:500])
            return
        # Accepted: the composer reset, and the fragment of what was sent (either order).
        second = await self.socket.receive()
        composer, fragment = (first, second) if fragments.is_composer(first) else (second, first)
        assert fragments.is_composer(composer) and fragments.composer_errors(composer) == []
        assert fragments.composer_value(composer) == ""
        assert fate in ("posted", "either"), (frame[:200], composer[:300])
        if fragments.is_message_fragment(fragment):
            await self.check_posted(body_of(frame), fragment)
        else:
            assert fate == "either", fragment[:300]
            await self.check_private(fragment)

    async def typed(self) -> None:
        """A typing signal has no answer; its notice goes to the room (this socket too),
        unless the throttle drops it. So: a frame that is always answered ("ping", not
        JSON), and before its answer nothing but that notice."""
        await self.socket.send_text("ping")
        while True:
            html = await self.socket.receive()
            if fragments.is_composer(html):
                assert fragments.composer_errors(html) == [NOT_JSON], html[:300]
                return
            assert "typing-notice" in html, html[:300]

    async def throw_all(self, frames: list[str | bytes]) -> None:
        if not self.socket.alive:
            # An earlier example crashed it (and failed): start this one on a fresh socket,
            # so that Hypothesis blames the frames that really do it. The crash is still
            # reported when the dead socket is disconnected at the end of the test.
            await self.open()
        for frame in frames:
            await self.throw(frame)
        await self.check_nothing_new()
        # And nothing else was pushed: a stray frame would be a reply to no frame.
        assert self.socket.communicator.output_queue.empty()

    async def check_posted(self, body: str, fragment: str) -> None:
        new = [
            message
            async for message in Message.objects.filter(id__gt=self.last_message_id).order_by("id")
        ]
        assert len(new) == 1, [m.body[:40] for m in new]
        (message,) = new
        assert message.body == body
        assert fragments.message_ids(fragment) == [message.pk]
        self.last_message_id = message.pk

    async def check_private(self, fragment: str) -> None:
        new = [
            pm async for pm in PrivateMessage.objects.filter(id__gt=self.last_pm_id).order_by("id")
        ]
        assert len(new) == 1
        (pm,) = new
        assert pm.body and pm.body == pm.body.strip() and len(pm.body) <= MAX_BODY
        assert [a.id for a in fragments.private_messages_in(fragment)] == [f"pm-{pm.pk}"]
        self.last_pm_id = pm.pk

    async def check_nothing_new(self) -> None:
        def anything_new() -> bool:
            return (
                Message.objects.filter(id__gt=self.last_message_id).exists()
                or PrivateMessage.objects.filter(id__gt=self.last_pm_id).exists()
            )

        assert not await database_sync_to_async(anything_new)()


@pytest.fixture
async def target(connect, alice, bob, monkeypatch, settings) -> Target:
    # Flood control is tested elsewhere; here every valid frame must get through.
    monkeypatch.setattr(services.rate_limiter, "burst", 10**9)
    settings.CHAT_SOCKET_FRAME_BURST = 10**9
    await database_sync_to_async(Room.objects.create)(slug="lobby")
    target = Target(connect, alice)
    await target.open()
    return target


@pytest.fixture(autouse=True)
def every_stored_body_is_valid() -> Iterator[None]:
    """After each test, whatever was stored is a valid body (the whole tables, once more)."""
    yield
    bodies = [
        *Message.objects.values_list("body", flat=True),
        *PrivateMessage.objects.values_list("body", flat=True),
    ]
    for body in bodies:
        assert body and body == body.strip() and len(body) <= MAX_BODY and "\x00" not in body


# Strategies -----------------------------------------------------------------------------

HOSTILE = [
    "<script>alert(1)</script>",
    '<div id="online-users" hx-swap-oob="true">x</div>',
    '<form id="composer" hx-swap-oob="true">',
    "<img src=x onerror=alert(1)>",
    "{{ 7|add:7 }}{% debug %}",
    "&amp;&lt;",
    "\x00",
    "\ud800",
    "\udfff",
    "\u200b",
    "\u2028",
    "\N{PILE OF POO}",
    "\u0301",
    " ",
    "\t\n\r ",
    "\xa0",
    '"',
    "\\",
    "/pm",
]
pieces = st.one_of(st.text(max_size=20), st.sampled_from(HOSTILE))
texts = st.lists(pieces, max_size=6).map("".join)
near_the_limit = st.builds(
    lambda n, pad: pad + "y" * n + pad,
    st.integers(MAX_BODY - 3, MAX_BODY + 3),
    st.sampled_from(["", " ", "\n\t "]),
)
pm_commands = st.builds(
    lambda sep, who, text: f"/pm{sep}{who}{sep}{text}",
    st.sampled_from([" ", "  ", "\n", ""]),
    st.sampled_from(["alice", "bob", "nobody", "<b>", ""]),
    texts,
)
bodies = st.one_of(texts, near_the_limit, pm_commands)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)
HTMX_HEADERS = {"HX-Request": "true", "HX-Trigger": "composer", "HX-Target": "composer"}


@st.composite
def composer_frames(draw: Any) -> str:
    """A dict like the composer's: a body (usually text, sometimes another type, now and
    then missing), htmx's HEADERS or not, and perhaps an extra field."""
    data: dict[str, Any] = {"body": draw(st.one_of(bodies, bodies, bodies, json_values))}
    if draw(st.booleans()):
        data["HEADERS"] = HTMX_HEADERS
    extra = draw(st.sampled_from(["", "", "", "body", "csrfmiddlewaretoken", "HEADERS", "x"]))
    if extra:  # may replace the body (or the headers) with junk
        data[extra] = draw(json_scalars)
    return json.dumps(data, ensure_ascii=draw(st.booleans()))


deeply_nested = st.builds(
    lambda depth, opener, closed: opener * depth + ("]" * depth if closed else ""),
    st.integers(500, 5000),
    st.sampled_from(["[", '{"a":', '{"body":[']),
    st.booleans(),
)
oversize = st.builds(
    lambda n, as_json: json.dumps({"body": "z" * (n - 12)}) if as_json else "z" * n,
    st.integers(MAX_FRAME_BYTES - 1, MAX_FRAME_BYTES + 64),
    st.booleans(),
)


# The properties -------------------------------------------------------------------------


@hypothesis_settings(fuzz_settings, max_examples=200)
@given(frames=st.lists(st.one_of(texts, bodies, deeply_nested), min_size=1, max_size=8))
async def test_random_text_frames_get_an_error_or_are_posted_never_a_crash(target, frames):
    await target.throw_all(frames)


@hypothesis_settings(fuzz_settings, max_examples=200)
@given(frames=st.lists(json_values.map(json.dumps), min_size=1, max_size=8))
# What hypothesis found once: a typing signal (no answer; throttled after the first).
@example(frames=['{"typing": null}', '{"typing": "1"}', '{"typing": [1], "x": 2}'])
async def test_random_json_values_get_an_error_never_a_crash(target, frames):
    await target.throw_all(frames)


@hypothesis_settings(fuzz_settings, max_examples=200)
@given(frames=st.lists(composer_frames(), min_size=1, max_size=8))
async def test_random_composer_frames_store_only_valid_bodies(target, frames):
    await target.throw_all(frames)


@hypothesis_settings(fuzz_settings, max_examples=40)
@given(frames=st.lists(st.one_of(st.binary(max_size=64), oversize, composer_frames()), max_size=4))
async def test_binary_and_oversize_frames_close_cleanly_and_the_room_goes_on(target, frames):
    # Whatever happened, the socket (reopened if need be) still works.
    await target.throw_all([*frames, json.dumps({"body": "still standing"})])
