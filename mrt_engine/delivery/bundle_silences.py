"""Silences at a bundle's claim: the alerts a group, a digest or a fold would carry are matched
one by one against the silences active now (see :meth:`.bundles.Planner._unsilenced`).

Its alerts were each matched when they were written; a silence made while the bundle waited
must still stop the ones it matches, and only those: the silenced ones are stored ``silenced``
(with the silence's id, out of the bundle), the rest go out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from mrt_engine.silence import Silence, SilenceTarget, silencing
from mrt_engine.timeutil import from_store

if TYPE_CHECKING:
    import sqlite3

    from mrt_engine.delivery.bundles import Message, Planner


def silence_members(planner: Planner, message: Message) -> bool:
    """Silence the alerts of ``message`` an active silence matches, inside the claim; whether
    nothing is left to send. A silenced carrier hands the bundle to the first member left (of
    a bundle being retried, that member becomes its carrier: its earlier attempts stay on the
    silenced one's record)."""
    from mrt_engine.delivery.bundles import Row

    silences = planner._active_silences()
    if not silences:
        return False  # (the common case: no member is read)
    carrier = message.row
    retried = message.kind == "single"  # a bundle's carrier sent before: its members are set
    if retried:
        planner.cursor.execute(
            "SELECT id FROM delivery WHERE bundle_id = ? AND status = 'bundled'", (carrier.id,)
        )
        ids = [r[0] for r in planner.cursor.fetchall()]
    else:
        ids = list(message.ids)
        for key in message.keys:
            ids += planner._select("group_key = ?", [key])
        if message.kind == "digest":
            below = planner.policy.digest.below_priority if planner.policy.digest else 0
            ids += planner._select("priority < ? AND next_attempt_at <= ?", [below, planner.now_s])
    ids = sorted({carrier.id, *ids})
    silenced = silenced_rows(planner.cursor, ids, silences, planner.now)
    if not silenced:
        return False
    left = [i for i in ids if i not in silenced]
    for silence_id in set(silenced.values()):
        chosen = [i for i, s in silenced.items() if s == silence_id]
        planner._update(
            chosen, "status = 'silenced', silence_id = ?, bundle_id = NULL", [silence_id]
        )
    if not left:
        return True
    message.ids = [i for i in message.ids if i not in silenced]
    if carrier.id in silenced:
        planner.cursor.execute(
            "SELECT id, priority, group_key, created_at FROM delivery"
            f" WHERE id IN ({','.join('?' * len(left))}) ORDER BY priority DESC, id LIMIT 1",
            left,
        )
        new = planner.cursor.fetchone()
        kind = "single"
        if retried:  # the first member left carries the rest from now on (queued, so never lost)
            kind = carrier.kind
            planner.cursor.execute(
                "UPDATE delivery SET status = 'retrying', kind = ?, bundle_id = NULL,"
                " updated_at = ? WHERE id = ?",
                (kind, planner.now_s, new[0]),
            )
            planner.cursor.execute(
                "UPDATE delivery SET bundle_id = ?, updated_at = ?"
                " WHERE bundle_id = ? AND status = 'bundled'",
                (new[0], planner.now_s, carrier.id),
            )
        message.row = Row(new[0], 0, new[1], new[2], kind, from_store(new[3]))
    return False


def silenced_rows(
    cursor: sqlite3.Cursor, ids: Sequence[int], silences: Sequence[Silence], now: datetime
) -> dict[int, int]:
    """Of the deliveries ``ids``, those one of ``silences`` matches: id -> the silence's id
    (never a protected hit's, never one an operator let out)."""
    found: dict[int, int] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        cursor.execute(
            "SELECT d.id, d.silence_id, e.source_key, e.resource_id, e.event_type, a.rules,"
            " e.title, e.summary FROM delivery d JOIN alert a ON a.id = d.alert_id"
            f" JOIN event e ON e.id = a.event_id WHERE d.id IN ({','.join('?' * len(chunk))})",
            chunk,
        )
        for (
            row_id,
            released,
            source_key,
            resource,
            event_type,
            rules,
            title,
            summary,
        ) in cursor.fetchall():
            if released is not None:  # let out by an operator: not stopped again
                continue
            names = tuple(json.loads(rules or "[]"))
            target = SilenceTarget(source_key, resource, event_type, names, title, summary or "")
            silence = silencing(silences, target, now)
            if silence is not None:
                found[row_id] = silence.id
    return found
