"""What the engine reads from the store again and again, kept while nothing is committed to it.

Every poll starts from its source's state row (cursor, validators, pause, backoff); the control
job looks for operators' poll requests every second; a delivery worker asks when its channel's
next delivery is due each time it is woken (:mod:`mrt_engine.delivery.worker`). Asking the store each time (a query, its rows parsed)
cost a tenth of an unchanged poll's CPU, and most of an idle engine's CPU besides its polls,
to learn what the store said a moment ago. :class:`StateCache` keeps what was read, with the
store's version when the read began (:class:`~mrt_engine.store.watch.StoreWatch`: one ``PRAGMA
data_version`` on a connection of its own, which reads no table): any commit since — by this
engine's polls, its idle-poll flush, its workers, an operator's pause, cursor reset, poll
request or resend from another process — changes the version, and the value is read again. A
reader thus sees what was committed when it asks, as when it read the store itself.

On PostgreSQL nothing is kept (every call reads): the store's change signal there is a
notification that reaches the watch a moment *after* the commit, so a value read right after
this engine's own commit could be answered from before it. Engines sharing a store read what
they need each time; the idle-CPU figures are SQLite's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from mrt_engine.store.location import StoreLocation
from mrt_engine.store.watch import StoreWatch

T = TypeVar("T")


class StateCache(Generic[T]):
    """Values read from the store, by key, reused until anything is committed to the store.

    A value is shared by every later caller: it must be treated as read-only.
    """

    def __init__(self, where: StoreLocation | str | Path) -> None:
        path = where.path if isinstance(where, StoreLocation) else where
        # None: a PostgreSQL store (see the module's docstring): every call reads.
        self._watch: Any = StoreWatch(path) if path is not None else None
        self._held: dict[str, tuple[tuple[int, int], T]] = {}
        self._closed = self._watch is None

    def get(self, key: str, read: Callable[[], T]) -> T:
        """The value of ``key``: ``read()`` when the store changed since it was last read."""
        if self._closed:  # a late caller as the engine closes: no new connection for it
            return read()
        # Asked before reading: a commit that lands while ``read`` runs changes the version
        # after the one kept, so the next call reads again.
        version = self._watch.version()
        held = self._held.get(key)
        if held is not None and version is not None and held[0] == version:
            return held[1]
        value = read()
        if version is not None:  # None: the store cannot tell now; read again next time
            self._held[key] = (version, value)
        return value

    def version(self) -> tuple[int, int] | None:
        """The store's version now (see :class:`~mrt_engine.store.watch.StoreWatch`): another
        value once anything was committed; ``None`` when it cannot tell (on PostgreSQL, or
        closed), which callers take as changed."""
        if self._closed:
            return None
        return self._watch.version()

    def close(self) -> None:
        """Close the watching connection; later calls read every time."""
        self._closed = True
        self._held.clear()
        if self._watch is not None:
            self._watch.close()
