import re

import pytest

from rooms.forms import ComposerForm, FrameError, RoomNameForm, decode_composer_frame

pytestmark = pytest.mark.django_db

EMPTY = "Write something first: an empty message was not sent."
PM_USAGE = "To send a private message, write /pm <username> <message>."


def errors(form: ComposerForm | RoomNameForm) -> list[str]:
    return [str(message) for messages in form.errors.values() for message in messages]


# ComposerForm ----------------------------------------------------------------------------


def test_composer_accepts_a_message_and_strips_it() -> None:
    form = ComposerForm({"body": "  hello there \n"})
    assert form.is_valid(), form.errors
    assert form.cleaned_data == {
        "body": "hello there",
        "recipient": None,
        "reply_to": None,
        "token": "",
    }


@pytest.mark.parametrize("body", ["", "   ", "\n\t  \r\n"], ids=["empty", "spaces", "newlines"])
def test_composer_refuses_empty_and_whitespace_only_messages(body: str) -> None:
    form = ComposerForm({"body": body})
    assert not form.is_valid()
    assert errors(form) == [EMPTY]


def test_composer_refuses_a_missing_body() -> None:
    form = ComposerForm({})
    assert not form.is_valid()
    assert errors(form) == [EMPTY]


def test_composer_accepts_exactly_4000_characters() -> None:
    assert ComposerForm({"body": "x" * 4000}).is_valid()


def test_composer_refuses_more_than_4000_characters_and_says_how_many() -> None:
    form = ComposerForm({"body": "x" * 4001})
    assert not form.is_valid()
    assert errors(form) == [
        "That message is too long: the limit is 4,000 characters (it has 4001)."
    ]


def test_composer_measures_length_after_stripping() -> None:
    assert ComposerForm({"body": "  " + "x" * 4000 + "  "}).is_valid()


def test_composer_refuses_nul_characters() -> None:
    # PostgreSQL cannot store NUL in text; the form must stop it before the database.
    form = ComposerForm({"body": "a\x00b"})
    assert not form.is_valid()
    assert errors(form) == ["Null characters are not allowed."]


def test_composer_keeps_line_breaks_inside_a_message_as_newlines() -> None:
    # The composer is a textarea: a browser posts its line breaks as CRLF, htmx as LF.
    form = ComposerForm({"body": "\n  first line\r\n\r\n  indented\rlast \r\n"})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["body"] == "first line\n\n  indented\nlast"


def test_composer_counts_a_line_break_once_as_the_textarea_does() -> None:
    body = "x\r\n" * 1999 + "x"  # 5,999 characters sent, 3,999 once the breaks are "\n"
    form = ComposerForm({"body": body})
    assert form.is_valid(), form.errors
    assert len(form.cleaned_data["body"]) == 3999
    assert not ComposerForm({"body": "x\r\n" * 2000 + "x"}).is_valid()  # 4,001


def test_composer_field_is_a_textarea_with_the_length_limit() -> None:
    html = str(ComposerForm()["body"])
    assert html.startswith("<textarea") and 'maxlength="4000"' in html


def test_pm_command_names_a_recipient_and_keeps_only_the_text(bob) -> None:
    form = ComposerForm({"body": "/pm bob  see you at\nnoon "})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["body"] == "see you at\nnoon"
    assert form.cleaned_data["recipient"] == bob


def test_pm_to_an_unknown_user_is_refused_by_name() -> None:
    form = ComposerForm({"body": "/pm nobody hello"})
    assert not form.is_valid()
    assert errors(form) == ["There is no user named “nobody”: the private message was not sent."]


def test_pm_to_an_inactive_user_is_refused_like_an_unknown_one(make_user) -> None:
    make_user("gone", is_active=False)
    form = ComposerForm({"body": "/pm gone hello"})
    assert not form.is_valid()
    assert errors(form) == ["There is no user named “gone”: the private message was not sent."]


@pytest.mark.parametrize("body", ["/pm", "/pm   ", "/pm bob", "/pm bob    "])
def test_pm_without_a_recipient_or_text_explains_the_command(bob, body: str) -> None:
    form = ComposerForm({"body": body})
    assert not form.is_valid()
    assert errors(form) == [PM_USAGE]


@pytest.mark.parametrize("body", ["/pmx hello", "/PM bob hi", "say /pm bob hi", "/ pm bob hi"])
def test_text_that_only_looks_like_the_pm_command_is_an_ordinary_message(bob, body: str) -> None:
    form = ComposerForm({"body": body})
    assert form.is_valid(), form.errors
    assert form.cleaned_data == {"body": body, "recipient": None, "reply_to": None, "token": ""}


def test_pm_text_over_the_limit_is_refused(bob) -> None:
    form = ComposerForm({"body": "/pm bob " + "x" * 4000})
    assert not form.is_valid()
    assert "That message is too long" in errors(form)[0]


# decode_composer_frame -------------------------------------------------------------------


def test_frame_decoding_keeps_only_the_body_the_reply_and_the_send_id() -> None:
    frame = '{"body": "hi", "csrfmiddlewaretoken": "t", "HEADERS": {"HX-Request": "true"}}'
    assert decode_composer_frame(frame) == {"body": "hi", "reply_to": "", "token": ""}
    frame = '{"body": "hi", "reply_to": "12", "token": "ab12", "extra": 1}'
    assert decode_composer_frame(frame) == {"body": "hi", "reply_to": "12", "token": "ab12"}


@pytest.mark.parametrize("token", ["", "0" * 32, "0123456789abcdef" * 2])
def test_a_send_id_is_32_hex_digits_or_none(token: str) -> None:
    form = ComposerForm({"body": "hi", "token": token})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["token"] == token


@pytest.mark.parametrize(
    "token",
    ["0" * 31, "0" * 33, "0123456789ABCDEF" * 2, "g" * 32, '"><b hx-get="/x">', "0" * 31 + "\n"],
)
def test_a_malformed_send_id_is_refused_and_nothing_is_sent(token: str) -> None:
    form = ComposerForm({"body": "hi", "token": token})
    assert not form.is_valid()
    assert form.errors["token"] == ["This composer's send id is not valid: reload the page."]


def test_each_unbound_composer_has_a_send_id_of_its_own() -> None:
    first, second = ComposerForm()["token"].value(), ComposerForm()["token"].value()
    assert re.fullmatch(r"[0-9a-f]{32}", first), first
    assert first != second


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("hello", "That message could not be read (it was not JSON)."),
        ("", "That message could not be read (it was not JSON)."),
        ("[1]", "That message could not be read (expected a JSON object)."),
        ('"x"', "That message could not be read (expected a JSON object)."),
        ("3", "That message could not be read (expected a JSON object)."),
        ("null", "That message could not be read (expected a JSON object)."),
        ("{}", "That message had no text (the “body” field is missing)."),
        ('{"body": null}', "That message had no text (the “body” field is missing)."),
        ('{"body": 5}', "That message could not be read (“body” must be text)."),
        ('{"body": ["a"]}', "That message could not be read (“body” must be text)."),
        ('{"body": {"a": 1}}', "That message could not be read (“body” must be text)."),
        ('{"body": true}', "That message could not be read (“body” must be text)."),
        (
            '{"body": "a", "reply_to": 3}',
            "That message could not be read (“reply_to” must be text).",
        ),
        ('{"body": "a", "token": 3}', "That message could not be read (“token” must be text)."),
        ('{"body": "a", "token": ["f"]}', "That message could not be read (“token” must be text)."),
    ],
)
def test_frames_that_are_not_the_composer_say_what_is_wrong(frame: str, message: str) -> None:
    with pytest.raises(FrameError) as raised:
        decode_composer_frame(frame)
    assert str(raised.value) == message


@pytest.mark.parametrize("frame", ["[" * 5000 + "]" * 5000, '{"a":' * 5000, "[" * 5000])
def test_deeply_nested_json_is_refused_not_a_crash(frame: str) -> None:
    # json.loads raises RecursionError (not ValueError) past ~1000 levels.
    with pytest.raises(FrameError) as raised:
        decode_composer_frame(frame)
    assert str(raised.value) == "That message could not be read (it was nested too deeply)."


@pytest.mark.parametrize("escaped", ["\\ud800", "\\udfff", "a\\ud83d b"])
def test_a_body_with_a_lone_surrogate_is_refused_before_the_database(escaped: str) -> None:
    # JSON may escape half of a surrogate pair, which no database can encode as UTF-8.
    with pytest.raises(FrameError) as raised:
        decode_composer_frame(f'{{"body": "{escaped}"}}')
    assert str(raised.value) == "That message could not be read (it was not valid text)."


def test_a_body_with_an_escaped_surrogate_pair_is_ordinary_text() -> None:
    assert decode_composer_frame('{"body": "\\ud83d\\ude00"}')["body"] == "\U0001f600"


# RoomNameForm ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "name"),
    [("general", "general"), ("  General ", "general"), ("DEV-Ops", "dev-ops"), ("a", "a")],
)
def test_room_name_is_normalised_to_a_slug(typed: str, name: str) -> None:
    form = RoomNameForm({"name": typed})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["name"] == name
    assert form.cleaned_data["private"] is False


def test_room_name_form_can_ask_for_a_private_room() -> None:
    form = RoomNameForm({"name": "secret", "private": "on"})
    assert form.is_valid()
    assert form.cleaned_data["private"] is True


SLUG_RULE = (
    "Use 1 to 50 lowercase letters, digits or hyphens, starting and ending with a letter or digit."
)


@pytest.mark.parametrize(
    "typed",
    ["-general", "general-", "two words", "café", "semi;colon", "dots.are.out", "a_b", "x" * 51],
)
def test_room_names_that_are_not_slugs_are_refused(typed: str) -> None:
    form = RoomNameForm({"name": typed})
    assert not form.is_valid()
    assert SLUG_RULE in errors(form) or any("at most 50" in e for e in errors(form))


def test_an_empty_room_name_is_required() -> None:
    form = RoomNameForm({"name": "   "})
    assert not form.is_valid()
    assert errors(form) == ["This field is required."]
