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

A reader that uses a few fields of big objects (a page of GitHub issues: ~3 KB each, of which a
poll reads a dozen fields) passes a :class:`Shape`: the answer is then read straight into
msgspec Structs that hold only those fields, and everything else is skipped unread (never made
into Python objects, never walked, never freed), about a fifth of the CPU of reading it whole.
A Shape accepts every JSON value where it names a field (``Any``, or a union of a Struct with
every other JSON type), so an odd item is still the reader's to check and quarantine, one by
one. What msgspec refuses goes to ``json.loads`` as above (whole, depth-checked as always), and
is then converted into the same Shape.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from itertools import chain
from typing import Any

import msgspec

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


class Shape:
    """What a reader takes of an answer: ``of``, a msgspec type whose Structs name the fields
    read, and accepts any JSON value wherever it names one (see the module's docstring).
    ``structs``: the Struct types in it, which count as objects for the depth limit."""

    def __init__(self, of: Any, *structs: type[msgspec.Struct]) -> None:
        self.of = of
        self.containers = _CONTAINERS | frozenset(structs)
        self.decode = msgspec.json.Decoder(of).decode

    def convert(self, value: Any) -> Any:
        """``value`` (as ``json.loads`` reads it) in this shape."""
        try:
            return msgspec.convert(value, self.of)
        except msgspec.ValidationError as exc:  # a shape that refuses a JSON value: a bug
            raise UntrustedJsonError(f"unexpected JSON: {exc}") from None


def parse_json(data: bytes | str, *, max_depth: int = MAX_DEPTH, shape: Shape | None = None) -> Any:
    """``data`` as JSON, or :class:`UntrustedJsonError` (a ``ValueError``) saying why not;
    with ``shape``, only what it names, in its Structs."""
    too_deep = f"nested deeper than {max_depth} levels"
    if shape is not None:
        try:
            value = shape.decode(data)
        except Exception:  # refused (or too deep for it): json.loads decides, then the shape
            return shape.convert(parse_json(data, max_depth=max_depth))
        if _deeper_than_shaped(value, max_depth, shape.containers):
            raise UntrustedJsonError(too_deep)
        return value
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
    """Whether arrays and objects nest more than ``limit`` levels (iterative: no recursion)."""
    if _TRACKING_HOLDS:
        return _deeper_than_tracked(value, limit)
    return _deeper_than_walked(value, limit)


def _deeper_than_walked(value: Any, limit: int) -> bool:
    """:func:`_deeper_than`, one level at a time, every value looked at.

    In one comprehension per level rather than a generator per node: a page of issues holds
    thousands of strings and numbers, and a walk node by node took as long as the parse
    itself. ``json.loads`` makes only plain ``dict`` and ``list`` containers, so their exact
    types are what is looked for.
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


def _deeper_than_shaped(value: Any, limit: int, containers: frozenset[type]) -> bool:
    """:func:`_deeper_than` of a value read into a :class:`Shape`, whose Structs count as
    objects (their fields are found in C; a Struct also names its type there, which is no
    container). Only the fields read are there to walk: a few values an item."""
    level = [value] if type(value) in containers else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        level = [child for child in gc.get_referents(*level) if type(child) in containers]
    return False


def _deeper_than_tracked(value: Any, limit: int) -> bool:
    """:func:`_deeper_than`, where only containers are looked at, found in C.

    CPython's cycle collector tracks every list, and every dict that holds a list or a dict
    (a dict of strings and numbers alone is left untracked, and so is every string and
    number): the tracked children of a level are the next level's containers, except the
    untracked dicts, which hold no container and so can only add one level, at the bottom.
    ``gc.get_referents`` and ``filter(gc.is_tracked, ...)`` run in C, several times faster than
    a comprehension that tests the type of every value.
    """
    if type(value) not in _CONTAINERS:
        return False
    level = [value]
    depth = 1
    while True:
        if depth > limit:
            return True
        below = list(filter(gc.is_tracked, gc.get_referents(*level)))
        if not below:  # a level of leaves, unless an untracked dict hangs below: one more
            return depth == limit and any(
                type(child) in _CONTAINERS for child in gc.get_referents(*level)
            )
        level = below
        depth += 1


def _tracking_holds() -> bool:
    """Whether this interpreter tracks containers as :func:`_deeper_than_tracked` needs (a
    list always; a dict once it holds a container), on what its decoders make."""
    sample = b'[{"a": [{"b": {"c": 1}}], "d": {}}, [], {"e": "f"}]'
    try:
        values = [json.loads(sample)]
        if _fast_loads is not None:
            values.append(_fast_loads(sample))
        return all(
            gc.is_tracked(v)
            and gc.is_tracked(v[0])
            and gc.is_tracked(v[0]["a"])
            and gc.is_tracked(v[0]["a"][0])
            and gc.is_tracked(v[1])
            and _deeper_than_tracked(v, 3) == _deeper_than_walked(v, 3)
            and _deeper_than_tracked(v, 4) == _deeper_than_walked(v, 4)
            for v in values
        )
    except Exception:  # another interpreter's gc module: the walk, which needs none of it
        return False


_TRACKING_HOLDS = _tracking_holds()
