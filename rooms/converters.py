"""URL converters, so that a path names only what the model could hold.

`<str:username>` matched anything but "/", NUL included: `/messages/%00/` reached the
database, and PostgreSQL refuses a string with NUL in it with an exception, a 500. A
username in a URL now has Django's own username characters
(`UnicodeUsernameValidator`: letters, digits and `@.+-_`) and length (150), so any other
path is a 404 from the URL resolver, before a view runs.

Registered once, here, on import (Django warns about, and 6.0 refuses, a second
registration of the same name); the URL modules import this one.
"""

from typing import cast

from django.contrib.auth.validators import UnicodeUsernameValidator
from django.urls import register_converter

# The validator's own character class, so the two cannot drift apart. (A RegexValidator's
# `regex` may be compiled; this class's is its source string, r"^[\w.@+-]+\Z".)
USERNAME_CHARACTERS = (
    cast(str, UnicodeUsernameValidator.regex).removeprefix("^").removesuffix("+\\Z")
)


class UsernameConverter:
    regex = USERNAME_CHARACTERS + "{1,150}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(UsernameConverter, "username")
