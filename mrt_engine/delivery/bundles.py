"""Bundles: one message that carries several deliveries of a channel (groups, digests, folds).

One mechanism for the three ways of making less noise. A *carrier* is a delivery like any
other: claimed under a lease, its attempt recorded, retried, dead-lettered. When it is claimed
(in the same transaction as its lease) it takes the other rows its message will carry: they get
status ``bundled`` and ``bundle_id`` = the carrier, leave the queue, and follow the carrier to
``sent`` or ``dead``. The carrier's ``kind`` says what it carries:

* ``group``: the queued rows of its group key (Alertmanager's aggregation group). A group's
  window (``notice_group``) opens at its first hit; the group goes out ``group_wait`` after
  that, and later hits of the still-open group at most every ``group_interval`` (the times of
  the rule whose hit is planned, when it has its own: :meth:`ChannelPolicy.group_times`);
* ``digest``: the rows below the channel's immediate priority, held until the digest's next
  time (``digest_schedule`` holds the last time taken, so a restart neither loses nor repeats
  one);
* ``fold``: when more messages are due than the channel may send in the current minute (its
  sends counted from the attempts of the last minute), the due rows in one summary.

A row that must wait is *deferred*: its ``next_attempt_at`` moves to the time it may go. All of
it is decided at claim time, from the store, so it survives a restart and engines sharing a
store decide alike. Once a carrier has taken its members they never change: a retry (or a
resend) sends the same message, less the alerts a silence made since matches
(:mod:`.bundle_silences`). Protected hits are never carried, deferred or folded.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mrt_engine.delivery.bundle_silences import silence_members
from mrt_engine.delivery.policy import ChannelPolicy, latest_slot, next_slot
from mrt_engine.health import PROTECTED_TYPES
from mrt_engine.silence import Silence
from mrt_engine.store.db import Store
from mrt_engine.timeutil import from_store, to_store

# Rows still to send (the WHERE of the queue's partial indexes, written the same way).
QUEUED = "status IN ('pending', 'retrying')"
# A row never tried and carrying nothing: it may still be grouped, held, folded or carried. (A
# send cut short by a kill leaves attempts at 0 but an attempt row: it may have gone out alone,
# so it is sent alone again, never inside another message.)
FRESH = (
    "kind = 'single' AND attempts = 0 AND lease_owner IS NULL"
    " AND NOT EXISTS (SELECT 1 FROM attempt t WHERE t.delivery_id = delivery.id)"
)
MAX_MEMBERS = 1000  # rows one message carries at most (the rest go in the next one)
RATE_WINDOW = timedelta(minutes=1)
_CHUNK = 64  # due rows read at a time while planning


@dataclass
class Row:
    """A due row of the queue, as planning sees it."""

    id: int
    attempts: int
    priority: int
    group_key: str | None
    kind: str
    created_at: datetime
    protected: bool = False
    tried: bool = False  # an attempt was made (one cut short by a kill leaves attempts at 0)
    silence_id: int | None = None  # silenced once, let out by an operator: not silenced again

    @property
    def fresh(self) -> bool:
        return self.kind == "single" and self.attempts == 0 and not self.tried


@dataclass
class Message:
    """A message that may go out now: a row alone, a group's carrier, or the digest's."""

    row: Row
    kind: str = "single"  # single | group | digest | fold
    keys: list[str] = field(default_factory=list)  # the groups it carries (group, fold)
    ids: list[int] = field(default_factory=list)  # single rows it carries (fold)
    slot: datetime | None = None  # the digest time it stands for

    @property
    def counts(self) -> bool:
        """Whether it uses the channel's rate (protected hits go whatever the rate)."""
        return not self.row.protected


def _rows(
    cursor: sqlite3.Cursor, store: Store, channel: str, now_s: str, skip: Sequence[int], n: int
) -> list[Row]:
    """Up to ``n`` due, unleased rows of ``channel`` in the queue's order, but ``skip``."""
    params: list = [channel, now_s, now_s]
    extra = ""
    if skip:
        extra = f" AND id NOT IN ({','.join('?' * len(skip))})"
        params.extend(skip)
    params.append(n)
    cursor.execute(
        "SELECT id, attempts, priority, group_key, kind, created_at, silence_id FROM delivery"
        f"{store.indexed_by('delivery_queue')} WHERE {QUEUED} AND channel = ?"
        " AND next_attempt_at <= ? AND (lease_expires_at IS NULL OR lease_expires_at < ?)"
        f"{extra} ORDER BY priority DESC, next_attempt_at, id LIMIT ?{store.skip_locked}",
        params,
    )
    rows = [
        Row(r[0], r[1], r[2], r[3], r[4], from_store(r[5]), silence_id=r[6])
        for r in cursor.fetchall()
    ]
    if rows:
        marks = ",".join("?" * len(rows))
        cursor.execute(
            "SELECT d.id FROM delivery d JOIN alert a ON a.id = d.alert_id"
            f" JOIN event e ON e.id = a.event_id WHERE d.id IN ({marks})"
            f" AND e.event_type IN ({','.join('?' * len(PROTECTED_TYPES))})",
            [*(r.id for r in rows), *sorted(PROTECTED_TYPES)],
        )
        protected = {r[0] for r in cursor.fetchall()}
        untried = [r.id for r in rows if r.attempts == 0]
        tried: set[int] = set()
        if untried:
            cursor.execute(
                "SELECT DISTINCT delivery_id FROM attempt"
                f" WHERE delivery_id IN ({','.join('?' * len(untried))})",
                untried,
            )
            tried = {r[0] for r in cursor.fetchall()}
        for row in rows:
            row.protected = row.id in protected
            row.tried = row.id in tried
    return rows


def sends_in_last_minute(cursor: sqlite3.Cursor, channel: str, now: datetime) -> int:
    """Attempts at ``channel`` that started in the minute before ``now`` (any outcome: each
    was a call to the platform), from the store, so every engine and a restart count them."""
    cursor.execute(
        "SELECT COUNT(*) FROM attempt t JOIN delivery d ON d.id = t.delivery_id"
        " WHERE t.started_at > ? AND d.channel = ?",
        (to_store(now - RATE_WINDOW), channel),
    )
    return cursor.fetchone()[0]


class Planner:
    """Decides, inside a claim's write transaction, which messages of a channel go out now."""

    def __init__(
        self,
        store: Store,
        cursor: sqlite3.Cursor,
        channel: str,
        policy: ChannelPolicy,
        now: datetime,
    ) -> None:
        self.store = store
        self.cursor = cursor
        self.channel = channel
        self.policy = policy
        self.now = now
        self.now_s = to_store(now)
        self._silences: list[Silence] | None = None  # the active ones (_silencing)

    # ------------------------------------------------------------------ planning
    def plan(self, limit: int, exclude: Sequence[int]) -> list[Message]:
        """The messages to claim now (at most ``limit``), rows that must wait deferred."""
        self.messages: list[Message] = []
        self.seen: set[int] = set(exclude)
        self.groups: set[str] = set()  # groups going out now
        self.waiting: set[str] = set()  # groups whose rows were deferred
        self.digest: Message | None = None
        if not self.policy.rate_per_minute:
            self._collect(limit)
            return self._unsilenced(self.messages[:limit])
        used = sends_in_last_minute(self.cursor, self.channel, self.now)
        budget = self.policy.rate_per_minute - used
        # Enough messages to claim ``limit`` of them, or to know the budget is exceeded.
        self._collect(max(limit, budget + 1))
        if budget > 0 and sum(m.counts for m in self.messages) > budget:
            self._collect(MAX_MEMBERS)  # a fold takes every due row: read them all
        return self._unsilenced(self._within(self.messages, budget)[:limit])

    def _collect(self, need: int) -> None:
        """Read due rows until ``need`` messages may go now (or the queue's due rows end)."""
        messages = self.messages
        while len(messages) < need:
            rows = _rows(
                self.cursor, self.store, self.channel, self.now_s, sorted(self.seen), _CHUNK
            )
            if not rows:
                return
            for row in rows:
                self.seen.add(row.id)
                if not row.fresh or row.protected:
                    messages.append(Message(row))
                elif self.policy.holds_for_digest(row.priority):
                    if self.digest is None:
                        self.digest = self._digest(row)
                        if self.digest is not None:
                            messages.append(self.digest)
                elif self.policy.grouping and row.group_key is not None:
                    key = row.group_key
                    if key in self.groups or key in self.waiting:
                        continue
                    if self._group_due(row):
                        self.groups.add(key)
                        messages.append(Message(row, "group", keys=[key]))
                    else:
                        self.waiting.add(key)
                else:
                    messages.append(Message(row))
                if len(messages) >= need:
                    return

    def _unsilenced(self, messages: list[Message]) -> list[Message]:
        """``messages`` without the alerts a silence made after they were written matches.

        A message about one alert is checked by the worker just before its send
        (:func:`mrt_engine.delivery.worker.send_claim`). A bundle is checked here, at its
        claim, member by member: a silenced one is stored ``silenced`` (with the silence, out
        of the bundle: visible and replayable like one silenced when it was written); a
        silenced carrier hands the bundle to its first member left; a bundle left with no
        alert is not sent. Protected hits are never silenced; a row an operator let out is not
        silenced again (:mod:`.bundle_silences`)."""
        kept = []
        for message in messages:
            bundle = message.kind != "single" or message.row.kind != "single"
            if bundle and silence_members(self, message):
                continue  # every alert it would carry is silenced: nothing to send
            kept.append(message)
        return kept

    def _active_silences(self) -> list[Silence]:
        """The silences active now: read once a claim, and only when it plans a bundle."""
        from mrt_engine.silences import read_current  # (it imports the operations)

        if self._silences is None:
            self._silences = [s for s in read_current(self.store, self.now) if s.active(self.now)]
        return self._silences

    def _within(self, messages: list[Message], budget: int) -> list[Message]:
        """``messages`` the rate allows: protected ones always; the rest up to the budget,
        folded into one summary when more are due than the budget."""
        protected = [m for m in messages if not m.counts]
        others = [m for m in messages if m.counts]
        if budget <= 0:
            return protected
        if len(others) <= budget:
            return protected + others
        foldable = [m for m in others if m.row.fresh and m.kind in ("single", "group")]
        if len(foldable) < 2:
            return protected + others[:budget]
        fold = Message(foldable[0].row, "fold")
        for message in foldable:
            if message.kind == "group":
                fold.keys.extend(message.keys)
            else:
                fold.ids.append(message.row.id)
        folded = {id(m) for m in foldable}
        rest = [m for m in others if id(m) not in folded]
        return [*protected, fold, *rest[: budget - 1]]

    def _group_due(self, row: Row) -> bool:
        """Whether ``row``'s group may go out now; if not, its queued rows wait for it."""
        cursor = self.cursor
        cursor.execute(
            "SELECT first_at, last_sent_at FROM notice_group WHERE channel = ? AND group_key = ?",
            (self.channel, row.group_key),
        )
        found = cursor.fetchone()
        first = from_store(found[0]) if found else None
        sent = from_store(found[1]) if found else None
        wait_s, interval_s = self.policy.group_times(self._rule_of(row))
        interval = timedelta(seconds=interval_s)
        if found is None or (sent is not None and sent + interval <= row.created_at):
            # A new window: the group's first hit since it was last open.
            first, sent = row.created_at, None
            cursor.execute(
                "INSERT INTO notice_group (channel, group_key, first_at, last_sent_at)"
                " VALUES (?, ?, ?, NULL) ON CONFLICT (channel, group_key) DO UPDATE"
                " SET first_at = excluded.first_at, last_sent_at = NULL",
                (self.channel, row.group_key, to_store(first)),
            )
        assert first is not None
        flush = first + timedelta(seconds=wait_s) if sent is None else sent + interval
        if flush <= self.now:
            return True
        self._defer("group_key = ?", [row.group_key], to_store(flush))
        return False

    def _rule_of(self, row: Row) -> str | None:
        """The rule that led to ``row``'s alert (the first of its rules, whose ``group_by``
        made the key), when a rule has group times of its own."""
        if not self.policy.rule_times:
            return None
        self.cursor.execute(
            "SELECT a.rules FROM alert a JOIN delivery d ON d.alert_id = a.id WHERE d.id = ?",
            (row.id,),
        )
        found = self.cursor.fetchone()
        try:
            rules = json.loads(found[0]) if found else []
        except ValueError:
            return None
        return rules[0] if rules and isinstance(rules[0], str) else None

    def _digest(self, row: Row) -> Message | None:
        """The digest's message when its time has come; else ``row`` waits for it."""
        settings = self.policy.digest
        assert settings is not None
        self.cursor.execute(
            "SELECT last_slot_at FROM digest_schedule WHERE channel = ?", (self.channel,)
        )
        found = self.cursor.fetchone()
        last = from_store(found[0]) if found else None
        slot = next_slot(settings, row.created_at)
        if last is not None and slot <= last:  # that digest is taken: the next one
            slot = next_slot(settings, last + timedelta(microseconds=1))
        if slot > self.now:
            self.cursor.execute(
                "UPDATE delivery SET next_attempt_at = ? WHERE id = ?", (to_store(slot), row.id)
            )
            return None
        return Message(row, "digest", slot=latest_slot(settings, self.now))

    def _defer(self, where: str, params: list, until_s: str) -> None:
        """Move the fresh queued rows of this channel matching ``where`` to ``until_s``."""
        ids = self._select(where, params, extra=" AND next_attempt_at < ?", extra_params=[until_s])
        self._update(ids, "next_attempt_at = ?", [until_s])

    # ------------------------------------------------------------------ carrying
    def carry(self, message: Message) -> None:
        """Make ``message``'s row the carrier of the rest of its bundle (inside the claim)."""
        carrier = message.row.id
        if message.kind == "single":
            return
        members: list[int] = []
        if message.kind == "digest":
            below = self.policy.digest.below_priority if self.policy.digest else 0
            members = self._select(
                "priority < ? AND next_attempt_at <= ?", [below, self.now_s], skip=carrier
            )
            self.cursor.execute(
                "INSERT INTO digest_schedule (channel, last_slot_at, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (channel) DO UPDATE SET last_slot_at = excluded.last_slot_at,"
                " updated_at = excluded.updated_at",
                (self.channel, to_store(message.slot), self.now_s),
            )
        else:
            members = [i for i in message.ids if i != carrier]
            for key in message.keys:
                members += self._select("group_key = ?", [key], skip=carrier)
                self.cursor.execute(
                    "UPDATE notice_group SET last_sent_at = ? WHERE channel = ? AND group_key = ?",
                    (self.now_s, self.channel, key),
                )
        members = sorted(set(members))[: MAX_MEMBERS - 1]
        if not members and message.kind != "digest":
            return  # a group of one: a message like any other (a digest of one is a digest)
        self._update(members, "status = 'bundled', bundle_id = ?", [carrier])
        self.cursor.execute("UPDATE delivery SET kind = ? WHERE id = ?", (message.kind, carrier))

    def _select(
        self,
        where: str,
        params: list,
        *,
        skip: int | None = None,
        extra: str = "",
        extra_params: Sequence = (),
    ) -> list[int]:
        """Ids of this channel's fresh queued rows matching ``where`` (rows another engine
        is claiming are skipped: they are its to carry)."""
        not_self = " AND id <> ?" if skip is not None else ""
        self.cursor.execute(
            f"SELECT id FROM delivery WHERE {QUEUED} AND channel = ? AND {where} AND {FRESH}"
            f"{not_self}{extra} LIMIT ?{self.store.skip_locked}",
            [
                self.channel,
                *params,
                *([skip] if skip is not None else []),
                *extra_params,
                MAX_MEMBERS,
            ],
        )
        return [r[0] for r in self.cursor.fetchall()]

    def _update(self, ids: Sequence[int], assign: str, params: list) -> None:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            self.cursor.execute(
                f"UPDATE delivery SET {assign}, updated_at = ?"
                f" WHERE id IN ({','.join('?' * len(chunk))})",
                [*params, self.now_s, *chunk],
            )


def follow_carrier(
    cursor: sqlite3.Cursor, carrier_id: int, status: str, now_s: str, error: str | None
) -> None:
    """A carrier's members take its final status: ``sent`` or ``dead`` (a retry leaves them
    ``bundled``, waiting with it)."""
    if status == "sent":
        cursor.execute(
            "UPDATE delivery SET status = 'sent', sent_at = ?, last_error = NULL, updated_at = ?"
            " WHERE bundle_id = ? AND status = 'bundled'",
            (now_s, now_s, carrier_id),
        )
    elif status == "dead":
        cursor.execute(
            "UPDATE delivery SET status = 'dead', last_error = ?, updated_at = ?"
            " WHERE bundle_id = ? AND status = 'bundled'",
            (error, now_s, carrier_id),
        )
