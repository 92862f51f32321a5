"""Finding the events an Events filter matches, a window at a time, without reading the table.

**What matches** is one SQL expression over an event row (:func:`plan`), and it alone decides:

* a word matches when its case-folded form (``str.casefold``, as rule keywords fold) is a
  substring of :func:`search_text` of the title: the title as the console shows it (control and
  bidi characters removed), case-folded, so ``Straße`` finds ``STRASSE`` and ``千问`` finds
  ``通义千问3``;
* ``source:``, ``type:`` and ``matched:`` compare as they always did.

**Which rows get looked at** is the job of indexes. Each condition an index can answer lists
its rows newest first (a :class:`_Stream` each, or several whose union holds them): the words
through ``event_search``, an FTS5 trigram index of every title's search text (a word of three
characters or more is the phrase of its trigrams; a shorter one, the trigrams starting with it);
``type:`` and ``source:`` through the indexes on ``event_type``, ``source`` and
``(source_key, source)``, one list per distinct value, found by a skip scan; ``matched:yes``
through ``rule_hit``'s index on the event. The search reads every list in turn, in steps that
double, testing each row it meets with the whole expression. A list read down to id N has shown
every match from N up, so the search stops as soon as the ids some condition's lists have
covered hold a window of matches, or that condition's lists are exhausted. It reads at most (the
number of lists) times what the best list alone would: a rare word reads its few rows, a common
one a window, and a rare ``type:`` with a common word is found through the type index.

Only a filter no index can answer reads the table newest first: ``matched:no`` alone (most
events match no rule, so a window fills fast; a store where nearly all match reads more), or a
word of one or two letters so common that more than MAX_TERMS trigrams start with it (found
within the first rows). The search keeps no state between calls.

The index is written with each event by :func:`mrt_engine.batch.write_batch`, in the same
transaction (contentless: the folded titles are never read back, and the title is in ``event``),
and filled for older events by migration 3.

**Backends.** The algorithm above is the same on both; what each says in its own SQL is one
object, chosen once per search by :func:`dialect_of`: :data:`SQLITE` (this module: FTS5, ``INDEXED
BY``, ``glob()``, the Python function) or ``search_pg.POSTGRESQL`` (:mod:`.search_pg`: the
folded titles' ``pg_trgm`` index, ``LIKE``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from mrt_engine.text import clean

if TYPE_CHECKING:
    from mrt_engine.store.feed import EventFilter

# The SQL name of search_text, registered on every connection of the store (and of migrations).
SEARCH_FUNCTION = "mrt_search_text"
# The trigram tokenizer indexes every run of three characters: a longer word is the phrase of
# its trigrams. A shorter one is found through the trigrams that start with it (listed from
# the index's terms): the index holds each title followed by PAD, so every character of a title
# starts a trigram, and PAD is whitespace, which no word holds (words are split on it).
TRIGRAM = 3
PAD = "  "
# A short word starting more distinct trigrams than this is common: checked, not listed.
MAX_TERMS = 128
FIRST_STEP = 256
LAST_STEP = 65536
_TOP = 2**63 - 1  # above every id


def search_text(text: str | None) -> str:
    """The text words are searched in: ``text`` as the console shows it, case-folded.

    Character by character (neither step looks at neighbours), so a word folded the same way is
    a substring of it exactly when the word matches, whether found by the index or by a scan.
    """
    return clean(text).casefold()


def indexed_text(title: str | None) -> str:
    """What the search index holds for an event with this title."""
    return search_text(title) + PAD


def register(conn: sqlite3.Connection) -> None:
    """Make :func:`search_text` callable from SQL on ``conn``."""
    conn.create_function(SEARCH_FUNCTION, 1, search_text, deterministic=True)


def _quoted(word: str) -> str:
    """``word`` as one FTS5 string: a phrase of its trigrams, consecutive, i.e. a substring."""
    return '"' + word.replace('"', '""') + '"'


def _encodable(text: str) -> bool:
    """Whether ``text`` can be part of stored text at all (UTF-8: no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class _Stream:
    """One list of candidate ids, read in steps away from ``edge`` (newest first for older
    windows, oldest first for newer ones). ``sql`` selects ``id`` with two placeholders left
    for the edge and the step size, after ``params``."""

    sql: str
    params: tuple = ()
    edge: int = 0
    done: bool = False


@dataclass
class Plan:
    """The filter as SQL: ``where`` over the event row ``e`` (with ``params``), and for each
    condition an index can answer, the streams whose union holds every row it matches."""

    where: str
    params: list = field(default_factory=list)
    conditions: list[list[_Stream]] = field(default_factory=list)


class Dialect(Protocol):
    """What the search says in one backend's SQL: the word index and test, pattern matching,
    index hints and the aggregate of a step. The rest of the search is the same on both."""

    word_test: str  # SQL over the event row ``e``: its shown title holds the folded word ``?``
    hit_test: str  # SQL over ``e``: a rule hit it
    step_sql: str  # one step of a stream (``{}``): count, min id, max id, matching ids as text

    def storable(self, text: str) -> bool:
        """Whether the store can hold ``text`` at all (else nothing stored equals it)."""

    def indexed_by(self, index: str) -> str:
        """An index hint after a table's name, where the backend takes one."""

    def joined(self, ids: str) -> str:
        """A stream of the ids ``ids`` selects, with whether each event matches (``ok``)."""

    def glob(self, column: str, pattern: str) -> tuple[str, tuple]:
        """SQL (and its parameters) testing ``column`` against a ``*``/``?`` pattern."""

    def word_streams(
        self, words: list[str], execute: Callable, newer: bool
    ) -> list[_Stream] | None:
        """Streams whose union holds every row holding all the folded ``words`` ([]: no index
        can list them; ``None``: no row holds them)."""


def direction(newer: bool) -> tuple[str, str]:
    """The id comparison and order of a stream: ids go down for older windows, up for newer."""
    return (">", "ASC") if newer else ("<", "DESC")


def _stream_sql(dialect: Dialect, newer: bool) -> dict[str, str]:
    """The lists, as queries of each row's ``id`` and whether it matches (``ok``: ``{where}``
    is the filter); the last two placeholders are the edge and the step. For older windows ids
    go down, for newer ones up."""
    op, order = direction(newer)

    def by_index(index: str, equal: str) -> str:
        return (
            f"SELECT e.id AS id, ({{where}}) AS ok FROM event AS e{dialect.indexed_by(index)}"
            f" WHERE {equal} AND e.id {op} ? ORDER BY e.id {order} LIMIT ?"
        )

    return {
        "matched": dialect.joined(
            f"SELECT event_id AS id FROM rule_hit{dialect.indexed_by('rule_hit_event')}"
            f" WHERE event_id {op} ? GROUP BY event_id ORDER BY event_id {order} LIMIT ?"
        ),
        "type": by_index("event_event_type", "e.event_type = ?"),
        "source": by_index("event_source", "e.source = ?"),
        "pair": by_index("event_source_key", "e.source_key = ? AND e.source = ?"),
        "all": f"SELECT e.id AS id, ({{where}}) AS ok FROM event AS e WHERE e.id {op} ?"
        f" ORDER BY e.id {order} LIMIT ?",
    }


def _values(
    execute,
    dialect: Dialect,
    index: str,
    columns: tuple[str, ...],
    test: str,
    params: tuple,
    fixed: tuple = (),
) -> list[tuple]:
    """The distinct values of ``event``'s ``columns`` that pass ``test`` (SQL over the row), by
    a skip scan of ``index`` (on those columns): one seek per distinct value, however many rows
    hold it. ``fixed``: the values of the leading columns already chosen."""
    column = columns[len(fixed)]
    equal = "".join(f"{c} = ? AND " for c in columns[: len(fixed)])
    found: list[tuple] = []
    op, last = ">=", ""  # the empty text is below every text
    while True:
        row = execute(
            f"SELECT {column}, ({test}) FROM event{dialect.indexed_by(index)}"
            f" WHERE {equal}{column} {op} ? ORDER BY {column} LIMIT 1",
            (*params, *fixed, last),
        ).fetchone()
        if row is None:
            return found
        op, last = ">", row[0]
        value = (*fixed, last)
        if len(value) < len(columns):
            found.extend(_values(execute, dialect, index, columns, test, params, value))
        elif row[1]:
            found.append(value)


# FTS5 reads U+FFFE and U+FFFF as U+FFFD (into the index and from queries alike): its terms
# hold U+FFFD for them. Its matches are a superset then, and the word's test decides.
_FTS_READS = {0xFFFE: 0xFFFD, 0xFFFF: 0xFFFD}


def _terms(execute, prefix: str) -> list[str]:
    """The index's trigrams that start with ``prefix`` (up to MAX_TERMS + 1 of them), by a skip
    scan of its vocabulary: one seek per trigram, however many titles hold it."""
    prefix = prefix.translate(_FTS_READS)
    terms: list[str] = []
    low: str | None = prefix
    while low is not None and len(terms) <= MAX_TERMS:
        row = execute(
            "SELECT term FROM event_search_terms WHERE term >= ? LIMIT 1", (low,)
        ).fetchone()
        if row is None or not row[0].startswith(prefix):
            break
        terms.append(row[0])
        low = _after(row[0])
    return terms


def _after(term: str) -> str | None:
    """The least string above ``term`` and everything it starts (None: there is none). A seek
    to it skips the term; ``term > ?`` would step through each of its occurrences."""
    while term:
        last = ord(term[-1])
        if last < 0x10FFFF:
            return term[:-1] + chr(0xE000 if last == 0xD7FF else last + 1)  # no surrogates
        term = term[:-1]
    return None


def _glob(pattern: str) -> str:
    """A ``*``/``?`` pattern for SQLite's GLOB, with GLOB's ``[`` taken literally."""
    return pattern.replace("[", "[[]")


class SqliteSearch:
    """The search in SQLite's words: the FTS5 trigram index, ``INDEXED BY``, ``glob()`` and
    :func:`search_text` called from SQL."""

    # A word in the title, by definition (the index only chooses which rows get here).
    word_test = f"instr({SEARCH_FUNCTION}(e.title), ?) > 0"
    hit_test = "EXISTS (SELECT 1 FROM rule_hit AS h WHERE h.event_id = e.id)"
    step_sql = (
        "SELECT count(*), min(id), max(id), group_concat(CASE WHEN ok THEN id END) FROM ({}) AS s"
    )

    def storable(self, text: str) -> bool:
        return _encodable(text)

    def indexed_by(self, index: str) -> str:
        return f" INDEXED BY {index}"

    def joined(self, ids: str) -> str:
        return (
            f"SELECT c.id AS id, ({{where}}) AS ok FROM ({ids}) AS c"
            " LEFT JOIN event AS e ON e.id = c.id"
        )

    def glob(self, column: str, pattern: str) -> tuple[str, tuple]:
        return f"glob(?, {column})", (_glob(pattern),)

    def word_streams(
        self, words: list[str], execute: Callable, newer: bool
    ) -> list[_Stream] | None:
        indexed = []
        for folded in words:
            if len(folded) >= TRIGRAM:
                indexed.append(_quoted(folded))
                continue
            terms = _terms(execute, folded)
            if not terms:
                return None  # no title holds it
            if len(terms) <= MAX_TERMS:
                indexed.append("(" + " OR ".join(map(_quoted, terms)) + ")")
        if not indexed:
            return []
        op, order = direction(newer)
        sql = self.joined(
            "SELECT rowid AS id FROM event_search WHERE event_search MATCH ?"
            f" AND rowid {op} ? ORDER BY rowid {order} LIMIT ?"
        )
        return [_Stream(sql, (" AND ".join(indexed),))]  # FTS5 intersects the words itself


SQLITE = SqliteSearch()


def dialect_of(db: Any) -> Dialect:
    """The dialect of the store's Peewee database ``db`` (or the proxy bound to it)."""
    from peewee import PostgresqlDatabase

    if isinstance(getattr(db, "obj", db), PostgresqlDatabase):
        from mrt_engine.store.search_pg import POSTGRESQL

        return POSTGRESQL
    return SQLITE


def plan(
    flt: EventFilter, execute: Callable, *, newer: bool = False, dialect: Dialect = SQLITE
) -> Plan | None:
    """The SQL of ``flt`` and its streams; ``None`` when nothing can match (a word holding a
    character no title shows, a short word no title holds). ``execute(sql, params)`` runs the
    lookups of field values and trigrams."""
    if not all(dialect.storable(v) for v in (flt.source or "", flt.event_type or "")):
        return None  # the store holds no such text: nothing can equal or glob-match it
    sql = _stream_sql(dialect, newer)
    tests: list[tuple[int, str, tuple]] = []  # (cost rank, SQL over e, its parameters)
    conditions: list[list[_Stream]] = []
    if flt.text:
        words = _words(flt.text, dialect)
        streams = None if words is None else dialect.word_streams(words, execute, newer)
        if words is None or streams is None:
            return None
        # Calls into Python (SQLite) or reads the search row (PostgreSQL): last.
        tests.extend((2, dialect.word_test, (folded,)) for folded in words)
        if streams:
            conditions.append(streams)
    if flt.source:
        tests.append(_source(flt.source, execute, dialect, sql, conditions))
    if flt.event_type:
        tests.append(_event_type(flt.event_type, execute, dialect, sql, conditions))
    if flt.matched is not None:
        hit = dialect.hit_test
        tests.append((1, hit if flt.matched else f"NOT {hit}", ()))
        if flt.matched:
            conditions.append([_Stream(sql["matched"])])
    if not conditions:
        conditions.append([_Stream(sql["all"])])
    # Cheapest first, and nested so that SQLite stops at the first that fails (an AND in a
    # result column evaluates both sides).
    where, params = "1", []
    for _, test, args in sorted(tests, key=lambda t: t[0], reverse=True):
        where = f"CASE WHEN {test} THEN {where} ELSE 0 END"
        params[:0] = args
    return Plan(where, params, conditions)


def _words(text: str, dialect: Dialect) -> list[str] | None:
    """The folded words of ``text``; ``None`` when no row can match."""
    folded_words = []
    for word in text.split():
        folded = word.casefold()
        if not dialect.storable(folded) or clean(folded) != folded:
            return None  # search text holds neither lone surrogates nor removed characters
        folded_words.append(folded)
    return folded_words


def _source(
    value: str, execute, dialect: Dialect, sql: dict, conditions: list
) -> tuple[int, str, tuple]:
    """``source:value``: its test, and its streams appended to ``conditions``."""
    if "*" in value or "?" in value:
        test = (0, *dialect.glob("e.source_key", value))
        lookup, args = dialect.glob("source_key", value)
        streams = []
    else:
        test = (0, "(e.source = ? OR substr(e.source_key, 1, ?) = ?)", (value, len(value), value))
        # The platform's events, and those of keys starting with the value that another
        # platform wrote (usually none: a key starts with its own platform's name).
        lookup, args = "source != ? AND substr(source_key, 1, ?) = ?", (value, len(value), value)
        streams = [_Stream(sql["source"], (value,))]
    pairs = _values(execute, dialect, "event_source_key", ("source_key", "source"), lookup, args)
    conditions.append(streams + [_Stream(sql["pair"], pair) for pair in pairs])
    return test


def _event_type(
    value: str, execute, dialect: Dialect, sql: dict, conditions: list
) -> tuple[int, str, tuple]:
    """``type:value``: its test, and its streams appended to ``conditions``."""
    if "*" in value or "?" in value:
        lookup, args = dialect.glob("event_type", value)
        types = _values(execute, dialect, "event_event_type", ("event_type",), lookup, args)
        conditions.append([_Stream(sql["type"], t) for t in types])
        return (0, *dialect.glob("e.event_type", value))
    conditions.append([_Stream(sql["type"], (value,))])
    return (0, "e.event_type = ?", (value,))


def matching_ids(
    flt: EventFilter,
    execute: Callable,
    *,
    before_id: int | None = None,
    after_id: int | None = None,
    limit: int,
    dialect: Dialect = SQLITE,
) -> list[int]:
    """The ids of the ``limit`` events matching ``flt`` just below ``before_id`` (or the newest),
    or just above ``after_id``; newest first either way. Run it inside one read transaction.

    ``execute(sql, params)`` returns a cursor on the store's connection, whose backend
    ``dialect`` speaks (:func:`dialect_of`).
    """
    newer = after_id is not None
    found = plan(flt, execute, newer=newer, dialect=dialect)
    if found is None or limit <= 0:
        return []
    # Positions grow away from the window's start: ids going down for older rows, up for newer.
    sign = -1 if newer else 1
    start = after_id if newer else (before_id if before_id is not None else _TOP)
    for streams in found.conditions:
        for stream in streams:
            stream.edge = start
    matches: set[int] = set()  # positions of matching ids
    # One row per step: how many ids the list gave, how far it got, which ones match.
    step_sql = dialect.step_sql
    step = max(FIRST_STEP, limit)
    while True:
        reach = None  # every match at a position >= reach has been met
        for streams in found.conditions:
            shown = -_TOP  # how far all of this condition's streams have shown its rows
            for stream in streams:
                if not stream.done:
                    count, low, high, ok = execute(
                        step_sql.format(stream.sql.format(where=found.where)),
                        (*found.params, *stream.params, stream.edge, step),
                    ).fetchone()
                    if ok:
                        matches.update(sign * int(i) for i in ok.split(","))
                    if count < step:
                        stream.done = True
                    else:
                        stream.edge = high if newer else low
                if not stream.done:
                    shown = max(shown, sign * stream.edge)
            reach = shown if reach is None else min(reach, shown)
            if shown == -_TOP:  # a condition fully listed: its rows are all there is
                break
        window = sorted((p for p in matches if p >= reach), reverse=True)
        if len(window) >= limit or reach == -_TOP:
            return sorted((sign * p for p in window[:limit]), reverse=True)
        step = min(step * 2, LAST_STEP)
