"""Group keys: which hits may go out as one message (Alertmanager's ``group_by``).

A key is written with each outbox row (in the poll's transaction); the delivery layer
(:mod:`mrt_engine.delivery.bundles`) decides at claim time, with the channel's settings and the
group times of the rule that led to its first due hit (``group_wait_seconds`` /
``group_interval_seconds``: :meth:`ChannelPolicy.group_times`), when a group's rows go out and
which row carries the others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from mrt_engine.events import TrackerEvent
from mrt_engine.health import is_protected
from mrt_engine.text import storable

MAX_KEY_CHARS = 200


def group_key(event: TrackerEvent, group_by: Sequence[str], rule: str = "") -> str | None:
    """The key of ``event``'s group (``group_by`` fields of the event, ``rule`` the notify rule
    that led to the alert), or ``None`` when it is never grouped: a protected hit, or an empty
    ``group_by``."""
    if not group_by or is_protected(event.event_type):
        return None
    values = {
        "source": event.source,
        "source_key": event.source_key,
        "resource_type": event.resource_type,
        "resource": event.resource_id,
        "event_type": event.event_type,
        "org": event.org,
        "rule": rule,
    }
    key = "|".join(f"{name}={values.get(name, '')}" for name in group_by)
    if len(key) > MAX_KEY_CHARS:  # still one key per group, and an index entry of bounded size
        key = (
            key[: MAX_KEY_CHARS - 65]
            + "#"
            + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()
        )
    return storable(key)
