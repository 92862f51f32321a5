"""The outbox (R1/R2): claim due deliveries under a lease, record every attempt, retry or dead-letter.

A claim writes an ``in_flight`` attempt in the same transaction as the lease, so a process killed
mid-send leaves evidence: the next engine marks such attempts ``interrupted`` (the message may
have gone out) and sends the delivery again (at-least-once). A worker records the sends of a
claimed batch together, in the transaction of its next claim (:meth:`Outbox.claim`'s
``record``) or in one of their own (:meth:`Outbox.complete_batch`): until then their attempts
are ``in_flight`` too, with the same outcome at a kill.
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from mrt_engine.delivery.backoff import retry_delay
from mrt_engine.delivery.bundles import Planner, Row, follow_carrier
from mrt_engine.delivery.policy import PLAIN, ChannelPolicy
from mrt_engine.incident_clusters import is_cluster_key, summary_of
from mrt_engine.incidents import NOTE_COLUMNS, NOTE_JOINS, incident_note, note_of
from mrt_engine.notify.base import SendResult
from mrt_engine.notify.extractive import message_summary
from mrt_engine.notify.fields import StoredEvent, key_fields
from mrt_engine.notify.incident_line import IncidentNote
from mrt_engine.notify.message import MessageContext
from mrt_engine.secrets import shorten
from mrt_engine.store.db import Store
from mrt_engine.text import storable
from mrt_engine.timeutil import Clock, from_store, to_store, utcnow
from mrt_engine.wording import plural

log = logging.getLogger(__name__)

INTERRUPTED = "engine stopped during the send; the message may or may not have been delivered"
# The delivery queue: the rows still to send. Written as in the WHERE of the partial indexes
# delivery_queue and delivery_queue_due (migration 3), so that SQLite uses them.
QUEUED = "status IN ('pending', 'retrying')"


@dataclass(frozen=True)
class Claim:
    """A delivery this worker now owns until it completes or the lease expires."""

    delivery_id: int
    attempt_id: int
    channel: str
    attempt_number: int  # 1 for the first try
    context: MessageContext
    # Stopped by a silence once and let out by an operator: no silence stops it again.
    released: bool = False
    leased_until: datetime | None = None  # when the lease runs out (another worker may claim it)


@dataclass(frozen=True)
class Sent:
    """One claim's send, to be recorded (:meth:`Outbox.complete_batch`)."""

    claim: Claim
    result: SendResult
    duration_ms: int
    finished_at: datetime  # when the send ended (the outbox's clock)


def _record_thread(cursor, claim: Claim, message_id: str, now_s: str) -> None:
    """Record the thread that ``claim``'s message started (inside the transaction that records
    its send): the first recorded for its incident on its channel stays, so every later message
    names the same one."""
    note = claim.context.thread_incident
    if note is None:
        return
    cursor.execute(
        "INSERT INTO incident_thread (incident_id, channel, thread_ts, created_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (incident_id, channel) DO NOTHING",
        (note.incident_id, claim.channel, storable(shorten(message_id, 100)), now_s),
    )


@dataclass
class OutboxPolicy:
    max_attempts: int = 10
    backoff_initial: float = 5.0
    backoff_max: float = 3600.0
    jitter: float = 0.2
    lease_seconds: float = 120.0


class Outbox:
    """Claim/complete/recover over the ``delivery`` and ``attempt`` tables."""

    def __init__(
        self,
        store: Store,
        *,
        owner: str,
        policy: OutboxPolicy | None = None,
        clock: Clock = utcnow,
        rng: random.Random | None = None,
        channels: Mapping[str, ChannelPolicy] | None = None,
    ) -> None:
        self.store = store
        self.owner = owner
        self.policy = policy or OutboxPolicy()
        self.clock = clock
        self.rng = rng or random.Random()
        # Each channel's grouping, rate limit and digest (none: every row alone, at once).
        self.channels = dict(channels or {})

    # ------------------------------------------------------------------ claiming
    def claim(
        self,
        channel: str,
        *,
        limit: int = 1,
        worker: str = "",
        exclude: Collection[int] = (),
        record: Sequence[Sent] = (),
    ) -> list[Claim]:
        """Lease up to ``limit`` due deliveries of ``channel``, highest priority first.

        On a channel that groups, holds a digest or has a rate limit, a claim may be a bundle's
        carrier: it takes its members in the same transaction (:mod:`.bundles`).

        ``record``: the worker's sends of its previous claim, recorded first in the same
        transaction (:meth:`complete_batch`'s work: one commit for both)."""
        now = self.clock()
        now_s = to_store(now)
        leased_until = now + timedelta(seconds=self.policy.lease_seconds)
        lease_s = to_store(leased_until)
        params: list = [channel, now_s, now_s]  # (the queue holds no silenced row)
        skip = ""
        if exclude:
            skip = f" AND id NOT IN ({','.join('?' * len(exclude))})"
            params.extend(exclude)
        params.append(limit)
        channel_policy = self.channels.get(channel, PLAIN)
        with self.store.write():
            cursor = self.store.db.cursor()
            done = [self._record(cursor, send) for send in record]
            if not channel_policy.plain:
                planner = Planner(self.store, cursor, channel, channel_policy, now)
                messages = planner.plan(limit, list(exclude))
                claims = []
                for message in messages:
                    planner.carry(message)
                    claims.append(self._lease(cursor, channel, message.row, now_s, lease_s, worker))
            else:
                claims = self._claim_queue(cursor, skip, params, now, now_s, lease_s, worker)
        # Logged once committed.
        self._log_outcomes(record, done)
        return [replace(c, leased_until=leased_until) for c in claims]

    def _claim_queue(
        self, cursor, skip: str, params: list, now: datetime, now_s, lease_s, worker: str
    ) -> list[Claim]:
        """Lease the first due rows of a plain channel's queue (inside the claim's
        transaction)."""
        # Read in the order of the queue's index, so the first due rows end the read, under
        # the write lock (sorting all due rows took 0.2 s a claim). Named, not left to the
        # planner, which may take the due-time index and sort; an error if it is ever gone.
        # Engines sharing a PostgreSQL store skip the rows another engine is claiming.
        cursor.execute(
            "SELECT id, channel, attempts, silence_id FROM delivery"
            f"{self.store.indexed_by('delivery_queue')} WHERE {QUEUED} AND channel = ?"
            " AND next_attempt_at <= ? AND (lease_expires_at IS NULL OR lease_expires_at < ?)"
            f"{skip} ORDER BY priority DESC, next_attempt_at, id LIMIT ?"
            f"{self.store.skip_locked}",
            params,
        )
        rows = cursor.fetchall()
        # The batch's messages in one read (not two queries per delivery).
        contexts = message_contexts(cursor, [r[0] for r in rows])
        claims: list[Claim] = []
        for delivery_id, channel, attempts, silence_id in rows:
            row = Row(delivery_id, attempts, 0, None, "", now, silence_id=silence_id)
            context = contexts[delivery_id]
            claims.append(self._lease(cursor, channel, row, now_s, lease_s, worker, context))
        return claims

    def _lease(
        self,
        cursor,
        channel: str,
        row: Row,
        now_s,
        lease_s,
        worker: str,
        context: MessageContext | None = None,
    ) -> Claim:
        """Lease ``row`` and open its attempt (inside the claim's transaction); ``context``:
        its message, when already read."""
        cursor.execute(
            "UPDATE delivery SET lease_owner = ?, lease_expires_at = ?, updated_at = ?"
            " WHERE id = ?",
            (self.owner, lease_s, now_s, row.id),
        )
        attempt_id = self.store.insert_id(
            cursor,
            "INSERT INTO attempt (delivery_id, started_at, outcome, worker)"
            " VALUES (?, ?, 'in_flight', ?)",
            (row.id, now_s, f"{self.owner}/{worker}" if worker else self.owner),
        )
        if context is None:
            context = message_context(cursor, row.id)
        return Claim(
            row.id,
            attempt_id,
            channel,
            row.attempts + 1,
            context,
            released=row.silence_id is not None,
        )

    def time_to_send(self, claim: Claim) -> bool:
        """Whether at least half of ``claim``'s lease is left: enough to send it before another
        worker may claim it (a worker sends a batch's claims in turn: a slow send before this
        one used up the rest)."""
        if claim.leased_until is None:
            return True
        left = claim.leased_until - self.clock()
        return left >= timedelta(seconds=self.policy.lease_seconds / 2)

    def give_back(self, claims: Sequence[Claim]) -> None:
        """Hand back claims never sent (the worker is stopping, or their lease ran short while
        it sent the others of its batch): the lease is cleared, so any worker may claim them at
        once, and the ``in_flight`` attempt opened for the send that never started is removed
        (no attempt was made; the delivery's attempts are counted when one completes)."""
        if not claims:
            return
        now_s = to_store(self.clock())
        with self.store.write():
            cursor = self.store.db.cursor()
            for claim in claims:
                cursor.execute(
                    "DELETE FROM attempt WHERE id = ? AND outcome = 'in_flight'",
                    (claim.attempt_id,),
                )
                # Only a lease still this engine's: once it ran out another worker may hold it.
                cursor.execute(
                    "UPDATE delivery SET lease_owner = NULL, lease_expires_at = NULL,"
                    " updated_at = ? WHERE id = ? AND lease_owner = ? AND lease_expires_at > ?",
                    (now_s, claim.delivery_id, self.owner, now_s),
                )

    # ------------------------------------------------------------------ completing
    def complete(self, claim: Claim, result: SendResult, duration_ms: int) -> str:
        """Record the attempt and move the delivery on; returns its new status."""
        return self.complete_batch([Sent(claim, result, duration_ms, self.clock())])[0]

    def complete_batch(self, sends: Sequence[Sent]) -> list[str]:
        """:meth:`complete` for the sends of a claimed batch, in one transaction (one write
        lock and one commit for them all instead of one each); each attempt is recorded with
        the time its own send finished. Returns the deliveries' new statuses, in order."""
        if not sends:
            return []
        with self.store.write():
            cursor = self.store.db.cursor()
            done = [self._record(cursor, send) for send in sends]
        self._log_outcomes(sends, done)
        return [status for status, _, _ in done]

    def _log_outcomes(
        self, sends: Sequence[Sent], done: list[tuple[str, str | None, str | None]]
    ) -> None:
        """Log the failed sends just recorded (dead, or retrying when)."""
        for send, (status, error, next_at) in zip(sends, done, strict=True):
            claim = send.claim
            if status == "dead":
                log.error(
                    "delivery %d to %s is dead after %s: %s",
                    claim.delivery_id,
                    claim.channel,
                    plural(claim.attempt_number, "attempt"),
                    error,
                )
            elif status == "retrying":
                log.warning(
                    "delivery %d to %s failed (attempt %d), retrying at %s: %s",
                    claim.delivery_id,
                    claim.channel,
                    claim.attempt_number,
                    next_at,
                    error,
                )

    def _record(self, cursor, send: Sent) -> tuple[str, str | None, str | None]:
        """Record one send's attempt and move its delivery on (inside the caller's
        transaction); its new status, its error and when it is tried next."""
        claim, result, duration_ms, now = (
            send.claim,
            send.result,
            send.duration_ms,
            send.finished_at,
        )
        now_s = to_store(now)
        error = shorten(result.error, 1000, one_line=False) if result.error else None
        reply = shorten(result.reply, 1000, one_line=False) if result.reply else None
        attempts = claim.attempt_number
        if result.ok:
            status, next_at, sent_at, last_error = "sent", None, now_s, None
        elif result.permanent or (attempts >= self.policy.max_attempts and not result.rate_limited):
            status, next_at, sent_at, last_error = "dead", None, None, error
        else:
            delay = retry_delay(
                attempts,
                initial=self.policy.backoff_initial,
                maximum=self.policy.backoff_max,
                jitter=self.policy.jitter,
                rng=self.rng,
                asked=result.retry_after,
            )
            status, sent_at, last_error = "retrying", None, error
            next_at = to_store(now + timedelta(seconds=delay))
        cursor.execute(
            "UPDATE attempt SET outcome = ?, finished_at = ?, duration_ms = ?, http_status = ?,"
            " reply = ?, error = ?, failure = ?, delivery_status = ? WHERE id = ?",
            (
                "sent" if result.ok else "failed",
                now_s,
                duration_ms,
                result.http_status,
                storable(reply) if reply else None,  # a channel's reply is stranger's text
                storable(error) if error else None,
                None if result.ok else "permanent" if result.permanent else "temporary",
                status,  # 'dead': this attempt made a dead letter (mrt_engine/metrics.py)
                claim.attempt_id,
            ),
        )
        cursor.execute(
            "UPDATE delivery SET status = ?, attempts = ?, next_attempt_at = COALESCE(?, next_attempt_at),"
            " sent_at = COALESCE(?, sent_at), last_error = ?, lease_owner = NULL,"
            " lease_expires_at = NULL, updated_at = ? WHERE id = ?",
            (
                status,
                attempts,
                next_at,
                sent_at,
                storable(last_error) if last_error else None,
                now_s,
                claim.delivery_id,
            ),
        )
        if result.ok and result.started_thread and result.message_id:
            _record_thread(cursor, claim, result.message_id, now_s)
        if claim.context.items:  # a bundle: its members follow it
            follow_carrier(
                cursor,
                claim.delivery_id,
                status,
                now_s,
                storable(last_error) if last_error else None,
            )
        return status, error, next_at

    def silence(self, claim: Claim, silence_id: int, why: str) -> str:
        """A silence matched the claimed delivery before its send: nothing is sent; the
        claim's attempt is recorded with outcome ``silenced`` (``why`` as its reply) and the
        delivery becomes ``silenced`` (out of the queue, its attempts not counted)."""
        now_s = to_store(self.clock())
        with self.store.write():
            cursor = self.store.db.cursor()
            cursor.execute(
                "UPDATE attempt SET outcome = 'silenced', finished_at = ?, duration_ms = 0,"
                " reply = ? WHERE id = ?",
                (now_s, storable(why), claim.attempt_id),
            )
            cursor.execute(
                "UPDATE delivery SET status = 'silenced', silence_id = ?, lease_owner = NULL,"
                " lease_expires_at = NULL, updated_at = ? WHERE id = ?",
                (silence_id, now_s, claim.delivery_id),
            )
        log.info("delivery %d to %s not sent: %s", claim.delivery_id, claim.channel, why)
        return "silenced"

    # ------------------------------------------------------------------ recovery
    def recover(self, live_since: datetime | None = None) -> int:
        """Take back the claims dead engines left. With the engine lock held (one engine per
        SQLite file) that is every claim; on a shared store (``live_since``: the oldest
        heartbeat of a live engine) the claims whose lease ran out or whose engine is not live
        (a live engine's sends are still its own)."""
        if live_since is not None:
            return self._release(owner=None, live_since=to_store(live_since))
        return self._release(owner=None)

    def release(self) -> int:
        """At stop: hand back this engine's claims; sends still in flight count as interrupted."""
        return self._release(owner=self.owner)

    def _release(self, owner: str | None, live_since: str | None = None) -> int:
        now_s = to_store(self.clock())
        with self.store.write():
            cursor = self.store.db.cursor()
            params: list = [now_s, INTERRUPTED]
            if owner is not None:
                where = " AND (worker = ? OR worker LIKE ?)"
                params += [owner, f"{owner}/%"]
            elif live_since is not None:
                where = f" AND delivery_id IN (SELECT id FROM delivery WHERE {_GONE})"
                params += [now_s, live_since]
            else:
                where = ""
            cursor.execute(
                "UPDATE attempt SET outcome = 'interrupted', finished_at = ?, error = ?"
                f" WHERE outcome = 'in_flight'{where}",
                params,
            )
            interrupted = cursor.rowcount
            # Found through delivery_leased, which holds only the rows being sent.
            lease_where, lease_params = "lease_owner IS NOT NULL", [now_s]
            if owner is not None:
                lease_where, lease_params = "lease_owner = ?", [now_s, owner]
            elif live_since is not None:
                lease_where = _GONE
                lease_params += [now_s, live_since]
            cursor.execute(
                "UPDATE delivery SET lease_owner = NULL, lease_expires_at = NULL, updated_at = ?"
                f" WHERE {lease_where}",
                lease_params,
            )
            released = cursor.rowcount
        if interrupted:
            log.warning(
                "%s in flight when an engine stopped will be retried",
                plural(interrupted, "send"),
            )
        return released

    def next_due(self, channel: str) -> datetime | None:
        """When the earliest pending/retrying delivery of ``channel`` becomes due."""
        # The first entry of the queue's delivery_queue_due index.
        cursor = self.store.db.execute_sql(
            f"SELECT MIN(next_attempt_at) FROM delivery WHERE {QUEUED} AND channel = ?", [channel]
        )
        value = cursor.fetchone()[0]
        return from_store(value) if value else None


# A claim whose engine is gone: its lease ran out, or its engine is not live (see
# mrt_engine/store/engines.py). Parameters: now, the oldest heartbeat of a live engine.
_GONE = (
    "lease_owner IS NOT NULL AND (lease_expires_at < ? OR lease_owner NOT IN"
    " (SELECT id FROM engine_instance WHERE stopped_at IS NULL AND heartbeat_at > ?))"
)


# An event's columns a message is made of (:func:`_context_of`), by the event's alias ``e``.
_EVENT_COLUMNS = (
    "e.event_type, e.source_key, e.resource_id, e.title, e.url, e.fingerprint, e.summary,"
    " e.author, e.labels, e.occurred_at, e.source, e.resource_type, e.event_id, e.raw, e.body"
)
_EVENT_WIDTH = len(_EVENT_COLUMNS.split(","))
# The thread of the event's incident on the delivery's channel (by the aliases of NOTE_JOINS).
_THREAD_JOIN = " LEFT JOIN incident_thread t ON t.incident_id = i.id AND t.channel = d.channel"


def message_context(cursor: sqlite3.Cursor, delivery_id: int) -> MessageContext:
    """Everything a channel needs to render the message of one delivery; a bundle's carrier
    lists every delivery it carries (itself first) in ``items``."""
    return message_contexts(cursor, [delivery_id])[delivery_id]


def message_contexts(
    cursor: sqlite3.Cursor, delivery_ids: Sequence[int]
) -> dict[int, MessageContext]:
    """:func:`message_context` of several deliveries (a claimed batch), by id, in two reads
    whatever their number: the deliveries with their alerts, events and incidents, and their
    rule hits."""
    if not delivery_ids:
        return {}
    marks = ",".join("?" * len(delivery_ids))
    cursor.execute(
        f"SELECT d.id, a.event_id, a.rules, a.tags, a.priority, d.kind, d.group_key,"
        f" {_EVENT_COLUMNS},"
        f" {NOTE_COLUMNS}, t.thread_ts"
        " FROM delivery d JOIN alert a ON a.id = d.alert_id JOIN event e ON e.id = a.event_id"
        + NOTE_JOINS.format(on="a.event_id")
        + _THREAD_JOIN
        + f" WHERE d.id IN ({marks})",
        list(delivery_ids),
    )
    rows = cursor.fetchall()
    alerts = [(row[0], row[1], json.loads(row[2] or "[]"), row[3:]) for row in rows]
    hits = _rule_hits(cursor, {event_id for _, event_id, rules, _ in alerts if rules})
    contexts: dict[int, MessageContext] = {}
    width = _EVENT_WIDTH
    for delivery_id, event_id, rules, (tags, priority, kind, key, *columns) in alerts:
        reasons = [hits.get(event_id, {}).get(r, "") for r in rules]
        event, incident = columns[:width], note_of(columns[width:-1])
        if incident is not None and columns[-1]:  # its thread on the delivery's channel
            incident = replace(incident, thread=columns[-1])
        context = _context_of(event, rules, reasons, json.loads(tags or "[]"), priority, incident)
        if kind != "single":
            items = (context, *bundle_items(cursor, delivery_id))
            context = replace(context, bundle=kind, items=items)
            if kind == "group" and is_cluster_key(key):  # AI3: what its alerts share
                context = replace(context, cluster=summary_of(cursor, key, items))
        contexts[delivery_id] = context
    return contexts


def _rule_hits(cursor: sqlite3.Cursor, event_ids: Collection[int]) -> dict[int, dict[str, str]]:
    """The reasons of the events' rule hits, by event and rule: the latest evaluation wins (a
    replay after a rule change)."""
    if not event_ids:
        return {}
    cursor.execute(
        "SELECT event_id, rule, reason FROM rule_hit"
        f" WHERE event_id IN ({','.join('?' * len(event_ids))}) AND suppressed = 0 ORDER BY id",
        list(event_ids),
    )
    hits: dict[int, dict[str, str]] = {}
    for event_id, rule, reason in cursor.fetchall():
        hits.setdefault(event_id, {})[rule] = reason
    return hits


def event_context(
    cursor: sqlite3.Cursor,
    event_id: int,
    rule_names: Sequence[str],
    tags: Sequence[str] = (),
    priority: int = 0,
    channel: str | None = None,
) -> MessageContext:
    """The message of one event sent for ``rule_names`` (an alert's rules): its text, the
    rules' reasons and the platform's key fields; with ``channel``, its incident's thread
    there."""
    cursor.execute(f"SELECT {_EVENT_COLUMNS} FROM event e WHERE e.id = ?", (event_id,))
    event = cursor.fetchone()
    hits = _rule_hits(cursor, [event_id] if rule_names else []).get(event_id, {})
    reasons = [hits.get(r, "") for r in rule_names]
    incident = incident_note(cursor, event_id)
    if incident is not None and channel is not None:
        cursor.execute(
            "SELECT thread_ts FROM incident_thread WHERE incident_id = ? AND channel = ?",
            (incident.incident_id, channel),
        )
        found = cursor.fetchone()
        if found is not None:
            incident = replace(incident, thread=found[0])
    return _context_of(event, rule_names, reasons, tags, priority, incident)


def _context_of(
    event: Sequence,
    rule_names: Sequence[str],
    reasons: Sequence[str],
    tags: Sequence[str],
    priority: int,
    incident: IncidentNote | None = None,
) -> MessageContext:
    """:func:`event_context` from the event's row (:data:`_EVENT_COLUMNS`), its rules'
    reasons and its place in an incident."""
    (
        event_type,
        source_key,
        resource_id,
        title,
        url,
        fingerprint,
        summary,
        author,
        labels,
        occurred_at,
        source,
        resource_type,
        upstream_id,
        raw,
        body,
    ) = event
    label_names = tuple(json.loads(labels or "[]"))
    stored = StoredEvent(
        source=source,
        source_key=source_key,
        resource_type=resource_type,
        resource_id=resource_id,
        event_type=event_type,
        event_id=upstream_id,
        author=author,
        labels=label_names,
        raw=_raw(raw),
    )
    return MessageContext(
        event_type=event_type,
        source_key=source_key,
        resource_id=resource_id,
        title=title,
        url=url,
        fingerprint=fingerprint,
        summary=message_summary(summary, body),
        body=body or "",
        author=author,
        labels=label_names,
        rules=tuple(rule_names),
        reasons=tuple(reasons),
        tags=tuple(tags),
        priority=priority,
        occurred_at=from_store(occurred_at),
        fields=key_fields(stored),
        incident=incident,
    )


def _raw(text: str | None) -> dict:
    """An event's stored raw JSON (an object, or nothing: retention may have cleared it)."""
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def bundle_items(cursor: sqlite3.Cursor, carrier_id: int) -> list[MessageContext]:
    """What a carrier's members say (highest priority first), without their rules' reasons."""
    cursor.execute(
        "SELECT e.event_type, e.source_key, e.resource_id, e.title, e.url, e.fingerprint,"
        " e.author, e.occurred_at, a.rules, a.priority"
        " FROM delivery d JOIN alert a ON a.id = d.alert_id JOIN event e ON e.id = a.event_id"
        " WHERE d.bundle_id = ? ORDER BY a.priority DESC, d.id",
        (carrier_id,),
    )
    return [
        MessageContext(
            event_type=row[0],
            source_key=row[1],
            resource_id=row[2],
            title=row[3],
            url=row[4],
            fingerprint=row[5],
            author=row[6],
            occurred_at=from_store(row[7]),
            rules=tuple(json.loads(row[8] or "[]")),
            priority=row[9],
        )
        for row in cursor.fetchall()
    ]
