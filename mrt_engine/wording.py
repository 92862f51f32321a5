"""Counted nouns in what operators read: "1 try", "3 tries", never "1 tries" or "1 try(s)"."""

from __future__ import annotations


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``count`` and the noun agreeing with it: ``plural(1, "try", "tries")`` is "1 try",
    ``plural(2, "event")`` is "2 events" (the plural is the singular plus "s" unless given)."""
    noun = singular if count == 1 else plural_form or f"{singular}s"
    return f"{count} {noun}"
