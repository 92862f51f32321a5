"""JSON from strangers: the one parse for upstream answers and channel replies.

``json.loads`` recurses once per nesting level, so 100 000 ``[`` raise ``RecursionError`` (not
a ``ValueError``), and a structure that only just fits (900 levels) parses but then breaks the
next recursive walk of it deeper in the stack: ``json.dumps`` into the store, text cleaning,
rule fields. No API we read nests more than about ten levels, so anything deeper than
:data:`MAX_DEPTH` is refused like any other malformed answer.
"""

from __future__ import annotations

import json
from itertools import chain
from typing import Any

MAX_DEPTH = 64
_CONTAINERS = frozenset((dict, list))


class UntrustedJsonError(ValueError):
    """Not JSON we accept (a syntax error, bad UTF-8, or nested too deeply); one line."""


def parse_json(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """``data`` as JSON, or :class:`UntrustedJsonError` (a ``ValueError``) saying why not."""
    too_deep = f"nested deeper than {max_depth} levels"
    try:
        value = json.loads(data)
    except RecursionError:
        raise UntrustedJsonError(too_deep) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise UntrustedJsonError(str(exc)) from None
    if _deeper_than(value, max_depth):
        raise UntrustedJsonError(too_deep)
    return value


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
