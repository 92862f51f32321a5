"""JSON from strangers: the one parse for upstream answers and channel replies.

``json.loads`` recurses once per nesting level, so 100 000 ``[`` raise ``RecursionError`` (not
a ``ValueError``), and a structure that only just fits (900 levels) parses but then breaks the
next recursive walk of it deeper in the stack: ``json.dumps`` into the store, text cleaning,
rule fields. No API we read nests more than about ten levels, so anything deeper than
:data:`MAX_DEPTH` is refused like any other malformed answer.

The parse itself is msgspec's compiled decoder where it is installed (a dependency; about half
the CPU of ``json.loads`` on a page of issues, the costliest step of a poll's Python). It is
only trusted with what it accepts: whatever it refuses (a lone surrogate escape, ``NaN``, a
number past a double, a byte order mark, UTF-16, nesting deeper than C's stack allows, or real
garbage) goes to ``json.loads``, which decides as before. What both accept they read alike (the
last of duplicate keys wins, integers stay exact, floats round the same), so the values a poll
sees do not depend on which one parsed them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import chain
from typing import Any

MAX_DEPTH = 64
_CONTAINERS = frozenset((dict, list))


def _compiled_decoder() -> Callable[[bytes | str], Any] | None:
    """msgspec's JSON decoder (untyped: plain dicts, lists, str, int, float, bool, None), or
    ``None`` where msgspec is not installed."""
    try:
        from msgspec.json import Decoder
    except ImportError:
        return None
    return Decoder().decode


_fast_loads = _compiled_decoder()


class UntrustedJsonError(ValueError):
    """Not JSON we accept (a syntax error, bad UTF-8, or nested too deeply); one line."""


def parse_json(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """``data`` as JSON, or :class:`UntrustedJsonError` (a ``ValueError``) saying why not."""
    too_deep = f"nested deeper than {max_depth} levels"
    try:
        value = _loads(data)
    except RecursionError:
        raise UntrustedJsonError(too_deep) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise UntrustedJsonError(str(exc)) from None
    if _deeper_than(value, max_depth):
        raise UntrustedJsonError(too_deep)
    return value


def _loads(data: bytes | str) -> Any:
    """``json.loads(data)``, by the compiled decoder when it accepts ``data``."""
    if _fast_loads is not None:
        try:
            return _fast_loads(data)
        except Exception:  # refused (or too deep for it): json.loads decides, as it always did
            pass
    return json.loads(data)


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels (iterative: no recursion).

    One level at a time, in one comprehension per level rather than a generator per node: a
    page of issues holds thousands of strings and numbers, and a walk node by node took as
    long as the parse itself. ``json.loads`` makes only plain ``dict`` and ``list``
    containers, so their exact types are what is looked for.
    """
    level = [value] if type(value) in _CONTAINERS else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        children = chain.from_iterable([n.values() if type(n) is dict else n for n in level])
        level = [child for child in children if type(child) in _CONTAINERS]
    return False
