"""A message body as it is shown: line breaks, links, `code` and fenced code blocks.

The text is cut into tokens, and each token becomes markup through `format_html` (which
escapes every piece of user text it is given) or `escape`: no user markup is ever passed
through. Nothing else is formatting (no bold, no HTML, no markdown links or images). The
output holds only `<a href="http(s)://..." rel="nofollow noopener">`, `<br>`, `<code>` and
`<pre><code>` (rooms/tests/test_formatting.py holds it to exactly that); designers style
them as `.message-body a`, `code` and `pre` (static/css/chat.css).

This is the one place where Python writes markup, and on purpose: the four fixed tags below
(MARKUP) are the whole of it. The same markup rendered by a template cost 130-400 us a
message against about 30 us here (Django 5.2, this machine); a room page renders 50.

The tokenizer, in order:
  1. fences: a line that is ``` (optionally followed by one language word, ignored) opens a
     code block, the next line that is ``` closes it (an unclosed one runs to the end); its
     lines are kept verbatim;
  2. lines: the other lines, in runs between code blocks, shown with <br> between them;
  3. inline, within a line: `code` in single backticks (nothing inside is formatted), then,
     in the text around it, http(s) URLs.
"""

import re
from dataclasses import dataclass
from typing import Literal

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

# Every tag the output can hold. Each "{}" is filled by format_html, which escapes it.
MARKUP = {
    "link": '<a href="{}" rel="nofollow noopener">{}</a>',
    "code": "<code>{}</code>",
    "fence": "<pre><code>{}</code></pre>",
    "break": "<br>",
}

FENCE_OPEN = re.compile(r"```[ \t]*[^\s`]*[ \t]*")
FENCE_CLOSE = re.compile(r"```[ \t]*")
INLINE_CODE = re.compile(r"`([^`]+)`")

# A URL starts at http:// or https:// (any case) that does not continue a word, and runs to
# the first character that cannot be in one here: whitespace, a quote, < or >, a backtick, a
# control character. Then `_trim` gives back trailing punctuation, as GitHub and Slack do.
URL = re.compile(r"(?<!\w)(?P<scheme>https?)://(?P<rest>[^\s<>\"'`\x00-\x1f\x7f]+)", re.IGNORECASE)
TRAILING_PUNCTUATION = ".,;:!?"
# What the address must start with (a host name, or "[" of an IPv6 address): "http://",
# "http://." or "http:///x" alone stay text.
HOST_START = re.compile(r"[^\W_]|\[")

Kind = Literal["text", "code", "link"]


@dataclass(frozen=True, slots=True)
class Token:
    """A run of a line: plain text, inline code, or a link (`href` is what it points to)."""

    kind: Kind
    text: str
    href: str = ""


@dataclass(frozen=True, slots=True)
class Block:
    """Either lines of tokens (shown with <br> between them) or a fenced code block."""

    lines: tuple[tuple[Token, ...], ...] = ()
    code: str | None = None


def format_body(text: str) -> SafeString:
    """The body's markup, from `tokenize(text)`: every piece of text escaped."""
    parts: list[str] = []
    for block in tokenize(text):
        if block.code is not None:  # kept verbatim: its line breaks are text in a <pre>
            parts.append(format_html(MARKUP["fence"], block.code))
            continue
        for number, line in enumerate(block.lines):
            if number:
                parts.append(MARKUP["break"])
            parts.extend(_markup(token) for token in line)
    return mark_safe("".join(parts))  # each part escaped, or fixed markup


def _markup(token: Token) -> str:
    if token.kind == "link":
        return format_html(MARKUP["link"], token.href, token.text)
    if token.kind == "code":
        return format_html(MARKUP["code"], token.text)
    return escape(token.text)


def tokenize(text: str) -> list[Block]:
    """Fences, then lines, then the inline tokens of each line (module docstring)."""
    # A plain str from here on, even if a SafeString came in: format_html would trust one.
    lines = str.__str__(text).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blocks: list[Block] = []
    run: list[tuple[Token, ...]] = []
    fence: list[str] | None = None
    for line in lines:
        if fence is None:
            if FENCE_OPEN.fullmatch(line):
                if run:
                    blocks.append(Block(lines=tuple(run)))
                    run = []
                fence = []
            else:
                run.append(tuple(inline(line)))
        elif FENCE_CLOSE.fullmatch(line):
            blocks.append(Block(code="\n".join(fence)))
            fence = None
        else:
            fence.append(line)
    if fence is not None:  # unclosed: the block runs to the end
        blocks.append(Block(code="\n".join(fence)))
    if run:
        blocks.append(Block(lines=tuple(run)))
    return blocks


def inline(line: str) -> list[Token]:
    """One line's tokens: `code` spans first, and links in the text between them."""
    tokens: list[Token] = []
    start = 0
    for code in INLINE_CODE.finditer(line):
        tokens.extend(links(line[start : code.start()]))
        tokens.append(Token("code", code[1]))
        start = code.end()
    tokens.extend(links(line[start:]))
    return tokens


def links(text: str) -> list[Token]:
    """Text with its http(s) URLs as links; everything else stays text.

    Issue 13's @username mentions go here: one more pattern found in this same text (not in
    code), one more token kind, and its entry in MARKUP and `_markup`.
    """
    tokens: list[Token] = []
    start = 0
    for match in URL.finditer(text):
        url = _trim(match[0])
        rest = url[len(match["scheme"]) + 3 :]
        if not HOST_START.match(rest):
            continue
        if match.start() > start:
            tokens.append(Token("text", text[start : match.start()]))
        tokens.append(Token("link", url, href=f"{match['scheme'].lower()}://{rest}"))
        start = match.start() + len(url)
    if start < len(text):
        tokens.append(Token("text", text[start:]))
    return tokens


def _trim(url: str) -> str:
    """Give back trailing punctuation, and a closing parenthesis that opens nowhere in the
    URL: "(see https://x.test/a_(b))." links https://x.test/a_(b)."""
    while url:
        last = url[-1]
        if last in TRAILING_PUNCTUATION or (last == ")" and url.count(")") > url.count("(")):
            url = url[:-1]
        else:
            break
    return url
