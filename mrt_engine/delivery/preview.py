"""``mrt-engine preview``: what a channel would send for one event, rendered but not sent.

The message is built as a delivery of the event would be (:func:`~mrt_engine.delivery.outbox.
message_context`): from the event's delivery when it has one, else from its alert, else from the
rules that matched it (none: as an operator's resend). Only reads the store.
"""

from __future__ import annotations

from mrt_engine.delivery.outbox import event_context, message_context
from mrt_engine.notify.base import Outgoing
from mrt_engine.store import queries
from mrt_engine.store.db import Store
from mrt_engine.store.models import Alert, Delivery


class PreviewError(ValueError):
    """No single event to preview: one line that says why."""


def outgoing_for(store: Store, channel: str, ref: str) -> Outgoing:
    """The :class:`Outgoing` a delivery of the event ``ref`` names (a fingerprint or a unique
    prefix of one, a URL, ``event:ID``, ``delivery:ID``) to ``channel`` would carry."""
    with store.read():
        events = queries.find_events(ref)
        if not events:
            raise PreviewError(
                f"no event matches {ref!r} (give a fingerprint or a prefix of it, a URL,"
                " event:ID or delivery:ID)"
            )
        if len(events) > 1:
            shown = ", ".join(e.fingerprint[:12] for e in events[:5])
            raise PreviewError(
                f"{len(events)} events match {ref!r} ({shown}{', ...' if len(events) > 5 else ''}):"
                " give more of the fingerprint"
            )
        event = events[0]
        cursor = store.db.cursor()
        alert = Alert.get_or_none(Alert.event == event.id)
        if alert is not None:
            deliveries = list(
                Delivery.select(Delivery.id, Delivery.channel, Delivery.attempts)
                .where(Delivery.alert == alert.id)
                .order_by(Delivery.id)
            )
            mine = [d for d in deliveries if d.channel == channel]
            if mine:
                # Exactly what the outbox hands the channel for its next attempt.
                d = mine[-1]
                return Outgoing(d.id, d.attempts + 1, message_context(cursor, d.id))
            context = event_context(
                cursor, event.id, alert.rules, alert.tags, alert.priority, channel=channel
            )
            return Outgoing(0, 1, context)
        cursor.execute(
            "SELECT rule, priority FROM rule_hit WHERE event_id = ? AND suppressed = 0"
            " AND action = 'notify' ORDER BY id",
            (event.id,),
        )
        hits = cursor.fetchall()
        rules = list(dict.fromkeys(rule for rule, _ in hits))
        priority = max((p for _, p in hits), default=0)
        return Outgoing(0, 1, event_context(cursor, event.id, rules, (), priority, channel=channel))
