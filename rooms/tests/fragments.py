"""Reading the HTML the server sends: pages and the fragments pushed over the socket.

Tests look at markup the way htmx does: as elements with ids and attributes. A small
tree built by the standard library's parser is enough, and keeps assertions about
"the element with id X" honest where substring checks would be loose.
"""

import functools
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID_ELEMENTS = {
    "area", "base", "br", "col", "embed", "hr", "img", "input",
    "link", "meta", "source", "track", "wbr",
}  # fmt: skip


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]
    children: list["Element | str"] = field(default_factory=list)

    @property
    def id(self) -> str | None:
        return self.attrs.get("id")

    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    @property
    def text(self) -> str:
        """The text content, whitespace collapsed (what a reader sees)."""
        parts: list[str] = []
        for child in self.children:
            parts.append(child if isinstance(child, str) else f" {child.text} ")
        return " ".join("".join(parts).split())

    def iter(self) -> "list[Element]":
        found: list[Element] = []
        for child in self.children:
            if isinstance(child, Element):
                found.append(child)
                found.extend(child.iter())
        return found

    def find_all(
        self, tag: str | None = None, *, class_: str | None = None, **attrs: str
    ) -> "list[Element]":
        """Descendants by tag, class and attribute values (`data_author=` is `data-author`)."""
        wanted = {name.replace("_", "-"): value for name, value in attrs.items()}
        return [
            element
            for element in self.iter()
            if (tag is None or element.tag == tag)
            and (class_ is None or class_ in element.classes())
            and all(element.attrs.get(name) == value for name, value in wanted.items())
        ]

    def find(
        self, tag: str | None = None, *, class_: str | None = None, **attrs: str
    ) -> "Element | None":
        matches = self.find_all(tag, class_=class_, **attrs)
        return matches[0] if matches else None

    def by_id(self, element_id: str) -> "Element | None":
        return self.find(id=element_id)

    def one(self, tag: str | None = None, *, class_: str | None = None, **attrs: str) -> "Element":
        """`find` for an element the test needs: its absence fails the test, saying what."""
        found = self.find(tag, class_=class_, **attrs)
        if found is None:
            wanted = " ".join(
                [tag or "*"]
                + ([f'class="{class_}"'] if class_ else [])
                + [f'{name.replace("_", "-")}="{value}"' for name, value in attrs.items()]
            )
            raise AssertionError(f"no <{wanted}> in <{self.tag} id={self.id!r}>")
        return found

    def one_by_id(self, element_id: str) -> "Element":
        return self.one(id=element_id)

    def attr(self, name: str) -> str:
        """An attribute the test needs: missing, or present without a value, fails the test."""
        value = self.attrs.get(name)
        if value is None:
            raise AssertionError(f'<{self.tag} id={self.id!r}> has no {name}="..."')
        return value

    @property
    def top_level(self) -> "list[Element]":
        """The top-level elements: what htmx's ws extension swaps out of band, by id."""
        return [child for child in self.children if isinstance(child, Element)]


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs))
        self.stack[-1].children.append(element)
        if tag not in VOID_ELEMENTS:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


@functools.lru_cache(maxsize=32)  # a frame is often asked several questions; trees are read-only
def parse(html: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


# What a pushed frame is ----------------------------------------------------------------

MESSAGE_ID = re.compile(r'\bid="message-(\d+)"')


def is_composer(html: str) -> bool:
    """The out-of-band composer: the reply to the sender, emptied or with an error."""
    tops = parse(html).top_level
    return len(tops) == 1 and tops[0].tag == "form" and tops[0].id == "composer"


def composer_errors(html: str) -> list[str]:
    return [p.text for p in parse(html).find_all("p", class_="composer-error")]


def composer_token(html: str) -> str | None:
    """The composer's send id (its hidden "token"), if it has the field."""
    field_ = parse(html).find("input", name="token")
    return None if field_ is None else field_.attr("value")


def composer_value(html: str) -> str | None:
    """What the composer's textarea holds, as a browser reads it (one newline right after
    the start tag is not part of the value)."""
    field_ = parse(html).find("textarea", name="body")
    if field_ is None:
        return None
    text = "".join(child for child in field_.children if isinstance(child, str))
    return text.removeprefix("\n")


def cursor_of(html: str) -> int | None:
    """The catch-up cursor a frame sets (#chat-cursor's data-seq), if it sets one."""
    marker = parse(html).by_id("chat-cursor")
    return None if marker is None else int(marker.attr("data-seq"))


def message_seqs(html: str) -> list[int]:
    return [int(article.attr("data-seq")) for article in messages_in(html)]


def message_ids(html: str) -> list[int]:
    return [int(article.attr("data-message-id")) for article in messages_in(html)]


def messages_in(html: str) -> list[Element]:
    """The room messages (not private ones) in a page or fragment, in order."""
    return [
        article
        for article in parse(html).find_all("article", class_="message")
        if "data-message-id" in article.attrs
    ]


def is_message_fragment(html: str) -> bool:
    """A room message appended to the log: one `#chat-live` wrapper holding one message."""
    tops = parse(html).top_level
    return (
        len(tops) == 1
        and tops[0].id == "chat-live"
        and tops[0].attrs.get("hx-swap-oob") == "beforeend"
        and len(messages_in(html)) == 1
    )


def private_messages_in(html: str) -> list[Element]:
    return parse(html).find_all("article", class_="message--private")


def presence_lines(html: str) -> list[str]:
    """`["alice joined"]` for a join: the log lines of a presence fragment."""
    return [p.text for p in parse(html).find_all("p", class_="presence-line")]


def online_usernames(html: str) -> list[str] | None:
    """The usernames in the `#online-users` list of a page or fragment (None if absent)."""
    section = parse(html).by_id("online-users")
    if section is None:
        return None
    return [
        li.attrs["data-username"] or ""
        for li in section.find_all("li")
        if "data-username" in li.attrs
    ]


@dataclass
class PresenceUpdate:
    """What a presence fragment does to the page, swapped out of band by htmx."""

    lines: list[str]  # appended to the log: ["bob joined"]
    deleted: list[str]  # ids of elements removed: ["online-user-2"]
    appended: list[Element]  # entries appended to "#online-list"
    count: str | None  # the new text of "#online-count"

    @property
    def appended_usernames(self) -> list[str]:
        return [li.attrs.get("data-username") or "" for li in self.appended]


def presence_update(html: str) -> PresenceUpdate:
    update = PresenceUpdate(lines=presence_lines(html), deleted=[], appended=[], count=None)
    for element in parse(html).top_level:
        swap = element.attrs.get("hx-swap-oob")
        if swap == "delete":
            update.deleted.append(element.id or "")
        elif swap == "beforeend:#online-list":
            update.appended.extend(element.find_all("li"))
        elif element.id == "online-count" and swap == "true":
            update.count = element.text
    return update
