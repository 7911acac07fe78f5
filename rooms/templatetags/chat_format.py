"""{{ message.body|chat_format:message.mentioned }}: a message body with its formatting
(rooms.formatting); the argument, the names its mentions are known to be (without it,
nothing is formatted as a mention).

`{% load chat_format %}`. The result is markup built from the escaped text (line breaks,
http(s) links, `code` and fenced code blocks), so show it in a block element, not a <p>:
a fenced block is a <pre>.
"""

from django import template
from django.utils.safestring import SafeString

from rooms.formatting import format_body

register = template.Library()


# is_safe=False: the input is escaped by format_body, never trusted as it comes; the result
# is a SafeString of its own making.
@register.filter(is_safe=False)
def chat_format(body: str, mentioned: str | None = None) -> SafeString:
    return format_body(body, mentioned)
