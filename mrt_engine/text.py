"""Untrusted text handling: the one place where control characters are removed.

Titles, bodies and model names come from strangers. Before such text reaches a terminal, a chat
message or a log line it passes through :func:`clean`, which removes every character that could
move the cursor, change colours, hide text or reorder it (C0 except tab/newline, DEL, C1, and the
bidi embedding/override/isolate controls).

Before any text is written to the store it passes through :func:`storable`: UTF-8 (and so
SQLite) cannot encode a lone surrogate, which JSON allows (``"\\ud800"``) and Python keeps.
"""

from __future__ import annotations

import re

# C0 controls except \t (0x09) and \n (0x0a); DEL; C1; bidi embeddings/overrides (U+202A-202E),
# bidi isolates (U+2066-2069). An ESC (0x1b) is in C0, so ANSI/OSC sequences lose their
# introducer and become inert text.
_CONTROL_CODES = [
    *range(0x00, 0x09),
    *range(0x0B, 0x20),
    *range(0x7F, 0xA0),
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
]
_DELETE_CONTROL = dict.fromkeys(_CONTROL_CODES)
# Surrogates are the only code points of a Python str that UTF-8 cannot encode.
_SURROGATES = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def storable(text: str) -> str:
    """``text`` with every code point UTF-8 cannot encode (a lone surrogate), and U+0000
    (which PostgreSQL's text cannot hold, so one such title would fail its source's every
    poll there), replaced by U+FFFD: the same on both store backends.

    On the hot path of every poll: an ASCII string (``isascii`` reads a flag, it does not scan)
    costs one search for U+0000 in C, and any other string one UTF-8 encoding in C as well
    (three times faster than a regex scan of it); only a string that holds one is rewritten.
    """
    if "\x00" in text:
        text = text.replace("\x00", REPLACEMENT)
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATES.sub(REPLACEMENT, text)
    return text


def clean(text: object) -> str:
    """Return ``text`` as a string with control and bidi-override characters removed."""
    if text is None:
        return ""
    if not isinstance(text, str):
        text = str(text)
    if text.isprintable():  # every removed character is non-printable: the common fast path
        return text
    return text.translate(_DELETE_CONTROL)


def clean_line(text: object) -> str:
    """Like :func:`clean`, and fold all whitespace (newlines too) into single spaces."""
    if isinstance(text, str) and text.isprintable():
        # Every whitespace character but the ASCII space is unprintable: a printable text with
        # no run of spaces and none at either end is one clean line already (most titles).
        if "  " not in text and text[:1] != " " and text[-1:] != " ":
            return text
        return " ".join(text.split())
    return " ".join(clean(text).split())  # split(): runs of str.isspace() characters


# The most text of one item that rules read (a log pasted into an issue can be megabytes).
BODY_MAX_CHARS = 64 * 1024


def body_text(text: object, limit: int = BODY_MAX_CHARS) -> str:
    """The whole text of an item as rules match it: cleaned, one line (like :func:`excerpt`, so
    a phrase split by a line break still matches), at most ``limit`` characters."""
    if text is None:
        return ""
    if not isinstance(text, str):
        text = str(text)
    # Cut before cleaning so a huge paste costs little; folding whitespace only shortens it.
    return clean_line(text[: limit * 4])[:limit]


def excerpt(text: object, limit: int) -> str:
    """A one-line excerpt of at most ``limit`` characters, ending in an ellipsis when cut."""
    return line_excerpt(clean_line(text), limit)


def line_excerpt(line: str, limit: int) -> str:
    """:func:`excerpt` of text that is one clean line already: the result of :func:`clean_line`,
    or of :func:`body_text` (a body's summary), which is not cleaned again."""
    line = line.rstrip(" ")  # a body cut at its limit may end in the one space cleaning drops
    if len(line) <= limit:
        return line
    if limit <= 1:
        return "…"[:limit]
    cut = line[: limit - 1]
    # Prefer a word boundary when one is reasonably close to the end.
    space = cut.rfind(" ")
    if space >= limit * 0.7:
        cut = cut[:space]
    return cut.rstrip() + "…"
