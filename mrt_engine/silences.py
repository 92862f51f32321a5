"""Silences in the store: add and expire them (audited operator actions), and the active ones
the engine matches hits against (:mod:`mrt_engine.silence` holds the matching itself).

The engine looks twice: when a poll writes an alert's deliveries (:func:`mrt_engine.batch.
write_batch`: a silenced delivery is written with status ``silenced`` and the silence's id),
and just before a delivery is sent (:func:`mrt_engine.delivery.worker.send_claim`: a silence
made after the hit but before the send stops it; the claim's attempt is recorded with outcome
``silenced``, the delivery becomes ``silenced``); a bundle's alerts (a group, a digest, a fold)
are matched one by one at the bundle's claim (:meth:`mrt_engine.delivery.bundles.Planner.
_unsilenced`): the silenced ones are stored ``silenced`` and the rest go out. Both read the active silences through
:class:`ActiveSilences`, which reads the table again only when the store changed.

A silence stops a delivery once: a delivery an operator lets out (``resend``, or ``replay``
after the silence ended) keeps its ``silence_id`` for the record and is not stopped again.
When a silence ends or is expired nothing it stopped is sent by itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from mrt_engine.operations import OperationError, OpResult, _audit
from mrt_engine.silence import (
    Silence,
    SilenceError,
    check_matchers,
    matchers_from_json,
    matchers_to_json,
    parse_matcher,
)
from mrt_engine.state_cache import StateCache
from mrt_engine.store.db import Store
from mrt_engine.store.models import Silence as SilenceRow
from mrt_engine.text import clean, storable
from mrt_engine.timeutil import Clock, from_store, parse_duration, to_store, utcnow

# The longest silence: a year. Longer is a typo (or a rule that should be changed instead).
MAX_SILENCE = timedelta(days=366)


def silence_of(row: SilenceRow, *, cleaned: bool = False) -> Silence:
    """A stored silence as a :class:`~mrt_engine.silence.Silence` (``cleaned``: its texts
    without control characters, to be shown)."""
    text = clean if cleaned else str
    return Silence(
        id=row.id,
        matchers=matchers_from_json(row.matchers),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        author=text(row.author),
        comment=text(row.comment),
        created_at=row.created_at,
        created_by=text(row.created_by),
        expired_at=row.expired_at,
        expired_by=text(row.expired_by) if row.expired_by else None,
    )


def read_current(store: Store, now: datetime) -> list[Silence]:
    """The silences not expired and not ended at ``now`` (active or still to start), by id.
    Through the partial index ``silence_current``: a few rows, whatever the history."""
    cursor = store.db.execute_sql(
        "SELECT id, matchers, starts_at, ends_at, author, comment FROM silence"
        " WHERE expired_at IS NULL AND ends_at > ? ORDER BY id",
        (to_store(now),),
    )
    return [
        Silence(
            id=row[0],
            matchers=matchers_from_json(row[1]),
            starts_at=from_store(row[2]),  # type: ignore[arg-type]
            ends_at=from_store(row[3]),  # type: ignore[arg-type]
            author=row[4],
            comment=row[5],
        )
        for row in cursor.fetchall()
    ]


class ActiveSilences:
    """The current silences, read again only when the store changed (a
    :class:`~mrt_engine.state_cache.StateCache`); which are active is decided at each call."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: StateCache[list[Silence]] = StateCache(store.location)

    def at(self, now: datetime) -> list[Silence]:
        """The silences active at ``now``."""
        # Read with ``now``: the rows kept are those that end after it, and a silence that
        # ends later is dropped by ``active`` below without a read.
        current = self._cache.get("silences", lambda: read_current(self.store, now))
        return [s for s in current if s.active(now)]

    def close(self) -> None:
        self._cache.close()


def active_now(store: Store, now: datetime, silences: ActiveSilences | None) -> list[Silence]:
    """The active silences at ``now``: from ``silences`` (kept while the store is unchanged),
    else read."""
    if silences is not None:
        return silences.at(now)
    return [s for s in read_current(store, now) if s.active(now)]


# ---------------------------------------------------------------------- operations
def silence_window(
    now: datetime,
    *,
    duration: str | None = None,
    until: datetime | None = None,
    starts_at: datetime | None = None,
) -> tuple[datetime, datetime]:
    """``(starts_at, ends_at)`` from ``--for 2h`` or ``--until T`` (exactly one), starting at
    ``starts_at`` (default now)."""
    start = starts_at or now
    if (duration is None) == (until is None):
        raise SilenceError("give exactly one of --for DURATION (2h) or --until TIME")
    if duration is not None:
        try:
            length = parse_duration(duration)
        except ValueError as exc:
            raise SilenceError(f"--for: {exc}") from None
        if length <= timedelta(0):
            raise SilenceError(f"--for: {duration!r} is not a positive duration")
        if length > MAX_SILENCE:
            raise SilenceError(f"--for: {duration!r} is longer than a silence may be (366d)")
        end = start + length
    else:
        assert until is not None
        end = until
        if end <= start:
            raise SilenceError(
                f"--until {to_store(until)} is not after the start {to_store(start)}"
            )
        if end - start > MAX_SILENCE:
            raise SilenceError("--until: a silence may last at most 366 days")
    return start, end


def add_silence(
    store: Store,
    matchers: Sequence[str],
    *,
    author: str,
    comment: str,
    duration: str | None = None,
    until: datetime | None = None,
    starts_at: datetime | None = None,
    actor: str,
    clock: Clock = utcnow,
) -> OpResult:
    """Create a silence from ``FIELD=VALUE`` matchers, for ``duration`` (``2h``) or ``until``
    a time; ``author`` and ``comment`` are required. Audited. Raises :class:`SilenceError`."""
    parsed = [parse_matcher(m) for m in matchers]
    check_matchers(parsed)
    author, comment = author.strip(), comment.strip()
    if not author:
        raise SilenceError("a silence needs an --author")
    if not comment:
        raise SilenceError("a silence needs a --comment saying why")
    now = clock()
    start, end = silence_window(now, duration=duration, until=until, starts_at=starts_at)
    with store.write():
        row = SilenceRow.create(
            matchers=matchers_to_json(parsed),
            starts_at=start,
            ends_at=end,
            author=storable(author),
            comment=storable(comment),
            created_at=now,
            created_by=storable(actor),
        )
        after = _state(row)
        _audit("silence_add", f"silence:{row.id}", actor, None, after, now, detail=comment)
    shown = " ".join(str(m) for m in parsed)
    return OpResult(f"silence {row.id} ({shown}) active until {to_store(end)}", 1, None, after)


def expire_silence(store: Store, silence_id: int, *, actor: str, clock: Clock = utcnow) -> OpResult:
    """End a silence now (what it silenced stays silenced). Audited; expiring an ended one
    changes nothing."""
    now = clock()
    with store.write():
        row = SilenceRow.get_or_none(SilenceRow.id == silence_id)
        if row is None:
            raise OperationError(f"there is no silence {silence_id}")
        if row.expired_at is not None or row.ends_at <= now:
            return OpResult(f"silence {silence_id} has already ended; nothing changed")
        before = _state(row)
        SilenceRow.update(expired_at=now, expired_by=storable(actor)).where(
            SilenceRow.id == silence_id
        ).execute()
        after = _state(SilenceRow.get_by_id(silence_id))
        _audit("silence_expire", f"silence:{silence_id}", actor, before, after, now)
    return OpResult(
        f"silence {silence_id} expired; what it silenced stays silenced"
        " (resend or replay sends it)",
        1,
        before,
        after,
    )


def _state(row: SilenceRow) -> dict[str, Any]:
    return {
        "matchers": row.matchers,
        "starts_at": to_store(row.starts_at),
        "ends_at": to_store(row.ends_at),
        "author": row.author,
        "expired_at": to_store(row.expired_at),
    }


# ---------------------------------------------------------------------- drafts (the console's `s`)
def draft_for_event(event_id: int) -> list[str]:
    """Matchers that silence hits like event ``event_id``: its source key, its resource's
    owner, its event type and (when one rule notified) that rule. Read inside a transaction."""
    from mrt_engine.store.models import Alert, Event

    event = Event.get_or_none(Event.id == event_id)
    if event is None:
        raise OperationError(f"there is no event {event_id}")
    target = [f"source={clean(event.source_key)}"]
    if "/" in event.resource_id:
        target.append(f"org={clean(event.resource_id.split('/', 1)[0])}")
    target.append(f"type={clean(event.event_type)}")
    alert = Alert.get_or_none(Alert.event == event)
    if alert is not None and len(alert.rules or ()) == 1:
        target.append(f"rule={clean(alert.rules[0])}")
    return target


def draft_for_rule(rule: str) -> list[str]:
    """Matchers that silence a rule's hits."""
    return [f"rule={clean(rule)}"]
