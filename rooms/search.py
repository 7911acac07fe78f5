"""Search: the messages of the rooms a user may enter, and their own private messages.

`GET /search/?q=...` (rooms/views_search.py). The query's words are matched by the
database's own full-text index: on PostgreSQL a stored tsvector column (`search_vector`,
generated from `body` with the 'simple' configuration) under a GIN index, queried with
`websearch_to_tsquery`; on SQLite an external-content FTS5 table per searched table,
kept in sync by triggers and queried with MATCH. Both are made by migration 0008 through
`install` below and exist only on their database; nothing else reads them.

The query language is the web-search one on both databases: words (all must be there),
"a phrase", `-word` (must not be there), `OR` between alternatives; and the filters
`in:<room>`, `from:<user>`, `after:YYYY-MM-DD` (that day or later), `before:YYYY-MM-DD`
(earlier days), each also a form field of its own. Users' words never reach FTS5's
syntax: each is double-quoted (a `"` in it doubled), the operators built here.

Results are newest first (a keyset per table: `?m=<message id>&p=<private message id>`,
no OFFSET) or best first (`order=best`: the newest 10,000 matches ranked, in at most 10
pages). Each carries its text
cut in parts, the matching words marked, for the template to escape and mark
(templates/rooms/search.html): no HTML is built here.
"""

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any, Literal, NamedTuple
from urllib.parse import urlencode

from django.contrib.auth.models import AbstractUser
from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVectorField
from django.db import connection as default_connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.urls import reverse

from rooms import services
from rooms.models import Message, PrivateMessage, Room

PAGE_SIZE = 20
# Best-first pages are ranked, not keyset: at most this many pages of them, ranked from
# the newest BEST_WINDOW matches (statement).
MAX_BEST_PAGES = 10
BEST_WINDOW = 10_000
# Up to this many rooms are passed to the query as a list (_room_messages).
ROOM_IDS = 1000
# The longest query read, and the most words of it used.
MAX_QUERY_CHARS = 500
MAX_TERMS = 16
# A body longer than this is shown as a snippet around its first match.
SNIPPET_CHARS = 300
SNIPPET_LEAD = 60

Order = Literal["new", "best"]

# The tables searched, and their FTS5 twins on SQLite.
SEARCHED = {
    Message._meta.db_table: f"{Message._meta.db_table}_fts",
    PrivateMessage._meta.db_table: f"{PrivateMessage._meta.db_table}_fts",
}


# The index --------------------------------------------------------------------------


def _sqlite_triggers(table: str, fts: str) -> list[str]:
    # External content: the FTS table holds only the index; the text stays in `table`.
    # Its triggers are what keeps the two equal: an insert, an edit (body), a deletion
    # (a tombstone's body is "", so a deleted message leaves the index too).
    return [
        f"""CREATE TRIGGER IF NOT EXISTS {fts}_insert AFTER INSERT ON {table} BEGIN
              INSERT INTO {fts}(rowid, body) VALUES (new.id, new.body);
            END""",
        f"""CREATE TRIGGER IF NOT EXISTS {fts}_delete AFTER DELETE ON {table} BEGIN
              INSERT INTO {fts}({fts}, rowid, body) VALUES ('delete', old.id, old.body);
            END""",
        f"""CREATE TRIGGER IF NOT EXISTS {fts}_update AFTER UPDATE OF body ON {table} BEGIN
              INSERT INTO {fts}({fts}, rowid, body) VALUES ('delete', old.id, old.body);
              INSERT INTO {fts}(rowid, body) VALUES (new.id, new.body);
            END""",
    ]


def install(connection: BaseDatabaseWrapper) -> None:
    """Make the full-text index of messages and private messages on this database
    (migration 0008; `ensure_sqlite_triggers` after every migrate)."""
    with connection.cursor() as cursor:
        for table, fts in SEARCHED.items():
            if connection.vendor == "postgresql":
                cursor.execute(
                    f"ALTER TABLE {table} ADD COLUMN search_vector tsvector GENERATED ALWAYS "
                    f"AS (to_tsvector('simple'::regconfig, body)) STORED"
                )
                cursor.execute(f"CREATE INDEX {table}_search ON {table} USING gin (search_vector)")
            elif connection.vendor == "sqlite":
                cursor.execute(
                    f"CREATE VIRTUAL TABLE {fts} USING fts5("
                    f"body, content='{table}', content_rowid='id')"
                )
                for trigger in _sqlite_triggers(table, fts):
                    cursor.execute(trigger)
                cursor.execute(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")


def uninstall(connection: BaseDatabaseWrapper) -> None:
    with connection.cursor() as cursor:
        for table, fts in SEARCHED.items():
            if connection.vendor == "postgresql":
                cursor.execute(f"DROP INDEX IF EXISTS {table}_search")
                cursor.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS search_vector")
            elif connection.vendor == "sqlite":
                for kind in ("insert", "delete", "update"):
                    cursor.execute(f"DROP TRIGGER IF EXISTS {fts}_{kind}")
                cursor.execute(f"DROP TABLE IF EXISTS {fts}")


def ensure_sqlite_triggers(connection: BaseDatabaseWrapper) -> bool:
    """Put back the FTS5 triggers if a migration lost them, and rebuild the index then.

    On SQLite, Django alters a table by making a new one and dropping the old, and the
    old one's triggers go with it: any later migration of Message or PrivateMessage would
    silently stop the index following edits. Run after every migrate (rooms/apps.py).
    Returns whether anything was repaired."""
    if connection.vendor != "sqlite":
        return False
    repaired = False
    with connection.cursor() as cursor:
        for table, fts in SEARCHED.items():
            cursor.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s "
                "AND name LIKE %s",
                [table, f"{fts}_%"],
            )
            (found,) = cursor.fetchone()
            cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = %s", [fts])
            if found == 3 or cursor.fetchone() is None:
                continue  # complete, or not installed yet (before migration 0008)
            for trigger in _sqlite_triggers(table, fts):
                cursor.execute(trigger)
            cursor.execute(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")
            repaired = True
    return repaired


# The query ---------------------------------------------------------------------------

# A word as both indexes cut text: letters and digits (FTS5's unicode61 tokenizer treats
# everything else, "_" too, as a separator).
WORD = re.compile(r"[^\W_]+")
TOKEN = re.compile(r'-?"[^"]*"?|\S+')
FILTER = re.compile(r"(in|from|after|before):(\S*)", re.IGNORECASE)
DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def fold(word: str) -> str:
    """A word as the index compares it: case-folded, accents taken off (FTS5's
    unicode61 removes diacritics; PostgreSQL's 'simple' keeps them, so there a highlight
    may mark a little more than matched)."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class Item(NamedTuple):
    words: tuple[str, ...]  # one word, or a phrase's
    negated: bool


@dataclass(frozen=True)
class Criteria:
    """A parsed search: the text for the index, its groups of items (alternatives
    joined by OR), and the filters. `errors`: what could not be understood."""

    text: str = ""
    groups: tuple[tuple[Item, ...], ...] = ()
    room: str = ""
    author: str = ""
    after: date | None = None
    before: date | None = None
    order: Order = "new"
    errors: tuple[str, ...] = ()

    @property
    def searchable(self) -> bool:
        """Whether there is something to look for: a word that must be there."""
        return any(not item.negated for group in self.groups for item in group)

    @property
    def marked(self) -> frozenset[str]:
        """The folded words a result highlights (those that must or may be there)."""
        return frozenset(
            fold(word)
            for group in self.groups
            for item in group
            if not item.negated
            for word in item.words
        )

    def fts5(self) -> str:
        """The FTS5 query: each group's words ANDed, NOT its negated ones, groups ORed.
        Every word is a quoted string, so nothing the user typed is FTS5 syntax."""
        clauses = []
        for group in self.groups:
            wanted = [_fts5_phrase(item.words) for item in group if not item.negated]
            if not wanted:
                continue  # (nothing to look for in it: as websearch_to_tsquery drops it)
            unwanted = [_fts5_phrase(item.words) for item in group if item.negated]
            clauses.append(
                "(" + " AND ".join(wanted) + "".join(f" NOT {u}" for u in unwanted) + ")"
            )
        return " OR ".join(clauses)

    def query_string(self, **extra: str | int) -> str:
        """This search as URL parameters (the next page's link)."""
        params: dict[str, str | int] = {"q": self.text} if self.text else {}
        for name, value in (
            ("in", self.room),
            ("from", self.author),
            ("after", self.after.isoformat() if self.after else ""),
            ("before", self.before.isoformat() if self.before else ""),
            ("order", "best" if self.order == "best" else ""),
        ):
            if value:
                params[name] = value
        params.update(extra)
        return urlencode(params)


def _fts5_phrase(words: Iterable[str]) -> str:
    return '"' + " ".join(word.replace('"', '""') for word in words) + '"'


def parse(params: Mapping[str, str]) -> Criteria:
    """The search that a query string (`q`, and the fields `in`, `from`, `after`,
    `before`, `order`) asks for. Filters in `q` take the place of the fields'."""
    errors: list[str] = []

    def read(name: str) -> str:
        # (A NUL reaches no database: PostgreSQL refuses it in text, whatever the query.)
        return (params.get(name) or "").replace("\x00", " ").strip()

    fields = {name: read(name) for name in ("in", "from", "after", "before")}
    kept: list[str] = []
    groups: list[list[Item]] = [[]]
    terms = 0
    for token in TOKEN.findall(read("q")[:MAX_QUERY_CHARS]):
        if (found := FILTER.fullmatch(token)) is not None:
            fields[found.group(1).lower()] = found.group(2)
            continue
        kept.append(token)
        if token == "OR":
            if groups[-1]:
                groups.append([])
            continue
        negated = token.startswith("-") and len(token) > 1
        words = tuple(WORD.findall(token))[: MAX_TERMS - terms]
        if words:
            terms += len(words)
            groups[-1].append(Item(words, negated))
    room = fields["in"].removeprefix("#").lower()
    author = fields["from"].removeprefix("@")
    after, before = (_day(fields[name], name, errors) for name in ("after", "before"))
    order: Order = "best" if params.get("order") == "best" else "new"
    return Criteria(
        text=" ".join(kept),
        groups=tuple(tuple(group) for group in groups if group),
        room=room,
        author=author,
        after=after,
        before=before,
        order=order,
        errors=tuple(errors),
    )


def _day(value: str, name: str, errors: list[str]) -> date | None:
    if not value:
        return None
    try:
        if DAY.fullmatch(value) is None:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        errors.append(f"“{value[:40]}” is not a day: write {name}:YYYY-MM-DD, e.g. 2026-11-26.")
        return None


# Results -----------------------------------------------------------------------------


class Part(NamedTuple):
    text: str
    mark: bool


@dataclass(frozen=True)
class Hit:
    """One result: a room message (`room` set) or a private message (`other`: the
    other person of the pair)."""

    pk: int
    url: str
    author: str
    created_at: datetime
    parts: list[Part]
    room: str = ""
    other: str = ""

    @property
    def private(self) -> bool:
        return not self.room


@dataclass(frozen=True)
class Results:
    criteria: Criteria
    hits: list[Hit] = field(default_factory=list)
    next_page: str = ""  # the next page's query string, if there is one


def highlight(text: str, marked: frozenset[str]) -> list[Part]:
    """`text` in parts, the words in `marked` (folded) as marked parts; a long text cut
    to a snippet around its first match. The parts are plain text: the template escapes
    each and marks the marked ones."""
    spans = [m.span() for m in WORD.finditer(text) if fold(m.group()) in marked]
    start, end = 0, len(text)
    if len(text) > SNIPPET_CHARS:
        first = spans[0][0] if spans else 0
        start = max(0, min(first - SNIPPET_LEAD, len(text) - SNIPPET_CHARS))
        end = start + SNIPPET_CHARS
    parts = [Part("…", False)] if start > 0 else []
    position = start
    for span_start, span_end in spans:
        if span_start < start or span_end > end:
            continue
        if span_start > position:
            parts.append(Part(text[position:span_start], False))
        parts.append(Part(text[span_start:span_end], True))
        position = span_end
    if position < end:
        parts.append(Part(text[position:end], False))
    if end < len(text):
        parts.append(Part("…", False))
    return parts


def search(user: AbstractUser, params: Mapping[str, str], zone: tzinfo) -> Results:
    """What `user` finds with the query string `params` (days in `zone`)."""
    criteria = parse(params)
    if not criteria.searchable or criteria.errors:
        return Results(criteria)
    messages = _room_messages(user, criteria, zone)
    private = _private_messages(user, criteria, zone)
    if criteria.order == "best":
        return _best_page(criteria, user.pk, messages, private, params.get("page"))
    return _newest_page(criteria, user.pk, messages, private, params.get("m"), params.get("p"))


def statement(
    rows: QuerySet[Any], criteria: Criteria, *, best: bool, before: int | None, limit: int
) -> tuple[str, tuple[Any, ...]]:
    """The SQL that finds, of `rows` (a table's rows the viewer may see, filtered), the
    first `limit` whose text matches: newest first (by primary key, below `before`) or
    best first. It selects (pk, score), a higher score a better match.

    PostgreSQL: a filter on the stored vector (`@@`, the GIN index), scored by ts_rank.
    SQLite: the FTS5 table drives, its matches in rowid order, so a LIMIT stops early
    however common the word, each kept if its row is one of `rows` (a primary-key
    lookup), scored by bm25. Best first ranks the newest BEST_WINDOW matches: ranking
    every match of a word in most messages would cost seconds on a million (measured:
    3.8 s on SQLite), and so that many is what a page of the best may cost at most.
    """
    model = rows.model
    table = model._meta.db_table
    if default_connection.vendor == "postgresql":
        query = SearchQuery(criteria.text, config="simple", search_type="websearch")
        vector = RawSQL(f'"{table}"."search_vector"', [], output_field=SearchVectorField())
        matched = rows.alias(vector=vector).filter(vector=query)
        if best:
            # The window's ids first, then ts_rank for those alone: asked for in one
            # query, PostgreSQL ranks every match before it cuts the window.
            window = matched.order_by("-pk").values("pk")[:BEST_WINDOW]
            window_sql, window_params = window.query.sql_with_params()
            sql = (
                f"SELECT ranked.id, ts_rank(ranked.search_vector, "
                f"websearch_to_tsquery('simple'::regconfig, %s)) FROM {table} AS ranked "
                f"WHERE ranked.id IN ({window_sql}) ORDER BY 2 DESC, 1 DESC LIMIT %s"
            )
            return sql, (criteria.text, *window_params, limit)
        if before is not None:
            matched = matched.filter(pk__lt=before)
        scored = matched.annotate(score=SearchRank(F("vector"), query)).order_by("-pk")
        sql, sql_params = scored.values_list("pk", "score")[:limit].query.sql_with_params()
        return sql, tuple(sql_params)
    if best:
        newest, params = statement(rows, criteria, best=False, before=None, limit=BEST_WINDOW)
        ranked = f"SELECT * FROM ({newest}) AS newest ORDER BY 2 DESC, 1 DESC LIMIT %s"
        return ranked, (*params, limit)
    fts = SEARCHED[table]
    kept = rows.filter(pk=RawSQL(f'"{fts}"."rowid"', [])).order_by().values("pk")
    kept_sql, kept_params = kept.query.sql_with_params()
    below = f' AND "{fts}"."rowid" < %s' if before is not None else ""
    # bm25() is lower for a better match: negated, so that higher is better on both.
    sql = (
        f'SELECT "{fts}"."rowid", -bm25({fts}) FROM {fts} WHERE {fts} MATCH %s{below} '
        f"AND EXISTS ({kept_sql}) ORDER BY rowid DESC LIMIT %s"
    )
    return sql, (criteria.fts5(), *([before] if before is not None else []), *kept_params, limit)


def _found(
    rows: QuerySet[Any], criteria: Criteria, *, best: bool, before: int | None, limit: int
) -> list[tuple[float, Any]]:
    """The rows `statement` finds, in its order, each with its score."""
    if rows.query.is_empty():
        return []  # (none(): no SQL to run)
    sql, params = statement(rows, criteria, best=best, before=before, limit=limit)
    with default_connection.cursor() as cursor:
        cursor.execute(sql, params)
        scored = [(int(pk), float(score)) for pk, score in cursor.fetchall()]
    loaded = rows.in_bulk([pk for pk, _ in scored])
    return [(score, loaded[pk]) for pk, score in scored if pk in loaded]


def _between(criteria: Criteria, zone: tzinfo) -> Q:
    when = Q()
    if criteria.after is not None:
        when &= Q(created_at__gte=services.day_bounds(criteria.after, zone)[0])
    if criteria.before is not None:
        when &= Q(created_at__lt=services.day_bounds(criteria.before, zone)[0])
    return when


def _room_messages(user: AbstractUser, criteria: Criteria, zone: tzinfo) -> QuerySet[Message]:
    """The room messages `user` may see that the filters keep (the words aside)."""
    rooms = Room.objects.filter(services._visible_to(user))
    if criteria.room:
        rooms = rooms.filter(slug=criteria.room)
    # The rooms as a list of ids when they are not too many: PostgreSQL estimates a join
    # to a subquery of rooms badly (it took a word in 74% of a room's 1,000,000 messages
    # for 0.6% and sorted every match: 0.9 s), and a list of values it reads from its
    # statistics.
    room_ids = list(rooms.values_list("pk", flat=True)[: ROOM_IDS + 1])
    if not room_ids:
        return Message.objects.none()
    in_rooms = Q(room_id__in=room_ids) if len(room_ids) <= ROOM_IDS else Q(room__in=rooms)
    rows = Message.objects.filter(_between(criteria, zone), in_rooms, deleted_at__isnull=True)
    if criteria.author:
        rows = rows.filter(author__username=criteria.author)
    return rows.select_related("author", "room")


def _private_messages(
    user: AbstractUser, criteria: Criteria, zone: tzinfo
) -> QuerySet[PrivateMessage]:
    """The private messages `user` sent or received that the filters keep."""
    if criteria.room:
        return PrivateMessage.objects.none()  # (in:<room> looks in that room only)
    rows = PrivateMessage.objects.filter(
        Q(sender_id=user.pk) | Q(recipient_id=user.pk), _between(criteria, zone)
    )
    if criteria.author:
        rows = rows.filter(sender__username=criteria.author)
    return rows.select_related("sender", "recipient")


def _message_hit(message: Message, marked: frozenset[str]) -> Hit:
    url = reverse("rooms:message", args=[message.room.slug, message.pk])
    return Hit(
        pk=message.pk,
        url=f"{url}#message-{message.pk}",
        author=message.author.username,
        created_at=message.created_at,
        parts=highlight(message.body, marked),
        room=message.room.slug,
    )


def _private_hit(pm: PrivateMessage, user_id: int, marked: frozenset[str]) -> Hit:
    other = pm.recipient if pm.sender_id == user_id else pm.sender
    url = reverse("pm:message", args=[other.username, pm.pk])
    return Hit(
        pk=pm.pk,
        url=f"{url}#pm-{pm.pk}",
        author=pm.sender.username,
        created_at=pm.created_at,
        parts=highlight(pm.body, marked),
        other=other.username,
    )


def _hit(row: Message | PrivateMessage, user_id: int, marked: frozenset[str]) -> Hit:
    if isinstance(row, Message):
        return _message_hit(row, marked)
    return _private_hit(row, user_id, marked)


def _cursor(value: str | None) -> int | None:
    if value and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


def _newest_page(
    criteria: Criteria,
    user_id: int,
    messages: QuerySet[Message],
    private: QuerySet[PrivateMessage],
    before_message: str | None,
    before_private: str | None,
) -> Results:
    """Newest first: up to a page from each table past its own cursor (a keyset on its
    primary key), merged by time. Each table's next cursor is the last of its rows shown,
    so a row not shown on this page (the other table's were newer) comes on the next."""
    m_cursor, p_cursor = _cursor(before_message), _cursor(before_private)
    rows: list[Message | PrivateMessage] = [
        row
        for table, cursor in ((messages, m_cursor), (private, p_cursor))
        for _, row in _found(table, criteria, best=False, before=cursor, limit=PAGE_SIZE + 1)
    ]
    rows.sort(key=lambda row: (row.created_at, row.pk), reverse=True)
    shown, more = rows[:PAGE_SIZE], len(rows) > PAGE_SIZE
    for row in shown:
        if isinstance(row, Message):
            m_cursor = row.pk
        else:
            p_cursor = row.pk
    hits = [_hit(row, user_id, criteria.marked) for row in shown]
    cursors = {name: value for name, value in (("m", m_cursor), ("p", p_cursor)) if value}
    return Results(criteria, hits, criteria.query_string(**cursors) if more else "")


def _best_page(
    criteria: Criteria,
    user_id: int,
    messages: QuerySet[Message],
    private: QuerySet[PrivateMessage],
    page: str | None,
) -> Results:
    """Best first: ranked, PAGE_SIZE a page, at most MAX_BEST_PAGES pages (each table's
    best page * PAGE_SIZE + 1 rows read, merged by score)."""
    number = min(max(_cursor(page) or 1, 1), MAX_BEST_PAGES)
    wanted = number * PAGE_SIZE + 1
    ranked: list[tuple[float, Message | PrivateMessage]] = [
        *_found(messages, criteria, best=True, before=None, limit=wanted),
        *_found(private, criteria, best=True, before=None, limit=wanted),
    ]
    ranked.sort(key=lambda pair: (pair[0], pair[1].created_at), reverse=True)
    shown = ranked[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
    more = len(ranked) > number * PAGE_SIZE and number < MAX_BEST_PAGES
    hits = [_hit(row, user_id, criteria.marked) for _, row in shown]
    return Results(criteria, hits, criteria.query_string(page=number + 1) if more else "")
