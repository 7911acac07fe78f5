"""rooms/templatetags/message_urls.py: the message partial's links, reversed once per URL
name, are exactly what `{% url %}` gives, under any script prefix."""

from types import SimpleNamespace

import pytest
from django.template import engines
from django.urls import reverse, set_script_prefix

NAMES = ["rooms:message", "rooms:reactions", "rooms:edit_message", "rooms:delete_message"]


def message(slug: str, pk: int) -> SimpleNamespace:
    return SimpleNamespace(room=SimpleNamespace(slug=slug), pk=pk)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("prefix", ["/", "/chat/"])
@pytest.mark.parametrize(
    ("slug", "pk"),
    # 1 and 918273645546372818: an id shorter or as long as the placeholder's; a slug
    # reverse() quotes (no room is named so: it takes reverse() itself).
    [("lobby", 1), ("a-0", 918273645546372818), ("x" * 50, 42), ("é%20 ?", 7)],
)
def test_a_message_url_is_what_url_gives(name, prefix, slug, pk) -> None:
    template = engines["django"].from_string(
        "{% load message_urls %}{% message_url name message %}|{% url name slug pk %}"
    )
    set_script_prefix(prefix)
    try:
        fast, usual = template.render(
            {"name": name, "message": message(slug, pk), "slug": slug, "pk": pk}
        ).split("|")
        assert fast == usual == reverse(name, args=[slug, pk])
        assert fast.startswith(prefix)
    finally:
        set_script_prefix("/")
