import unicodedata
import zoneinfo
from typing import Any

from django import forms
from django.contrib.auth.forms import UserCreationForm, UsernameField
from django.core.exceptions import ValidationError

from accounts import names, services

INVISIBLE_MESSAGE = (
    "That name is invisible: it has no character anyone would see. "
    "Choose one with letters or digits."
)
INVISIBLE_CHARACTER_MESSAGE = (
    "That name holds an invisible character (%(character)s): remove it, "
    "so that people see the name you chose."
)


class TrustedUsernameField(UsernameField):
    """Django's username field (NFKC normalised), refusing invisible names and characters.

    Checked before Django strips the value, so that a name of ideographic spaces is told
    it is invisible rather than that the field is required.
    """

    def to_python(self, value: Any) -> str | None:
        if value not in self.empty_values:
            text = str(value)
            # Like Django, no normalising of an over-long value (the length check refuses it).
            if self.max_length is None or len(text) <= self.max_length:
                check_visible(text, unicodedata.normalize("NFKC", text))
        return super().to_python(value)


def check_visible(typed: str, normalised: str) -> None:
    """Refuse a name that shows nothing, or holds something that shows nothing, named as
    it was typed (NFKC turns U+3164 HANGUL FILLER into U+1160, just as invisible)."""
    if not names.has_visible_character(normalised):
        raise ValidationError(INVISIBLE_MESSAGE, code="invisible")
    # Surrounding whitespace is stripped as before; anything invisible that is left counts.
    hidden = names.first_invisible(typed.strip()) or names.first_invisible(normalised.strip())
    if hidden is not None:
        raise ValidationError(
            INVISIBLE_CHARACTER_MESSAGE,
            code="invisible_character",
            params={"character": names.describe(hidden)},
        )


class TrustedUsernameMixin:
    """The username must not be taken, nor look like a taken name (any form naming a user:
    sign-up, and the admin's add and change forms). Replaces UserCreationForm's own
    case-insensitive check (a scan of every username) with one indexed lookup."""

    cleaned_data: dict[str, Any]
    instance: Any

    def clean_username(self) -> str:
        username: str = self.cleaned_data.get("username", "")
        if username:
            renamed = self.instance if self.instance.pk is not None else None
            services.check_name_is_free(username, user=renamed)
        return username


class SignUpForm(TrustedUsernameMixin, UserCreationForm):
    class Meta(UserCreationForm.Meta):
        field_classes = {"username": TrustedUsernameField}


def time_zone_names() -> list[str]:
    """The IANA zones Python's zoneinfo knows, sorted; not "localtime", which names the
    server's own /etc/localtime where the system provides it, not a zone."""
    return sorted(zoneinfo.available_timezones() - {"localtime"})


class PreferencesForm(forms.Form):
    """The settings page: a time zone from the IANA database (as Python's zoneinfo knows it)."""

    time_zone = forms.ChoiceField(
        label="Time zone",
        choices=lambda: [(zone, zone) for zone in time_zone_names()],
        help_text="Times and days are shown in this zone.",
    )
