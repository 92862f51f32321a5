"""Finding the events an Events filter matches, a window at a time, without reading the table.

**What matches** is one SQL expression over an event row (:func:`plan`), which alone decides:

* a word matches when its case-folded form (``str.casefold``, as rule keywords fold) is a
  substring of :func:`search_text` of the title: the title as the console shows it (control and
  bidi characters removed), case-folded, so ``Straße`` finds ``STRASSE`` and ``千问`` finds
  ``通义千问3``;
* ``source:``, ``type:`` and ``matched:`` compare as they always did.

**Which rows get looked at** is the job of indexes. Each condition an index can answer lists
its rows newest first (:class:`_Stream`): words of three characters or more through
``event_search`` (FTS5, trigram tokenizer, over :func:`search_text` of every title); ``type:``
and ``source:`` through the indexes on ``event_type``, ``source_key`` and ``source`` (one list
per distinct value, found by a skip scan of the index); ``matched:yes`` through ``rule_hit``'s
index on the event. The search steps every such list in turn, in growing steps, testing each
row it meets with the whole expression. A list read down to id N has shown every match from
N up, so the search stops once some list has shown a page of matches, or has run out. It reads
at most (number of lists) times what the best list alone would: a rare word reads its few rows,
a common word one page, and a rare ``type:`` with a common word is found through the type index.

A filter no index can answer (``matched:no`` alone, words of one or two characters, which a
trigram index cannot find) reads the table newest first: quick when it matches often, a scan
when it matches rarely (type three characters, or add a field, to narrow it).

The search keeps no state between calls: each window is read afresh in one read transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

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


# A word in the title, by definition (the index only chooses which rows get here).
_WORD = f"instr({SEARCH_FUNCTION}(e.title), ?) > 0"


def _stream_sql(newer: bool) -> dict[str, str]:
    """The lists, as statements that also test each row: ``{where}`` is the filter; the last
    two placeholders are the edge and the step. For older windows ids go down, for newer up."""
    op, order = (">", "ASC") if newer else ("<", "DESC")

    def by_index(index: str, column: str) -> str:
        return (
            f"SELECT e.id, ({{where}}) FROM event AS e INDEXED BY {index} WHERE e.{column} = ?"
            f" AND e.id {op} ? ORDER BY e.id {order} LIMIT ?"
        )

    def joined(ids: str) -> str:
        return f"SELECT c.id, ({{where}}) FROM ({ids}) AS c LEFT JOIN event AS e ON e.id = c.id"

    return {
        "words": joined(
            "SELECT rowid AS id FROM event_search WHERE event_search MATCH ?"
            f" AND rowid {op} ? ORDER BY rowid {order} LIMIT ?"
        ),
        "matched": joined(
            "SELECT event_id AS id FROM rule_hit INDEXED BY rule_hit_event"
            f" WHERE event_id {op} ? GROUP BY event_id ORDER BY event_id {order} LIMIT ?"
        ),
        "type": by_index("event_event_type", "event_type"),
        "source": by_index("event_source", "source"),
        "source_key": by_index("event_source_key", "source_key"),
        "all": f"SELECT e.id, ({{where}}) FROM event AS e WHERE e.id {op} ?"
        f" ORDER BY e.id {order} LIMIT ?",
    }


def _distinct(execute, column: str, test: str, params: tuple) -> list[str]:
    """The distinct values of ``event.column`` that pass ``test`` (SQL over ``v``), by a skip
    scan of the column's index: one seek per distinct value, not a read of every row."""
    sql = (
        f"WITH RECURSIVE d(v) AS (SELECT (SELECT min({column}) FROM event)"
        f" UNION ALL SELECT (SELECT min({column}) FROM event WHERE {column} > d.v)"
        f" FROM d WHERE d.v IS NOT NULL)"
        f" SELECT v FROM d WHERE v IS NOT NULL AND ({test})"
    )
    return [row[0] for row in execute(sql, params).fetchall()]


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


def plan(flt: EventFilter, execute: Callable, *, newer: bool = False) -> Plan | None:
    """The SQL of ``flt`` and its streams; ``None`` when nothing can match (a word holding a
    character no title shows). ``execute(sql, params)`` runs the skip scans for field values."""
    sql = _stream_sql(newer)
    where: list[str] = []
    params: list = []
    conditions: list[list[_Stream]] = []
    if not all(_encodable(v) for v in (flt.source or "", flt.event_type or "")):
        return None  # the store holds no such text: nothing can equal or glob-match it
    indexed: list[str] = []
    for word in flt.text.split():
        folded = word.casefold()
        if not _encodable(folded) or clean(folded) != folded:
            return None  # search text holds neither lone surrogates nor removed characters
        where.append(_WORD)
        params.append(folded)
        if len(folded) >= TRIGRAM:
            indexed.append(_quoted(folded))
            continue
        terms = _terms(execute, folded)
        if not terms:
            return None  # no title holds it
        if len(terms) <= MAX_TERMS:
            indexed.append("(" + " OR ".join(map(_quoted, terms)) + ")")
    if indexed:  # FTS5 intersects the words itself
        conditions.append([_Stream(sql["words"], (" AND ".join(indexed),))])
    if flt.source:
        value = flt.source
        if "*" in value or "?" in value:
            where.append("glob(?, e.source_key)")
            params.append(_glob(value))
            keys = _distinct(execute, "source_key", "glob(?, v)", (_glob(value),))
            conditions.append([_Stream(sql["source_key"], (k,)) for k in keys])
        else:
            where.append("(e.source = ? OR substr(e.source_key, 1, ?) = ?)")
            params.extend((value, len(value), value))
            keys = _distinct(execute, "source_key", "substr(v, 1, ?) = ?", (len(value), value))
            conditions.append(
                [_Stream(sql["source"], (value,))]
                + [_Stream(sql["source_key"], (k,)) for k in keys]
            )
    if flt.event_type:
        value = flt.event_type
        if "*" in value or "?" in value:
            where.append("glob(?, e.event_type)")
            params.append(_glob(value))
            types = _distinct(execute, "event_type", "glob(?, v)", (_glob(value),))
        else:
            where.append("e.event_type = ?")
            params.append(value)
            types = [value]
        conditions.append([_Stream(sql["type"], (t,)) for t in types])
    if flt.matched is not None:
        hit = "EXISTS (SELECT 1 FROM rule_hit AS h WHERE h.event_id = e.id)"
        where.append(hit if flt.matched else f"NOT {hit}")
        if flt.matched:
            conditions.append([_Stream(sql["matched"])])
    if not conditions:
        conditions.append([_Stream(sql["all"])])
    return Plan(" AND ".join(where) or "1", params, conditions)


def matching_ids(
    flt: EventFilter,
    execute: Callable,
    *,
    before_id: int | None = None,
    after_id: int | None = None,
    limit: int,
) -> list[int]:
    """The ids of the ``limit`` events matching ``flt`` just below ``before_id`` (or the newest),
    or just above ``after_id``; newest first either way. Run it inside one read transaction.

    ``execute(sql, params)`` returns a cursor on the store's connection.
    """
    newer = after_id is not None
    found = plan(flt, execute, newer=newer)
    if found is None or limit <= 0:
        return []
    # Positions grow away from the window's start: ids going down for older rows, up for newer.
    sign = -1 if newer else 1
    start = after_id if newer else (before_id if before_id is not None else _TOP)
    for streams in found.conditions:
        for stream in streams:
            stream.edge = start
    matches: set[int] = set()  # positions of matching ids
    step = max(FIRST_STEP, limit)
    while True:
        reach = None  # every match at a position >= reach has been met
        for streams in found.conditions:
            shown = -_TOP  # how far all of this condition's streams have shown its rows
            for stream in streams:
                if not stream.done:
                    rows = execute(
                        stream.sql.format(where=found.where),
                        (*found.params, *stream.params, stream.edge, step),
                    ).fetchall()
                    matches.update(sign * i for i, ok in rows if ok)
                    if len(rows) < step:
                        stream.done = True
                    else:
                        stream.edge = min((i for i, _ in rows), key=lambda i: sign * i)
                if not stream.done:
                    shown = max(shown, sign * stream.edge)
            reach = shown if reach is None else min(reach, shown)
            if shown == -_TOP:  # a condition fully listed: its rows are all there is
                break
        window = sorted((p for p in matches if p >= reach), reverse=True)
        if len(window) >= limit or reach == -_TOP:
            return sorted((sign * p for p in window[:limit]), reverse=True)
        step = min(step * 2, LAST_STEP)
