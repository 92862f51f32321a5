"""The Events search in PostgreSQL's words (the algorithm is :mod:`mrt_engine.store.search`'s).

* Words: ``event_search.title`` holds :func:`~mrt_engine.store.search.indexed_text` of every
  title (written with the event by ``batch.write_batch``), under a ``pg_trgm`` GIN index. A
  word is a substring of it: ``title LIKE '%word%'`` (LIKE's wildcards in the word escaped),
  which the index answers for a word of three characters or more (pg_trgm extracts the
  trigrams of the word's alphanumeric runs and rechecks each row it finds). A shorter word has
  no trigram of its own (pg_trgm cannot list the trigrams that start with it, as FTS5's
  vocabulary can): it is tested on the rows the other conditions list, or, alone, on the
  events read newest first, like SQLite's common short words. pg_trgm's letters are those of
  the database's locale: in a ``C`` one it finds no trigram in Chinese, and such a word is
  found by the recheck of every title (README: create the database with a UTF-8 locale).
* The test of a word reads the event's search row by its key and looks for the word in it
  (``strpos``): the folding is Python's, so PostgreSQL never folds anything itself. Whether a
  rule hit the event is a lookup of its first hit, per row.
* Fields: the btree indexes on ``(event_type, id)``, ``(source, id)`` and
  ``(source_key, source, id)`` list a value's events in id order, as SQLite's indexes do with
  their implicit rowid; patterns are ``LIKE`` patterns (GLOB's ``*`` and ``?``, nothing else).
* No index hints: the planner chooses, and ``tests/test_query_plans.py`` checks its choices on
  a store big enough for them to matter.
"""

from __future__ import annotations

from collections.abc import Callable

from mrt_engine.store.search import TRIGRAM, _encodable, _Stream, direction


def like_escaped(text: str) -> str:
    """``text`` taken literally in a LIKE pattern (whose escape character is ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def like_of_glob(pattern: str) -> str:
    """A ``*``/``?`` pattern as a LIKE pattern: every other character literal."""
    return "".join({"*": "%", "?": "_"}.get(char, like_escaped(char)) for char in pattern)


class PostgresSearch:
    """The search on PostgreSQL: ``pg_trgm`` over the folded titles, ``LIKE``, no hints."""

    word_test = "strpos((SELECT s.title FROM event_search AS s WHERE s.rowid = e.id), ?) > 0"
    # A value looked up per row, not EXISTS: PostgreSQL may answer an EXISTS by hashing every
    # event_id of rule_hit, and a step reads a window of events, not the whole table.
    hit_test = "((SELECT 1 FROM rule_hit AS h WHERE h.event_id = e.id LIMIT 1) IS NOT NULL)"
    step_sql = (
        "SELECT count(*), min(id), max(id),"
        " string_agg(CASE WHEN ok <> 0 THEN id::text END, ',') FROM ({}) AS s"
    )

    def storable(self, text: str) -> bool:
        return _encodable(text) and "\x00" not in text  # its text type holds no NUL

    def indexed_by(self, index: str) -> str:
        return ""

    def joined(self, ids: str) -> str:
        # Each listed id's event by its key (a lateral lookup, kept apart by its LIMIT): a step
        # lists at most a window of ids, and a hash join would read every event to find them.
        return (
            f"SELECT c.id AS id, ({{where}}) AS ok FROM ({ids}) AS c LEFT JOIN LATERAL"
            " (SELECT * FROM event WHERE event.id = c.id LIMIT 1) AS e ON true"
        )

    def glob(self, column: str, pattern: str) -> tuple[str, tuple]:
        return f"{column} LIKE ?", (like_of_glob(pattern),)

    def word_streams(
        self, words: list[str], execute: Callable, newer: bool
    ) -> list[_Stream] | None:
        patterns = tuple(f"%{like_escaped(w)}%" for w in words if len(w) >= TRIGRAM)
        if not patterns:
            return []
        op, order = direction(newer)
        likes = " AND ".join("s.title LIKE ?" for _ in patterns)
        sql = self.joined(
            f"SELECT s.rowid AS id FROM event_search AS s WHERE {likes}"
            f" AND s.rowid {op} ? ORDER BY s.rowid {order} LIMIT ?"
        )
        return [_Stream(sql, patterns)]


POSTGRESQL = PostgresSearch()
