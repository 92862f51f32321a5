"""Counted nouns in what operators read: "1 try", "3 tries", never "1 tries" or "1 try(s)"."""

from __future__ import annotations


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``count`` and the noun agreeing with it: ``plural(1, "try", "tries")`` is "1 try",
    ``plural(2, "event")`` is "2 events" (the plural is the singular plus "s" unless given)."""
    noun = singular if count == 1 else plural_form or f"{singular}s"
    return f"{count} {noun}"


def size(count: int) -> str:
    """Bytes as an operator reads them: ``"512 B"``, ``"8.3 MB"``, ``"2.97 GB"`` (powers of 1000)."""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1000 or unit == "GB":
            break
        value /= 1000
    if unit == "B":
        return f"{count} B"
    return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
