"""JSON from strangers: the one parse for upstream answers and channel replies.

``json.loads`` recurses once per nesting level, so 100 000 ``[`` raise ``RecursionError`` (not
a ``ValueError``), and a structure that only just fits (900 levels) parses but then breaks the
next recursive walk of it deeper in the stack: ``json.dumps`` into the store, text cleaning,
rule fields. No API we read nests more than about ten levels, so anything deeper than
:data:`MAX_DEPTH` is refused like any other malformed answer.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64


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
    """Whether arrays and objects nest more than ``limit`` levels (iterative: no recursion)."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
