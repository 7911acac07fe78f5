import json
import re
import secrets
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import QueryDict

from rooms.models import validate_room_slug

PM_COMMAND = re.compile(r"\A/pm(?:\s+(?P<username>\S+))?(?:\s+(?P<text>.*))?\Z", re.DOTALL)
MAX_LENGTH = settings.CHAT_MESSAGE_MAX_LENGTH


# ROOM_SLUG_PATTERN for the browser's `pattern` attribute, which is compiled with the `v`
# flag: there a "-" inside a class must be escaped, or the browser ignores the pattern.
# It also lets through what RoomNameForm normalises: capitals and spaces around the name.
ROOM_NAME_INPUT_PATTERN = r"\s*[A-Za-z0-9](?:[A-Za-z0-9\-]{0,48}[A-Za-z0-9])?\s*"


class RoomNameForm(forms.Form):
    name = forms.CharField(
        label="Room name",
        max_length=50,
        validators=[validate_room_slug],
        widget=forms.TextInput(
            attrs={
                "placeholder": "e.g. general",
                "pattern": ROOM_NAME_INPUT_PATTERN,
                "title": validate_room_slug.message,  # what the browser says on a mismatch
            }
        ),
    )

    private = forms.BooleanField(
        label="Members only",
        required=False,
        help_text="Create a new room that only people you invite can find or enter "
        "(the name must not be in use).",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Normalise before validation, so "General " opens "general".
        name = self.data.get("name")
        if self.is_bound and isinstance(name, str):
            # Bound data is request.POST (a QueryDict) or a dict: both copy, mutable.
            data = cast("QueryDict | dict[str, Any]", self.data).copy()
            data["name"] = name.strip().lower()
            self.data = data


class MessageTextField(forms.CharField):
    """A message's text: stripped at both ends (CharField), its line breaks kept, as "\n"
    however they came (a browser posts a textarea's as "\r\n"), so that the length limit
    counts a line break once, as the textarea's maxlength does."""

    def to_python(self, value: Any) -> str | None:
        text = super().to_python(value)
        return None if text is None else text.replace("\r\n", "\n").replace("\r", "\n")


def new_send_token() -> str:
    """A composer's send id (ComposerForm.token): 32 hex digits, as chat.js makes them."""
    return secrets.token_hex(16)


class ComposerForm(forms.Form):
    """What a user types into a room: a message, or `/pm <username> <text>`.

    Valid data has `body` (the text to store) and `recipient` (a User for a private
    message, None for a room message).
    """

    # The largest file the composer's form may carry (rooms/attachments.py checks it):
    # its file input says so (data-max-bytes), so that a script can refuse a bigger one
    # before sending it, where the server would cut the upload off with a bare 413.
    max_file_bytes = settings.CHAT_ATTACHMENT_MAX_BYTES

    body = MessageTextField(
        label="Message",
        max_length=MAX_LENGTH,
        error_messages={
            "required": "Write something first: an empty message was not sent.",
            "max_length": f"That message is too long: the limit is {MAX_LENGTH:,} characters "
            "(it has %(show_value)d).",
        },
        widget=forms.Textarea(attrs={"rows": 2, "autocomplete": "off", "placeholder": "Message"}),
    )

    # The message this one answers (the composer's reply, `?reply=`): an id of the same
    # room's, checked where the room is known (services.submit_composer).
    reply_to = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=2**63 - 1,
        widget=forms.HiddenInput,
        error_messages={"invalid": "That reply does not point at a message: cancel it."},
    )

    # The send's id: a composer sent again after its answer was lost (the socket dropped,
    # the server stopping) is stored once (rooms/services.py). A page's composer comes
    # with one; the emptied composer a socket sends back has none (it is the same after
    # every send) and static/js/chat.js makes one for each send from it.
    token = forms.RegexField(
        regex=r"\A[0-9a-f]{32}\Z",
        required=False,
        initial=new_send_token,
        widget=forms.HiddenInput,
        error_messages={"invalid": "This composer's send id is not valid: reload the page."},
    )

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        body = cleaned.get("body")
        cleaned["recipient"] = None
        if body is None:
            return cleaned
        command = PM_COMMAND.match(body)
        if command is None:  # an ordinary message (also "/pmx", which is not the command)
            return cleaned
        username, text = command["username"], (command["text"] or "").strip()
        if not username or not text:
            raise forms.ValidationError(
                "To send a private message, write /pm <username> <message>.", code="pm_usage"
            )
        recipient = get_user_model().objects.filter(username=username, is_active=True).first()
        if recipient is None:
            raise forms.ValidationError(
                "There is no user named “%(username)s”: the private message was not sent.",
                code="pm_unknown_user",
                params={"username": username},
            )
        cleaned["recipient"] = recipient
        cleaned["body"] = text
        return cleaned


class FrameError(ValueError):
    """A WebSocket frame that is not the composer's JSON; its text is shown to the sender."""


def decode_composer_frame(text: str) -> dict[str, str]:
    """Turn a ws-send frame into form data, or raise FrameError saying what is wrong.

    htmx sends `{"body": "...", "token": "...", "csrfmiddlewaretoken": "...", "HEADERS":
    {...}}`. Only `body`, `reply_to` and `token` matter, and each must be a string: a
    number or a list is a client bug, not something to coerce.
    """
    return composer_data(parse_frame(text))


# The field of the room page's typing signal (room.html#typing-signal: the page sends
# `{"typing": "1", "HEADERS": ...}` as someone types, at most every few seconds).
TYPING_FIELD = "typing"


def parse_frame(text: str) -> dict[str, Any]:
    """A ws-send frame's JSON object, or FrameError saying what is wrong."""
    try:
        data = json.loads(text)
    except ValueError:
        raise FrameError("That message could not be read (it was not JSON).") from None
    except RecursionError:  # "[[[[..." past ~1000 levels: json raises this, not ValueError
        raise FrameError("That message could not be read (it was nested too deeply).") from None
    if not isinstance(data, dict):
        raise FrameError("That message could not be read (expected a JSON object).")
    return data


def is_typing_frame(data: dict[str, Any]) -> bool:
    """The typing signal, not a message: it carries the typing field and no text."""
    return TYPING_FIELD in data and "body" not in data


def composer_data(data: dict[str, Any]) -> dict[str, str]:
    """A parsed frame as the composer's form data, or FrameError (decode_composer_frame)."""
    body = data.get("body")
    if body is None:
        raise FrameError("That message had no text (the “body” field is missing).")
    if not isinstance(body, str):
        raise FrameError("That message could not be read (“body” must be text).")
    try:  # JSON may escape half a surrogate pair ("\ud83d"), which UTF-8 cannot store
        body.encode("utf-8")
    except UnicodeEncodeError:
        raise FrameError("That message could not be read (it was not valid text).") from None
    fields = {"body": body}
    for name in ("reply_to", "token"):
        value = data.get(name, "")
        if not isinstance(value, str):
            raise FrameError(f"That message could not be read (“{name}” must be text).")
        fields[name] = value
    return fields


class MessageEditForm(forms.Form):
    """A message's new text: validated as the composer's is (no /pm: it is just text)."""

    body = ComposerForm.base_fields["body"]


class PrivateMessageForm(forms.Form):
    """The composer of a conversation page: the text alone, the recipient is the page's."""

    body = ComposerForm.base_fields["body"]
    token = ComposerForm.base_fields["token"]


class InviteForm(forms.Form):
    username = forms.CharField(label="Invite", max_length=150)

    def clean_username(self) -> Any:
        username = self.cleaned_data["username"].strip()
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise forms.ValidationError(
                "There is no user named “%(username)s”.", params={"username": username}
            )
        return user
