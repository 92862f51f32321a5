"""Quarantine: one upstream item that cannot be processed never blocks its source.

A source turns each item of an answer into events through :meth:`Quarantine.each`. An item
whose normalisation fails (a missing field, a wrong type, a bug met by odd data) is set aside
as a :class:`Quarantined` record with its upstream id, the error and the start of the item as
received (of an item read into a :class:`~mrt_engine.untrusted_json.Shape`, the fields the source
reads); the rest of the page goes on. The poll commits the quarantined items with its events
(table ``quarantine``, one row per source key and item, counting how often it was seen), so
they show in ``mrt-engine status``, ``trace`` and the console's Sources view.

When *every* item of a non-empty answer fails, the answer itself is what changed (a new API
shape): that is a :class:`MalformedResponse`, so the poll fails, the cursor stays and the source
turns unhealthy as for any broken answer. "Every" counts all the pages one :class:`Quarantine`
has seen: a broken item alone on the last page is one bad item, not a broken answer. Failures
of the transport (network, rate limit, auth, engine stopping) are never per item: they fail the
poll.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from mrt_engine.http import FetchError, MalformedResponse
from mrt_engine.secrets import shorten
from mrt_engine.text import storable

T = TypeVar("T")

EXCERPT_CHARS = 300
ERROR_CHARS = 500
KEY_CHARS = 200
# Where an item names itself and its page, in the order the platforms use them.
KEY_FIELDS = ("id", "number", "name", "tag_name", "service_id", "modelId", "Name", "key")
URL_FIELDS = ("html_url", "link", "url")
UNIDENTIFIED = "unidentified:"  # the key of an item that names no id (a hash of its text)


@dataclass(frozen=True)
class Quarantined:
    """An item set aside: its upstream id, why, and how it looked (all cleaned for the store)."""

    item_key: str
    error: str
    excerpt: str = ""
    url: str = ""

    @property
    def identified(self) -> bool:
        """Whether the upstream id is known (else the key is a hash of the item's text)."""
        return not self.item_key.startswith(UNIDENTIFIED)


def describe_error(exc: BaseException) -> str:
    """One line for the store: an upstream-shape problem as is, anything else with its type."""
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, MalformedResponse):
        text = f"{type(exc).__name__}: {text}"
    return storable(shorten(text, ERROR_CHARS))


def _dump(item: Any) -> str:
    try:
        return json.dumps(item, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):
        try:
            return repr(item)
        except Exception:  # a pathological item: say so rather than fail again
            return f"(an unprintable {type(item).__name__})"


def quarantined(
    item: Any, exc: BaseException, key: Callable[[Any], object] | None = None
) -> Quarantined:
    """The record of ``item`` that failed with ``exc``."""
    if isinstance(item, msgspec.Struct):  # read into a shape: its fields, as JSON has them
        try:
            item = msgspec.to_builtins(item)
        except Exception:  # a value it cannot turn back (none JSON gives): the top fields
            item = msgspec.structs.asdict(item)
    dumped = _dump(item)
    found: object = None
    try:
        found = key(item) if key is not None else _field(item, KEY_FIELDS)
    except Exception:  # the key is a best effort: the item is broken to begin with
        found = None
    if found is None or found == "":
        digest = hashlib.sha256(storable(dumped).encode()).hexdigest()[:16]
        item_key = f"{UNIDENTIFIED}{digest}"
    else:
        item_key = storable(str(found))[:KEY_CHARS]
    url = _field(item, URL_FIELDS)
    return Quarantined(
        item_key=item_key,
        error=describe_error(exc),
        excerpt=storable(shorten(dumped, EXCERPT_CHARS)),
        url=storable(url) if isinstance(url, str) else "",
    )


def _field(item: Any, names: Sequence[str]) -> object:
    if not isinstance(item, dict):
        return None
    for name in names:
        value = item.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
            return value
    return None


def keyed_by(*names: str) -> Callable[[Any], object]:
    """A key function: the first of ``names`` that the item (a JSON object) has."""
    return lambda item: _field(item, names)


class Quarantine:
    """The items one poll set aside; sources pass :attr:`items` on in their result."""

    def __init__(self) -> None:
        self.items: list[Quarantined] = []
        self.used = 0  # items of this answer (all its pages so far) that went through

    def each(
        self,
        items: Iterable[Any],
        normalise: Callable[[Any], T],
        *,
        key: Callable[[Any], object] | None = None,
        what: str = "item",
    ) -> list[T]:
        """``normalise(item)`` for each item; an item that fails is quarantined and skipped.

        Raises :class:`MalformedResponse` when every item failed, of ``items`` and of the
        pages this quarantine saw before, and lets every other transport error
        (:class:`FetchError`) through.
        """
        results: list[T] = []
        failed: list[Quarantined] = []
        for item in items:
            try:
                results.append(normalise(item))
            except FetchError as exc:
                if not isinstance(exc, MalformedResponse):
                    raise
                failed.append(quarantined(item, exc, key))
            except Exception as exc:
                failed.append(quarantined(item, exc, key))
        self.used += len(results)
        if failed and not self.used:
            raise unusable(what, failed)
        self.items.extend(failed)
        return results

    def add(
        self, item: Any, exc: BaseException, key: Callable[[Any], object] | None = None
    ) -> None:
        """Quarantine one item outside :meth:`each` (where a loop cannot be a callable)."""
        self.items.append(quarantined(item, exc, key))


def unusable(what: str, failed: Sequence[Quarantined]) -> MalformedResponse:
    """The error of an answer none of whose items could be used (a changed API, not an item)."""
    first = failed[0]
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    return MalformedResponse(
        f"no {what} of the answer is usable: {first.item_key}: {first.error}{more}"
    )


def upsert(cursor: Any, source_key: str, items: Sequence[Quarantined], now_s: str) -> None:
    """Record ``items`` (inside the poll's transaction): a new row per item, or one more
    sighting (``times``, ``last_seen_at``, the latest error) of an item already there."""
    for q in items:
        cursor.execute(
            "INSERT INTO quarantine (source_key, item_key, error, excerpt, url, first_seen_at,"
            " last_seen_at, times) VALUES (?,?,?,?,?,?,?,1)"
            " ON CONFLICT (source_key, item_key) DO UPDATE SET error = excluded.error,"
            " excerpt = excluded.excerpt, url = excluded.url,"
            " last_seen_at = excluded.last_seen_at, times = quarantine.times + 1",
            (storable(source_key), q.item_key, q.error, q.excerpt, q.url, now_s, now_s),
        )
