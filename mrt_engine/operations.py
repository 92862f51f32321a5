"""Operator actions (F3): resend, requeue dead, replay, reset cursor, pause/resume/poll now.

The CLI and the console call these; none of them sends or polls itself. Each writes rows that
the running engine picks up (a delivery due now, a poll request), and an audit row saying who
did what, with the before and after. Where it makes sense they are idempotent: requeueing twice
queues once, replaying twice enqueues nothing the second time.
"""

from __future__ import annotations

import getpass
import json
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from mrt_engine.events import TrackerEvent
from mrt_engine.store.db import Store
from mrt_engine.store.models import Alert, Audit, Delivery, Event, SourceState
from mrt_engine.text import clean, storable
from mrt_engine.timeutil import Clock, github_time, to_store, utcnow

# The rules and the pipeline's batch writer (pydantic, httpx) are imported where an operation
# needs them: `mrt-engine resend` or `source pause` does without (tests/test_startup.py).
if TYPE_CHECKING:
    from mrt_engine.incident_clusters import ClusterSettings
    from mrt_engine.rules.matcher import Decision, RuleSet
    from mrt_engine.silence import Silence


class OperationError(Exception):
    """The operation cannot be done as asked (unknown id, bad argument). One clear line."""


@dataclass
class OpResult:
    """What an operation did."""

    message: str
    changed: int = 0
    before: Any = None
    after: Any = None


def actor_name(via: str) -> str:
    """``alice@host via cli``: who the audit log says acted."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} via {via}"


def _audit(
    action: str,
    target: str,
    actor: str,
    before: Any,
    after: Any,
    now: datetime,
    detail: str | None = None,
) -> None:
    # Targets come from the command line (undecodable bytes arrive as lone surrogates).
    Audit.create(
        at=now,
        actor=storable(actor),
        action=action,
        target=storable(target),
        before=before,
        after=after,
        detail=storable(detail) if detail else detail,
    )


def _delivery_state(row: Delivery) -> dict[str, Any]:
    return {
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": to_store(row.next_attempt_at),
        "lease_owner": row.lease_owner,
    }


# ---------------------------------------------------------------------- resend
def resend_delivery(
    store: Store, delivery_id: int, *, actor: str, clock: Clock = utcnow
) -> OpResult:
    """Queue one delivery to be sent again now (sent, dead or retrying), with a fresh retry budget."""
    now = clock()
    with store.write():
        row = Delivery.get_or_none(Delivery.id == delivery_id)
        if row is None:
            raise OperationError(f"there is no delivery {delivery_id}")
        if row.lease_owner and row.lease_expires_at and row.lease_expires_at > now:
            return OpResult(f"delivery {delivery_id} is being sent right now; nothing changed")
        if row.status == "pending" and row.next_attempt_at <= now:
            return OpResult(f"delivery {delivery_id} is already queued; nothing changed")
        before = _delivery_state(row)
        Delivery.update(
            status="pending",
            attempts=0,
            next_attempt_at=now,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
            # A bundle's member goes out alone now; a carrier again with the same members.
            bundle_id=None,
            group_key=None if row.bundle_id is not None else row.group_key,
        ).where(Delivery.id == delivery_id).execute()
        if row.kind != "single":
            _members_wait_again([delivery_id], now)
        after = _delivery_state(Delivery.get_by_id(delivery_id))
        _audit("resend", f"delivery:{delivery_id}", actor, before, after, now)
    return OpResult(
        f"delivery {delivery_id} ({row.channel}) queued to send again", 1, before, after
    )


def _members_wait_again(carriers: Sequence[int], now: datetime) -> None:
    """The members of ``carriers`` (sent or dead with them) wait in their bundles again."""
    Delivery.update(status="bundled", sent_at=None, last_error=None, updated_at=now).where(
        Delivery.bundle_id.in_(list(carriers)) & (Delivery.status != "bundled")
    ).execute()


def requeue_dead(
    store: Store, *, channel: str | None = None, actor: str, clock: Clock = utcnow
) -> OpResult:
    """Move every dead delivery (of ``channel``) back to the queue with a fresh retry budget."""
    now = clock()
    with store.write():
        # A bundle's dead members go back with their carrier, not on their own.
        query = Delivery.select(Delivery.id).where(
            (Delivery.status == "dead") & Delivery.bundle_id.is_null()
        )
        if channel:
            query = query.where(Delivery.channel == channel)
        ids = [r.id for r in query]
        if not ids:
            where = f" for channel {channel}" if channel else ""
            return OpResult(f"no dead deliveries{where}; nothing changed")
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            Delivery.update(
                status="pending",
                attempts=0,
                next_attempt_at=now,
                lease_owner=None,
                lease_expires_at=None,
                updated_at=now,
            ).where(Delivery.id.in_(chunk)).execute()
            _members_wait_again(chunk, now)
        _audit(
            "requeue_dead",
            f"channel:{channel or '*'}",
            actor,
            {"status": "dead", "deliveries": ids},
            {"status": "pending", "deliveries": ids},
            now,
        )
    return OpResult(
        f"{len(ids)} dead deliver{'y' if len(ids) == 1 else 'ies'} queued to send again", len(ids)
    )


def resend_event(
    store: Store,
    event_id: int,
    channel: str,
    *,
    channels: Sequence[str],
    actor: str,
    clock: Clock = utcnow,
) -> OpResult:
    """Send one event to ``channel``: resend its delivery there, or create one (and an alert)."""
    if channel not in channels:
        raise OperationError(
            f"channel {channel!r} is not configured ({', '.join(channels) or 'none'})"
        )
    now = clock()
    with store.read():
        event = Event.get_or_none(Event.id == event_id)
        if event is None:
            raise OperationError(f"there is no event {event_id}")
        alert = Alert.get_or_none(Alert.event == event)
        existing = None
        if alert is not None:
            existing = Delivery.get_or_none(
                (Delivery.alert == alert) & (Delivery.channel == channel)
            )
        delivery_id = existing.id if existing is not None else None
    if delivery_id is not None:
        return resend_delivery(store, delivery_id, actor=actor, clock=clock)
    from mrt_engine.batch import insert_alerts, outbox_rows

    with store.write():
        now_s = to_store(now)
        if alert is None:
            alert = Alert.create(
                event=event, rules=[], priority=0, tags=[], origin="manual", created_at=now
            )
        cursor = store.db.cursor()
        # An operator's send: no silence applies to it, and it goes out now and alone (no group
        # key).
        insert_alerts(cursor, [], outbox_rows(alert.id, [channel], alert.priority, now_s))
        created = Delivery.get((Delivery.alert == alert) & (Delivery.channel == channel))
        _audit(
            "resend",
            f"event:{event_id}",
            actor,
            None,
            {"alert": alert.id, "delivery": created.id, "channel": channel},
            now,
        )
    return OpResult(
        f"event {event_id} queued to {channel} (delivery {created.id})",
        1,
        None,
        {"delivery": created.id},
    )


# ---------------------------------------------------------------------- replay
def tracker_event(row: Event) -> TrackerEvent:
    """A stored event back in the shape rules evaluate."""
    return TrackerEvent(
        source=row.source,
        source_key=row.source_key,
        resource_type=row.resource_type,
        resource_id=row.resource_id,
        event_type=row.event_type,
        event_id=row.event_id,
        title=row.title,
        summary=row.summary,
        body=row.body or "",
        url=row.url,
        author=row.author,
        labels=tuple(row.labels or ()),
        occurred_at=row.occurred_at,
        observed_at=row.observed_at,
        _fingerprint=row.fingerprint,
    )


@dataclass
class ReplayItem:
    event_id: int
    title: str
    source_key: str
    event_type: str
    channels: tuple[str, ...]
    rules: tuple[str, ...]
    # An active silence that matches: the new deliveries are stored silenced by it.
    silenced_by: int | None = None


@dataclass
class ReplayPlan:
    """What a replay enqueues (or, dry, would enqueue)."""

    scanned: int = 0
    matched: int = 0
    items: list[ReplayItem] = field(default_factory=list)
    dry_run: bool = True

    @property
    def deliveries(self) -> int:
        """Deliveries enqueued (or, dry, to be): new ones, and silenced ones let out."""
        return sum(len(i.channels) for i in self.items if i.silenced_by is None)

    @property
    def silenced(self) -> int:
        """New deliveries stored as silenced, an active silence matching them."""
        return sum(len(i.channels) for i in self.items if i.silenced_by is not None)


def _window(since: datetime, until: datetime | None, source: str | None) -> Iterator[Event]:
    """Stored events that happened from ``since`` to ``until`` (when the upstream gave no time:
    were observed then), of ``source`` (a glob), in id order.

    Found through the ``occurred_at`` index, whose NULL entries are the events without a time, so
    a replay of the last hours reads those hours, not the year (the ids, unsorted: asked for in
    id order, SQLite reads the whole table); then the rows, a thousand at a time.
    """
    timed = Event.occurred_at >= since
    untimed = Event.occurred_at.is_null() & (Event.observed_at >= since)
    if until is not None:
        timed &= Event.occurred_at <= until
        untimed &= Event.observed_at <= until
    ids = sorted(r[0] for r in Event.select(Event.id).where(timed | untimed).tuples())
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        for row in Event.select().where(Event.id.in_(chunk)).order_by(Event.id):
            if source is None or fnmatchcase(row.source_key, source):
                yield row


def plan_replay(
    rules: RuleSet,
    *,
    since: datetime,
    until: datetime | None = None,
    source: str | None = None,
    channel: str | None = None,
    silences: Sequence[Silence] = (),
    now: datetime | None = None,
) -> tuple[ReplayPlan, list[tuple[Event, Decision, tuple[str, ...], dict[str, int], int | None]]]:
    """Evaluate stored events in the window with ``rules``; find (event, channel) never
    enqueued, or silenced. A silenced delivery is let out (queued again) unless one of the
    active ``silences`` still matches; a new delivery an active silence matches is stored
    silenced by it (``silenced_by``)."""
    from mrt_engine.silence import SilenceTarget, silencing

    at = now or utcnow()
    plan = ReplayPlan()
    work: list[tuple[Event, Decision, tuple[str, ...], dict[str, int], int | None]] = []
    for row in _window(since, until, source):
        plan.scanned += 1
        decision = rules.evaluate(tracker_event(row))
        if not decision.notify:
            continue
        targets = [c for c in decision.channels if channel is None or c == channel]
        if not targets:
            continue
        plan.matched += 1
        alert = Alert.get_or_none(Alert.event == row.id)
        have: set[str] = set()
        held: dict[str, int] = {}  # channel -> its silenced delivery
        if alert is not None:
            for d in Delivery.select(Delivery.id, Delivery.channel, Delivery.status).where(
                Delivery.alert == alert
            ):
                if d.status == "silenced":
                    held[d.channel] = d.id
                else:
                    have.add(d.channel)
        silence = silencing(
            silences,
            SilenceTarget(
                row.source_key,
                row.resource_id,
                row.event_type,
                tuple(decision.notify_rules),
                row.title,
                row.summary,
            ),
            at,
        )
        missing = tuple(
            c for c in targets if c not in have and not (c in held and silence is not None)
        )
        if not missing:
            continue
        silenced_by = silence.id if silence is not None else None
        plan.items.append(
            ReplayItem(
                row.id,
                clean(row.title),
                clean(row.source_key),
                row.event_type,
                missing,
                decision.notify_rules,
                silenced_by,
            )
        )
        work.append((row, decision, missing, held, silenced_by))
    return plan, work


def replay(
    store: Store,
    rules: RuleSet,
    *,
    since: datetime,
    until: datetime | None = None,
    source: str | None = None,
    channel: str | None = None,
    dry_run: bool = False,
    actor: str,
    clock: Clock = utcnow,
    incident_window: timedelta | None = None,
    clusters: ClusterSettings | None = None,
) -> ReplayPlan:
    """Re-evaluate stored events with the current rules and enqueue what now matches and was
    never enqueued for that channel, or was silenced by a silence no longer active (active
    silences still apply: see :func:`plan_replay`). ``dry_run`` only reports it. An alert of a
    model family joins its incident (``incident_window``: ``incidents.window_days``) in the
    same transaction, as a polled one does, and its alike ones a cluster (``clusters``)."""
    from mrt_engine import incidents
    from mrt_engine.batch import insert_alerts, outbox_rows
    from mrt_engine.delivery.groups import group_key
    from mrt_engine.silences import read_current

    if until is not None and until < since:
        raise OperationError("--until is before --since")
    with store.write() if not dry_run else store.read():
        now = clock()
        active = [s for s in read_current(store, now) if s.active(now)]
        plan, work = plan_replay(
            rules,
            since=since,
            until=until,
            source=source,
            channel=channel,
            silences=active,
            now=now,
        )
        plan.dry_run = dry_run
        if dry_run:
            return plan
        now_s = to_store(now)
        cursor = store.db.cursor()
        alerted = []  # (event id, alert id, source key, family) for the incidents
        for row, decision, missing, held, silenced_by in work:
            alert = Alert.get_or_none(Alert.event == row.id)
            for hit in decision.hits:
                cursor.execute(
                    "INSERT INTO rule_hit (event_id, rule, action, priority, reason, suppressed, origin,"
                    " evaluated_at) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        row.id,
                        storable(hit.rule),
                        hit.action,
                        hit.priority,
                        storable(hit.reason),
                        int(hit.suppressed),
                        "replay",
                        now_s,
                    ),
                )
            if alert is None:
                alert = Alert.create(
                    event=row.id,
                    rules=list(decision.notify_rules),
                    priority=decision.priority,
                    tags=list(decision.tags),
                    origin="replay",
                    created_at=now,
                )
            new = [c for c in missing if c not in held]
            event = tracker_event(row)
            group_by = rules.group_by(decision)
            key = group_key(event, group_by, decision.notify_rules[0]) if group_by else None
            insert_alerts(
                cursor,
                [],
                outbox_rows(alert.id, new, decision.priority, now_s, key, silence_id=silenced_by),
            )
            # Silenced by a silence no longer active: let out (it keeps its silence_id).
            released = [held[c] for c in missing if c in held]
            if released:
                Delivery.update(
                    status="pending", attempts=0, next_attempt_at=now, updated_at=now
                ).where(Delivery.id.in_(released)).execute()
            name = incidents.name_of(
                row.event_type, row.title, row.resource_id, row.summary, row.body
            )
            if name is not None:
                alerted.append((row.id, alert.id, row.source_key, name))
        # Linked like a polled alert; one linked already (by its poll, an earlier replay) stays.
        incidents.link(store, alerted, now, incident_window or incidents.DEFAULT_WINDOW, clusters)
        _audit(
            "replay",
            f"since={to_store(since)} until={to_store(until) or '-'} source={source or '*'} channel={channel or '*'}",
            actor,
            None,
            {
                "events": len(plan.items),
                "deliveries": plan.deliveries,
                "silenced": plan.silenced,
                "scanned": plan.scanned,
            },
            now,
        )
    return plan


# ---------------------------------------------------------------------- cursors and sources
def _source_row(source_key: str) -> SourceState:
    row = SourceState.get_or_none(SourceState.source_key == source_key)
    if row is None:
        known = (
            ", ".join(r.source_key for r in SourceState.select(SourceState.source_key))
            or "none yet"
        )
        raise OperationError(f"there is no source key {source_key!r} (known: {known})")
    return row


def _cursor_state(row: SourceState) -> dict[str, Any]:
    return {
        "cursor": row.cursor,
        "baseline_done": bool(row.baseline_done),
        "baseline_at": to_store(row.baseline_at),
        "etag": row.etag,
        "last_modified": row.last_modified,
    }


def reset_cursor(
    store: Store,
    source_key: str,
    *,
    to: datetime | None = None,
    initial: bool = False,
    actor: str,
    clock: Clock = utcnow,
) -> OpResult:
    """Move a cursor: ``to`` a time (the next poll reports what changed after it), or back to
    ``initial`` (the next poll takes a new baseline). The old value goes to the audit log.

    ``to`` also lowers the baseline time to it, so what happened after it is news again;
    ``initial`` clears it (the next poll sets it).
    """
    if initial == (to is not None):
        raise OperationError("give exactly one of --to TIME or --initial")
    now = clock()
    with store.write():
        row = _source_row(source_key)
        before = _cursor_state(row)
        if initial:
            cursor, baseline_done, baseline_at = None, False, None
        else:
            assert to is not None
            cursor, baseline_done = {"since": github_time(to)}, True
            # Lowered, never raised: a later time would turn past news into history.
            baseline_at = row.baseline_at
            if baseline_at is None or to < baseline_at:
                baseline_at = to
        SourceState.update(
            cursor=cursor,
            baseline_done=baseline_done,
            baseline_at=baseline_at,
            etag=None,
            last_modified=None,
            validated_url=None,
            backoff_until=None,
            version=SourceState.version + 1,
            updated_at=now,
        ).where(SourceState.source_key == source_key).execute()
        after = _cursor_state(_source_row(source_key))
        _audit("cursor_reset", f"source:{source_key}", actor, before, after, now)
    what = "its initial state (next poll takes a new baseline)" if initial else github_time(to)  # type: ignore[arg-type]
    return OpResult(
        f"cursor of {source_key} reset to {what}; old value: {json.dumps(before['cursor'])}",
        1,
        before,
        after,
    )


def set_paused(
    store: Store, source_key: str, paused: bool, *, actor: str, clock: Clock = utcnow
) -> OpResult:
    now = clock()
    with store.write():
        row = _source_row(source_key)
        if bool(row.paused) == paused:
            return OpResult(
                f"{source_key} is already {'paused' if paused else 'running'}; nothing changed"
            )
        SourceState.update(paused=paused, updated_at=now).where(
            SourceState.source_key == source_key
        ).execute()
        _audit(
            "pause" if paused else "resume",
            f"source:{source_key}",
            actor,
            {"paused": not paused},
            {"paused": paused},
            now,
        )
    return OpResult(f"{source_key} {'paused' if paused else 'resumed'}", 1)


def request_poll(store: Store, source_key: str, *, actor: str, clock: Clock = utcnow) -> OpResult:
    """Ask the running engine to poll ``source_key`` now (it checks every second)."""
    now = clock()
    with store.write():
        _source_row(source_key)
        SourceState.update(poll_requested_at=now).where(
            SourceState.source_key == source_key
        ).execute()
        _audit(
            "poll_now",
            f"source:{source_key}",
            actor,
            None,
            {"poll_requested_at": to_store(now)},
            now,
        )
    return OpResult(
        f"poll of {source_key} requested; the running engine picks it up within a second", 1
    )
