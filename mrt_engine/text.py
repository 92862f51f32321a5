"""Untrusted text handling: the one place where control characters are removed.

Titles, bodies and model names come from strangers. Before such text reaches a terminal, a chat
message or a log line it passes through :func:`clean`, which removes every character that could
move the cursor, change colours, hide text or reorder it (C0 except tab/newline, DEL, C1, and the
bidi embedding/override/isolate controls).
"""

from __future__ import annotations

import re

# C0 controls except \t (0x09) and \n (0x0a); DEL; C1; bidi embeddings/overrides (U+202A-202E),
# bidi isolates (U+2066-2069). An ESC (0x1b) is in C0, so ANSI/OSC sequences lose their
# introducer and become inert text.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_WHITESPACE = re.compile(r"\s+")


def clean(text: object) -> str:
    """Return ``text`` as a string with control and bidi-override characters removed."""
    if text is None:
        return ""
    if not isinstance(text, str):
        text = str(text)
    return _CONTROL.sub("", text)


def clean_line(text: object) -> str:
    """Like :func:`clean`, and fold all whitespace (newlines too) into single spaces."""
    return _WHITESPACE.sub(" ", clean(text)).strip()


def excerpt(text: object, limit: int) -> str:
    """A one-line excerpt of at most ``limit`` characters, ending in an ellipsis when cut."""
    line = clean_line(text)
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
