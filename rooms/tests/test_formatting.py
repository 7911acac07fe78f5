"""The message formatter (rooms/formatting.py): exact output, and no input that escapes it.

A table of inputs and the exact markup each must give, then a property over any text:
the output holds only <a href="http(s)://..." rel="nofollow noopener">, <br>, <code> and
<pre tabindex="0"><code>, and its text is the input's (nothing invented, nothing lost but the
formatting's own backticks and fence lines).
"""

from html.parser import HTMLParser

import pytest
from django.template import engines
from django.utils.safestring import SafeString, mark_safe
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from rooms.formatting import format_body

REL = "nofollow noopener"


def link(href: str, text: str | None = None) -> str:
    """The exact markup of a link (both already escaped, as they appear in the output)."""
    return f'<a href="{href}" rel="{REL}">{href if text is None else text}</a>'


CASES: list[tuple[str, str, str]] = [
    # Text: escaped, every special character, nothing else is formatting
    ("plain", "hello there", "hello there"),
    ("empty", "", ""),
    ("markup", "<b>bold</b>", "&lt;b&gt;bold&lt;/b&gt;"),
    ("script", "<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    ("ampersand", "a & b", "a &amp; b"),
    ("double quotes", 'say "hi"', "say &quot;hi&quot;"),
    ("single quote", "it's", "it&#x27;s"),
    ("entities stay as typed", "&amp; &lt; &#60;", "&amp;amp; &amp;lt; &amp;#60;"),
    ("no bold or italics", "**bold** _it_ ~~s~~", "**bold** _it_ ~~s~~"),
    ("no markdown link", "[x](javascript:alert(1))", "[x](javascript:alert(1))"),
    (
        "markdown link: only its URL",
        "[x](https://x.test)",
        f"[x]({link('https://x.test')})",
    ),
    (
        "markdown image: only its URL",
        "![i](https://x.test/i.png)",
        f"![i]({link('https://x.test/i.png')})",
    ),
    ("template syntax", "{{ x }}{% debug %}", "{{ x }}{% debug %}"),
    # Line breaks
    ("break", "a\nb", "a<br>b"),
    ("CRLF and CR", "a\r\nb\rc", "a<br>b<br>c"),
    ("blank line", "a\n\nb", "a<br><br>b"),
    ("trailing newline", "a\n", "a<br>"),
    ("only a newline", "\n", "<br>"),
    ("spaces kept", "  a  b ", "  a  b "),
    # Links: http and https only
    ("https", "https://x.test", link("https://x.test")),
    ("http in text", "see http://x.test/a now", f"see {link('http://x.test/a')} now"),
    ("trailing full stop", "see https://x.test/a.", f"see {link('https://x.test/a')}."),
    ("trailing punctuation", "https://x.test/a?!,;:.", f"{link('https://x.test/a')}?!,;:."),
    ("inner punctuation kept", "https://x.test/a.b,c", link("https://x.test/a.b,c")),
    ("in parentheses", "(https://x.test/a)", f"({link('https://x.test/a')})"),
    (
        "balanced parentheses kept",
        "https://en.wiki.test/wiki/Foo_(bar)",
        link("https://en.wiki.test/wiki/Foo_(bar)"),
    ),
    (
        "unbalanced closing parenthesis given back",
        "(see https://x.test/a_(b))).",
        f"(see {link('https://x.test/a_(b)')})).",
    ),
    (
        "query string",
        "https://x.test/?a=1&b=2",
        link("https://x.test/?a=1&amp;b=2"),
    ),
    (
        "fragment and port",
        "http://x.test:8000/p#top",
        link("http://x.test:8000/p#top"),
    ),
    ("uppercase scheme", "HTTP://X.TEST/Path", link("http://X.TEST/Path", "HTTP://X.TEST/Path")),
    ("mixed-case scheme", "HtTpS://x.test", link("https://x.test", "HtTpS://x.test")),
    (
        "two links",
        "https://a.test and http://b.test.",
        f"{link('https://a.test')} and {link('http://b.test')}.",
    ),
    ("IPv6 host", "http://[::1]:8000/x", link("http://[::1]:8000/x")),
    ("unicode", "https://例え.test/パス", link("https://例え.test/パス")),
    ("javascript:", "javascript:alert(1)", "javascript:alert(1)"),
    ("JavaScript: any case", "JaVaScRiPt:alert(1)", "JaVaScRiPt:alert(1)"),
    (
        "data:",
        "data:text/html,<script>alert(1)</script>",
        "data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;",
    ),
    ("vbscript:", "vbscript:msgbox(1)", "vbscript:msgbox(1)"),
    ("protocol-relative", "//x.test/path", "//x.test/path"),
    ("ftp", "ftp://x.test/f", "ftp://x.test/f"),
    ("scheme alone", "http://", "http://"),
    ("scheme and a dot", "https://.", "https://."),
    ("three slashes", "http:///etc/passwd", "http:///etc/passwd"),
    ("inside a word", "xhttp://x.test", "xhttp://x.test"),
    (
        "http after javascript: is only http",
        "javascript:http://x.test",
        f"javascript:{link('http://x.test')}",
    ),
    (
        "quote ends the URL (no attribute breakout)",
        'https://x.test/"onmouseover="alert(1)',
        f"{link('https://x.test/')}&quot;onmouseover=&quot;alert(1)",
    ),
    (
        "single quote ends the URL",
        "https://x.test/'><script>alert(1)</script>",
        f"{link('https://x.test/')}&#x27;&gt;&lt;script&gt;alert(1)&lt;/script&gt;",
    ),
    (
        "nested quotes",
        """https://x.test/?q="'><img src=x onerror=alert(1)>""",
        f"{link('https://x.test/?q=')}&quot;&#x27;&gt;&lt;img src=x onerror=alert(1)&gt;",
    ),
    (
        "< ends the URL",
        "https://a.test/<script>",
        f"{link('https://a.test/')}&lt;script&gt;",
    ),
    ("in angle brackets", "<https://x.test>", f"&lt;{link('https://x.test')}&gt;"),
    (
        "entity typed in a URL",
        "https://x.test/&quot;x&lt;",
        link("https://x.test/&amp;quot;x&amp;lt") + ";",
    ),
    # Inline code
    ("code", "`x`", "<code>x</code>"),
    ("code in text", "run `make test` now", "run <code>make test</code> now"),
    ("markup in code", "`<b>bold</b>`", "<code>&lt;b&gt;bold&lt;/b&gt;</code>"),
    ("entity in code", "`&amp;`", "<code>&amp;amp;</code>"),
    ("no link in code", "`https://x.test`", "<code>https://x.test</code>"),
    ("two spans", "`a` and `b`", "<code>a</code> and <code>b</code>"),
    ("adjacent spans", "`a``b`", "<code>a</code><code>b</code>"),
    ("unclosed backtick", "a `b", "a `b"),
    ("empty backticks", "``", "``"),
    ("empty backticks in text", "a `` b", "a `` b"),
    ("code does not cross lines", "`a\nb`", "`a<br>b`"),
    ("link then code", "https://x.test/`code`", f"{link('https://x.test/')}<code>code</code>"),
    ("triple backticks on one line", "```code```", "``<code>code</code>``"),
    ("code around quotes", "`\"'><script>`", "<code>&quot;&#x27;&gt;&lt;script&gt;</code>"),
    # Fenced code blocks
    ("fence", "```\ncode\n```", '<pre tabindex="0"><code>code</code></pre>'),
    (
        "fence with a language",
        "```python\ndef f():\n    return 1\n```",
        '<pre tabindex="0"><code>def f():\n    return 1</code></pre>',
    ),
    ("fence with spaces", "```js  \nx\n```  ", '<pre tabindex="0"><code>x</code></pre>'),
    (
        "unclosed fence",
        "```\nunclosed\nrest",
        '<pre tabindex="0"><code>unclosed\nrest</code></pre>',
    ),
    ("empty fence", "```\n```", '<pre tabindex="0"><code></code></pre>'),
    (
        "markup in a fence",
        "```\n<b>x</b>\n```",
        '<pre tabindex="0"><code>&lt;b&gt;x&lt;/b&gt;</code></pre>',
    ),
    (
        "fence breakout",
        "```\n</code></pre><img src=x onerror=alert(1)>\n```",
        '<pre tabindex="0"><code>&lt;/code&gt;&lt;/pre&gt;'
        "&lt;img src=x onerror=alert(1)&gt;</code></pre>",
    ),
    (
        "nothing formatted in a fence",
        "```\n`not code` https://x.test\n```",
        '<pre tabindex="0"><code>`not code` https://x.test</code></pre>',
    ),
    (
        "text around a fence",
        "before\n```\nx\n```\nafter",
        'before<pre tabindex="0"><code>x</code></pre>after',
    ),
    (
        "blank lines and indentation kept in a fence",
        "```\na\n\n  b\n```",
        '<pre tabindex="0"><code>a\n\n  b</code></pre>',
    ),
    (
        "a language line does not close",
        "```\n```python\n```",
        '<pre tabindex="0"><code>```python</code></pre>',
    ),
    (
        "CRLF in a fence",
        "a\r\n```\r\nx\r\ny\r\n```\r\n",
        'a<pre tabindex="0"><code>x\ny</code></pre>',
    ),
    ("two words are not a fence", "```two words", "```two words"),
    ("four backticks are not a fence", "````", "````"),
    ("indented fence is text", " ```\nx", " ```<br>x"),
]


@pytest.mark.parametrize(("text", "html"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_format_body(text: str, html: str) -> None:
    result = format_body(text)
    assert result == html
    assert isinstance(result, SafeString)


def test_text_marked_safe_is_escaped_all_the_same() -> None:
    assert format_body(mark_safe("<b>x</b> `<i>`")) == "&lt;b&gt;x&lt;/b&gt; <code>&lt;i&gt;</code>"


def test_the_template_filter_formats_and_is_not_escaped_again() -> None:
    template = engines["django"].from_string(
        '{% load chat_format %}<div class="message-body">{{ body|chat_format }}</div>'
    )
    body = "<i>hi</i>\nsee https://x.test/?a=1&b=2 and `x`"
    assert template.render({"body": body}) == (
        '<div class="message-body">&lt;i&gt;hi&lt;/i&gt;<br>see '
        f"{link('https://x.test/?a=1&amp;b=2')} and <code>x</code></div>"
    )


# Any text ---------------------------------------------------------------------------------

ALLOWED: dict[str, set[str]] = {
    "a": {"href", "rel"},
    "br": set(),
    "code": set(),
    "pre": {"tabindex"},
}
# Where each element may be ("" is the body itself): links, breaks and pre in the text,
# code in the text or in a pre.
PARENTS: dict[str, set[str]] = {"a": {""}, "br": {""}, "code": {"", "pre"}, "pre": {""}}


class Reader(HTMLParser):
    """The output as a browser would read it: its elements (checked as they open) and its
    text, entities unescaped, with <br> as a line break."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.text: list[str] = []
        self.links: list[tuple[str, list[str]]] = []  # (href, the text parts inside)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in ALLOWED, tag
        assert (self.open[-1] if self.open else "") in PARENTS[tag], (tag, self.open)
        names = [name for name, _ in attrs]
        assert len(names) == len(set(names)) and set(names) == ALLOWED[tag], (tag, attrs)
        values = dict(attrs)
        if tag == "a":
            href = values["href"]
            assert href is not None and href.startswith(("http://", "https://")), href
            assert values["rel"] == REL
            self.links.append((href, []))
        if tag != "br":
            self.open.append(tag)
        else:
            self.text.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raise AssertionError(f"self-closing <{tag}/>")

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, (tag, self.open)
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.open and self.open[-1] == "a":
            self.links[-1][1].append(data)

    def handle_comment(self, data: str) -> None:
        raise AssertionError(f"a comment: {data!r}")

    def handle_decl(self, decl: str) -> None:
        raise AssertionError(f"a declaration: {decl!r}")

    def handle_pi(self, data: str) -> None:
        raise AssertionError(f"a processing instruction: {data!r}")

    def unknown_decl(self, data: str) -> None:
        raise AssertionError(f"a declaration: {data!r}")


def read(html: str) -> Reader:
    reader = Reader()
    reader.feed(html)
    reader.close()
    assert reader.open == [], f"unclosed: {reader.open}"
    return reader


def must_show(text: str) -> str:
    """What is left of a text once every line starting with ``` (the fences, and whatever
    else starts that way), every backtick and every line break are taken out: characters
    the output must show, in the same order, whatever it made code or links of."""
    lines = [line for line in text.split("\n") if not line.startswith("```")]
    return "".join(lines).replace("`", "")


def is_subsequence(part: str, whole: str) -> bool:
    """Whether `part` is `whole` with some characters taken out (order kept)."""
    rest = iter(whole)
    return all(char in rest for char in part)


FRAGMENTS = [
    "http://", "https://", "HTTPS://", "javascript:", "data:", "//", "x.test", "/p?a=1&b=2",
    "`", "``", "```", "```py", "\n", "\r\n", "\r", " ", "<", ">", "&", "&amp;", '"', "'",
    "(", ")", ".", ",", "[", "]", "<script>", "</code></pre>", "<br>", "\u2028", "\x00", "é",
]  # fmt: skip
texts = st.one_of(
    st.text(),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=30).map("".join),
)


@hypothesis_settings(max_examples=1000, deadline=None)
@given(text=texts)
def test_any_text_gives_only_allowed_markup_and_keeps_its_characters(text: str) -> None:
    html = format_body(text)
    reader = read(
        html
    )  # only <a href="http(s)://..." rel>, <br>, <code>, <pre tabindex=\"0\"><code>

    shown = "".join(reader.text)
    typed = text.replace("\r\n", "\n").replace("\r", "\n")
    # Nothing is shown that was not typed, and in the order typed ...
    assert is_subsequence(shown, typed)
    # ... and every character typed is shown but for the formatting's own marks.
    assert is_subsequence(must_show(typed), shown)
    if "`" not in typed:  # no code at all: the text is exactly what was typed
        assert shown == typed
    # A link shows where it goes: its text is its address (the scheme aside, lowercased).
    for href, parts in reader.links:
        scheme, _, rest = "".join(parts).partition("://")
        assert href == f"{scheme.lower()}://{rest}"
