"""A message body as it is shown: line breaks, links, `code`, fenced code blocks, @mentions.

The text is cut into tokens, and each token becomes markup through `format_html` (which
escapes every piece of user text it is given) or `escape`: no user markup is ever passed
through. Nothing else is formatting (no bold, no HTML, no markdown links or images). The
output holds only `<a href="http(s)://..." rel="nofollow noopener">`, `<br>`, `<code>` and
`<pre tabindex="0"><code>` (rooms/tests/test_formatting.py holds it to exactly that), and, for the
names a message mentions (given by the caller: the message's stored `mentioned`),
`<a class="mention" href="/messages/<name>/">` and `<span class="mention">@here</span>`
(rooms/tests/test_mentions.py); designers style them as `.message-body a`, `code`, `pre`
and `.mention` (static/css/chat.css).

This is the one place where Python writes markup, and on purpose: the fixed tags below
(MARKUP) are the whole of it. The same markup rendered by a template cost 130-400 us a
message against about 30 us here (Django 5.2, this machine); a room page renders 50.

The tokenizer, in order:
  1. fences: a line that is ``` (optionally followed by one language word, ignored) opens a
     code block, the next line that is ``` closes it (an unclosed one runs to the end); its
     lines are kept verbatim;
  2. lines: the other lines, in runs between code blocks, shown with <br> between them;
  3. inline, within a line: `code` in single backticks (nothing inside is formatted), then,
     in the text around it, http(s) URLs, then, in the text around those, @mentions.

A mention is "@" and a name of Django's username characters but "@" (letters, digits and
`.+-_`), not continuing a word or an address ("ann@bob.test" mentions nobody); a full stop
ending it is punctuation, not part of the name ("@bob." and "@bob," mention bob). Which
names are people is not this module's to know: `mention_names` lists what a text would
mention, the caller resolves them (case-insensitively, rooms/attention.py) and stores who
they are, and `format_body(text, mentioned)` links only those; any other stays text.
"@here" is everyone online in the room when it is posted (rooms/attention.py).
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from django.urls import reverse
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

# Every tag the output can hold. Each "{}" is filled by format_html, which escapes it.
MARKUP = {
    "link": '<a href="{}" rel="nofollow noopener">{}</a>',
    "code": "<code>{}</code>",
    # tabindex: a block wider than its column scrolls, and a keyboard must reach it to.
    "fence": '<pre tabindex="0"><code>{}</code></pre>',
    "break": "<br>",
    "mention": '<a class="mention" href="{}">@{}</a>',
    "here": '<span class="mention mention--here">@here</span>',
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
# @name: not after a word character or anything a name or an address holds.
MENTION = re.compile(r"(?<![\w.@+-])@(?P<name>[\w.+-]+)")
HERE = "here"  # "@here": whoever is online in the room (never a user's name)

Kind = Literal["text", "code", "link", "mention"]


@dataclass(frozen=True, slots=True)
class Token:
    """A run of a line: plain text, inline code, a link (`href` is what it points to), or
    a mention (`text` as typed, "@Bob"; `href` the name, "Bob")."""

    kind: Kind
    text: str
    href: str = ""


@dataclass(frozen=True, slots=True)
class Block:
    """Either lines of tokens (shown with <br> between them) or a fenced code block."""

    lines: tuple[tuple[Token, ...], ...] = ()
    code: str | None = None


def format_body(text: str, mentioned: str | Iterable[str] | None = None) -> SafeString:
    """The body's markup, from `tokenize(text)`: every piece of text escaped.

    `mentioned`: the usernames (as stored; space-separated, or any iterable) that its
    mentions are known to be; "@name" of one of them (in any case) becomes a link to
    that person, any other stays text, and "@here" is marked. None (not a message's
    body): no mention is formatted."""
    known: dict[str, str] | None = None
    if mentioned is not None:
        names = mentioned.split() if isinstance(mentioned, str) else mentioned
        known = {name.casefold(): name for name in names}
    parts: list[str] = []
    for block in tokenize(text):
        if block.code is not None:  # kept verbatim: its line breaks are text in a <pre>
            parts.append(format_html(MARKUP["fence"], block.code))
            continue
        for number, line in enumerate(block.lines):
            if number:
                parts.append(MARKUP["break"])
            parts.extend(_markup(token, known) for token in line)
    return mark_safe("".join(parts))  # each part escaped, or fixed markup


def mention_names(text: str) -> list[str]:
    """The names `text` mentions, as typed, each once (whatever its case), in order:
    "@here" as "here". Not those in code, nor in links."""
    names: dict[str, str] = {}
    for block in tokenize(text):
        for line in block.lines:
            for token in line:
                if token.kind == "mention":
                    names.setdefault(token.href.casefold(), token.href)
    return list(names.values())


def _markup(token: Token, known: dict[str, str] | None) -> str:
    if token.kind == "mention":
        if known is None:
            return escape(token.text)
        name = token.href.casefold()
        if name == HERE:  # (whoever was online: in `mentioned` by name)
            return MARKUP["here"]
        if name in known:
            href = reverse("pm:conversation", args=[known[name]])
            return format_html(MARKUP["mention"], href, token.href)  # (as typed)
        return escape(token.text)
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
    """Text with its http(s) URLs as links, and mentions in the text between them."""
    tokens: list[Token] = []
    start = 0
    for match in URL.finditer(text):
        url = _trim(match[0])
        rest = url[len(match["scheme"]) + 3 :]
        if not HOST_START.match(rest):
            continue
        if match.start() > start:
            tokens.extend(mentions(text[start : match.start()]))
        tokens.append(Token("link", url, href=f"{match['scheme'].lower()}://{rest}"))
        start = match.start() + len(url)
    if start < len(text):
        tokens.extend(mentions(text[start:]))
    return tokens


def mentions(text: str) -> list[Token]:
    """Text with each "@name" as a mention (whoever it names, if anyone: `format_body`);
    a full stop after the name is given back to the text."""
    tokens: list[Token] = []
    start = 0
    for match in MENTION.finditer(text):
        name = match["name"].rstrip(".")
        if not name:
            continue
        if match.start() > start:
            tokens.append(Token("text", text[start : match.start()]))
        tokens.append(Token("mention", "@" + name, href=name))
        start = match.start() + 1 + len(name)
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
