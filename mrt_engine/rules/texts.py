"""The text of an event as rules see it, and the keyword scan shared by every rule.

The ``summary`` field is the event's whole body where the source gave one (bounded, see
:func:`mrt_engine.text.body_text`); the stored and sent summary is only its excerpt.

Keywords match as case-folded substrings. Rather than each rule searching each event, a
:class:`TextGate` scans an event once per distinct field list for every rule's keywords and
regex literals; the rules none of whose words occur are not evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mrt_engine.events import TrackerEvent


def _field_text(event: TrackerEvent, name: str) -> str:
    if name == "labels":
        return ", ".join(event.labels)
    if name == "summary":  # the stored summary is an excerpt: rules read the whole text
        return event.body or event.summary
    return getattr(event, name) or ""


class FieldTexts:
    """The text fields of one event, computed once per evaluation and shared by every rule.

    ``joined(names)`` is those fields joined by NUL (a character cleaned text never holds), so
    one search covers all of a rule's fields; ``folded`` is the same, case-folded.
    """

    __slots__ = ("_event", "_fields", "_folded", "_joined")

    def __init__(self, event: TrackerEvent) -> None:
        self._event = event
        self._fields: dict[str, str] = {}
        self._joined: dict[tuple[str, ...], str] = {}
        self._folded: dict[tuple[str, ...], str] = {}

    def field(self, name: str) -> str:
        value = self._fields.get(name)
        if value is None:
            value = self._fields[name] = _field_text(self._event, name)
        return value

    # joined and folded run for every event and every field list: lists, not generators, for
    # str.join, and one field is its own text (their bookkeeping cost more than casefold).
    def joined(self, names: tuple[str, ...]) -> str:
        value = self._joined.get(names)
        if value is None:
            field = self.field
            value = field(names[0]) if len(names) == 1 else "\x00".join([field(n) for n in names])
            self._joined[names] = value
        return value

    def folded(self, names: tuple[str, ...]) -> str:
        value = self._folded.get(names)
        if value is None:
            # casefold works character by character (NUL folds to itself): folding the joined
            # text is folding each field, in one call
            value = self._folded[names] = self.joined(names).casefold()
        return value

    def all_folded(self, lists: tuple[tuple[str, ...], ...]) -> list[str]:
        """``[self.folded(names) for names in lists]``, in one call: the gate's texts, made for
        every event, where the calls of ``folded``, ``joined`` and ``field`` cost more than
        their joining and folding."""
        fields, joined_texts, folded_texts = self._fields, self._joined, self._folded
        found = []
        for names in lists:
            folded = folded_texts.get(names)
            if folded is None:
                joined = joined_texts.get(names)
                if joined is None:
                    parts = []
                    for name in names:
                        value = fields.get(name)
                        if value is None:
                            value = fields[name] = _field_text(self._event, name)
                        parts.append(value)
                    joined = joined_texts[names] = (
                        parts[0] if len(parts) == 1 else "\x00".join(parts)
                    )
                folded = folded_texts[names] = joined.casefold()
            found.append(folded)
        return found


_POSITIONAL = re.compile(r"\^|\$|\\A|\\Z|\\z|\(\?[=!<]")


def joinable(pattern: str) -> bool:
    """Whether a search of the NUL-joined fields finds every match a per-field search finds.

    True unless the pattern has anchors or lookarounds, which see the field boundaries.
    """
    return _POSITIONAL.search(pattern) is None


def required_literal(pattern: str) -> str:
    """The longest run of plain characters that every match of ``pattern`` contains ("" if none).

    Read from the parsed pattern's top level only (groups and alternatives are not entered),
    which is always safe: such a run cannot be skipped by any match.
    """
    try:
        from re import _constants, _parser  # CPython's own regex parser

        parsed = _parser.parse(pattern)
    except Exception:  # another interpreter or a parser change: no shortcut, still correct
        return ""
    best, run = "", []
    for op, value in parsed:
        if op is _constants.LITERAL:
            run.append(chr(value))
            continue
        if len(run) > len(best):
            best = "".join(run)
        run = []
    if len(run) > len(best):
        best = "".join(run)
    return best


class RegexTest:
    """A rule's regular expression with the cheap tests that can rule an event out first."""

    __slots__ = ("joinable", "literal", "regex")

    def __init__(self, pattern: str) -> None:
        self.regex = re.compile(pattern)
        self.joinable = joinable(pattern)
        literal = required_literal(pattern)
        ignore_case = bool(self.regex.flags & re.IGNORECASE)
        # Case-insensitive literals are compared case-folded, and only when both sides are
        # ASCII, where folding and the regex engine's case rules agree.
        if ignore_case and not literal.isascii():
            literal = ""
        self.literal = (literal.lower(), True) if ignore_case else (literal, False)

    @property
    def gate_word(self) -> tuple[str, bool] | None:
        """The literal as a :class:`TextGate` word, or ``None`` if there is none."""
        literal, ignore_case = self.literal
        if not literal or "\x00" in literal:  # NUL joins fields: a word never holds it
            return None
        return (literal, False) if ignore_case else (literal.casefold(), True)

    def may_match(self, texts: FieldTexts, fields: tuple[str, ...]) -> bool:
        """False only when no field in ``fields`` can hold a match."""
        literal, folded = self.literal
        if literal:
            if folded:
                joined = texts.joined(fields)
                if joined.isascii() and literal not in texts.folded(fields):
                    return False
            elif literal not in texts.joined(fields):
                return False
        if not self.joinable:
            return True
        return self.regex.search(texts.joined(fields)) is not None


class TextGate:
    """Which rules can match an event's text at all, from one pass per distinct field list.

    A rule's gate words are its keywords and the literal every match of each of its regexes
    holds; a rule with a regex without such a literal has no gate and is always evaluated. Each
    distinct word is looked for once (a substring test of the case-folded fields, much faster in
    CPython than one alternation regex), however many rules share it. Literals of
    case-insensitive regexes are only trusted when the text is ASCII.

    Rules are named by bits (bit ``i``: the rule at position ``i``): the rules a word lets
    through are one ``int``, and a scan's result is their union, one ``|`` per word found.
    """

    def __init__(self, rules: Sequence[tuple[tuple[str, ...], Sequence[tuple[str, bool]]]]) -> None:
        """``rules``: per rule position, its fields and its gate words as (folded word,
        trusted on any text); an empty list means the rule has no gate."""
        groups: dict[tuple[str, ...], dict[tuple[str, bool], int]] = {}
        gated = 0
        for position, (fields, words) in enumerate(rules):
            if not words:
                continue
            gated |= 1 << position
            group = groups.setdefault(fields, {})
            for word in words:
                group[word] = group.get(word, 0) | 1 << position
        self.gated = gated  # the rules with a gate, as bits
        self._lists = tuple(groups)  # the field lists, in the order of _groups
        self._groups = []
        for fields, words in groups.items():
            ascii_only = tuple((w, r) for (w, exact), r in words.items() if not exact)
            any_of = 0
            for _w, r in ascii_only:
                any_of |= r
            self._groups.append(
                (
                    fields,
                    tuple((w, r) for (w, exact), r in words.items() if exact),
                    ascii_only,
                    any_of,  # what the ascii-only words let through on other text: all of it
                )
            )

    def open(self, texts: FieldTexts) -> int:
        """The gated rules (as bits) with a gate word in their fields of the event."""
        passed = 0
        for (fields, exact, ascii_only, any_of), folded in zip(
            self._groups, texts.all_folded(self._lists), strict=True
        ):
            for word, rules in exact:
                if word in folded:
                    passed |= rules
            if ascii_only:
                if not texts.joined(fields).isascii():
                    passed |= any_of
                    continue
                for word, rules in ascii_only:
                    if word in folded:
                        passed |= rules
        return passed
