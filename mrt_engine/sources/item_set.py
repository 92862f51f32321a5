"""Sources whose upstream answers with the current set of items (a package's versions, an
image's tags, a repo's releases): each poll compares the set with the keys kept in the cursor.

An item's ``event_id`` is what must change for the user to hear again: a version number, a tag
with its digest (a re-pushed tag is news), an advisory id with its modification time. The first
poll records every item as a baseline (no alert flood); a reset cursor (``--initial``) does the
same again. A conditional request that answers ``304`` costs nothing and changes nothing.

An item new to the set is news even when the upstream dates it before the baseline (an entry
backdated, an advisory imported late): the baseline saw the whole set without it, so its event
takes the time of the poll that first lists it (:func:`~mrt_engine.sources.base.appeared_at`).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mrt_engine.events import TrackerEvent
from mrt_engine.http import PollSession, Validators
from mrt_engine.quarantine import Quarantined
from mrt_engine.sources.base import PollResult, Source, SourceState, appeared_at
from mrt_engine.text import storable

# Keys kept in the cursor at most (an image with thousands of tags keeps the newest ones).
MAX_KNOWN = 5000
# The cursor's value for an item the baseline listed but could not read (it was quarantined).
UNREAD = None


@dataclass(frozen=True)
class Item:
    """One item of the set, with the event it stands for."""

    key: str
    event_id: str
    event_type: str
    title: str
    url: str
    occurred_at: datetime | None = None
    summary: str = ""
    labels: tuple[str, ...] = ()
    author: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
    body: str = ""  # the whole text when ``summary`` is its excerpt (TrackerEvent.body)


@dataclass
class ItemSet:
    """What one fetch found; ``items`` is ``None`` when the upstream answered ``304``.
    ``quarantined``: the items that could not be processed (they keep their known entry)."""

    items: list[Item] | None
    validators: Validators | None = None
    validated_url: str | None = None
    quarantined: list[Quarantined] = field(default_factory=list)


class ItemSetSource(Source):
    """Base of the set-diffing sources; a platform implements :meth:`fetch`."""

    resource_type = "item"

    def __init__(self, key: str, api_base: str, interval: float, resource_id: str) -> None:
        super().__init__(key, api_base, interval)
        self.resource_id = resource_id

    @abstractmethod
    def fetch(self, http: PollSession, state: SourceState, *, conditional: bool) -> ItemSet:
        """The current items, newest first where the upstream orders them."""

    def poll(self, state: SourceState, http: PollSession, now: datetime) -> PollResult:
        cursor = state.cursor or {}
        known: dict[str, str | None] | None = cursor.get("items") if state.baseline_done else None
        found = self.fetch(http, state, conditional=known is not None)
        if found.items is None:
            return PollResult(
                [], state.cursor, state.validators, state.validated_url, not_modified=True
            )
        # Keys and event ids as the cursor stores them, so odd text still matches itself.
        events = []
        for item in found.items:
            key = storable(item.key)
            if known is not None and known.get(key) == storable(item.event_id):
                continue
            event = self.event(item, now)
            # New to a set the baseline saw whole: it appeared after it. One the baseline
            # listed but could not read is as old as it says (the history rule judges it).
            if known is not None and not (key in known and known[key] is UNREAD):
                event.occurred_at = appeared_at(event.occurred_at, state, now)
            events.append(event)
        current: dict[str, str | None] = {
            storable(item.key): storable(item.event_id) for item in found.items
        }
        if known is None:  # the baseline also lists what it could not read
            for held in found.quarantined:
                if held.identified:
                    current.setdefault(held.item_key, UNREAD)
        if known:  # keep what this answer did not list (a page limit, an upstream hiccup)
            current.update({k: v for k, v in known.items() if k not in current})
        if len(current) > MAX_KNOWN:
            current = dict(list(current.items())[:MAX_KNOWN])
        return PollResult(
            events,
            {"items": current},
            found.validators,
            found.validated_url,
            baseline=known is None,
            quarantined=found.quarantined,
        )

    def event(self, item: Item, now: datetime) -> TrackerEvent:
        return TrackerEvent(
            source=self.platform,
            source_key=self.key,
            resource_type=self.resource_type,
            resource_id=self.resource_id,
            event_type=item.event_type,
            event_id=item.event_id,
            title=item.title,
            summary=item.summary,
            url=item.url,
            author=item.author,
            labels=item.labels,
            occurred_at=item.occurred_at,
            observed_at=now,
            raw=item.raw,
            body=item.body,
        )
