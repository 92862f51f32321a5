"""Model lists of an organisation (HuggingFace, ModelScope, ...): snapshot, diff, events.

Each poll lists the organisation's models and compares the list with the snapshot kept in the
cursor (modelscope-watcher.md's new / updated / removed):

* a model not in the snapshot: ``model_added`` (event_id: its creation time, so a model deleted
  and created again is news again; a model created before the baseline and listed only now,
  such as a private repository made public, is dated by the poll that first lists it);
* a model whose revision changed (a commit sha, or a last-modified time where the platform has
  no sha): ``model_updated`` with the new revision as event_id;
* a model gone from a complete listing (deleted or made private): ``model_removed``.

The first poll takes the whole list as a baseline. A listing that suddenly shrinks by more than
half is refused as an upstream glitch rather than announced as mass removals. Platforms whose
first page supports conditional requests answer ``304`` when nothing changed; a full sweep still
runs every ``sweep_interval_seconds`` so removals further down the list are seen.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from mrt_engine.events import TrackerEvent
from mrt_engine.http import MalformedResponse, PollSession, Validators
from mrt_engine.quarantine import Quarantined
from mrt_engine.sources.base import PollResult, Source, SourceState, appeared_at
from mrt_engine.text import storable
from mrt_engine.timeutil import github_time, parse_upstream, to_store
from mrt_engine.wording import plural

SHRINK_GUARD_MIN_MODELS = 6
MAX_LABELS = 20
TIME_REVISION = "modified:"
# The snapshot entry of a model the baseline listed but could not read (it was quarantined).
UNREAD = {"rev": None, "unread": True}


def time_revision(when: datetime) -> str:
    """The revision of a model known only by the time of its last change.

    It is the instant, written one way (UTC, whole seconds: the coarsest any API gives), never
    the upstream's text: two APIs of one platform write the same instant differently (epoch
    seconds, ISO text with an offset), and a different text is not a new revision.
    """
    return TIME_REVISION + when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ModelInfo:
    """One model as a platform lists it."""

    id: str
    revision: str
    url: str
    last_modified: datetime | None = None
    created_at: datetime | None = None
    summary: str = ""
    labels: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class Listing:
    """A listing; ``models`` is ``None`` when the first page answered ``304``. ``quarantined``:
    listed models that could not be processed (neither news nor removals)."""

    models: list[ModelInfo] | None
    validators: Validators | None = None
    validated_url: str | None = None
    complete: bool = True
    extra_cursor: dict[str, Any] = field(default_factory=dict)
    quarantined: list[Quarantined] = field(default_factory=list)


def _as_stored(model: ModelInfo) -> ModelInfo:
    """``model`` with its id and revision as the store keeps them (the snapshot in the cursor
    is compared with the listing: an id with a lone surrogate must match its stored self)."""
    if model.id.isascii() and model.revision.isascii():
        return model
    return replace(model, id=storable(model.id), revision=storable(model.revision))


class ModelListSource(Source):
    """Base of every organisation-model-list source; platforms implement :meth:`list_models`."""

    resource_type = "model"

    def __init__(
        self, key: str, api_base: str, interval: float, org: str, sweep_interval: float
    ) -> None:
        super().__init__(key, api_base, interval)
        self.org = org
        self.sweep_interval = sweep_interval

    @abstractmethod
    def list_models(self, http: PollSession, state: SourceState, *, conditional: bool) -> Listing:
        """List the organisation's models (all pages)."""

    def parse_time(self, value: Any) -> datetime | None:
        """A time as the platform writes it (platforms with other forms override this)."""
        return parse_upstream(value)

    def stored_revision(self, revision: Any) -> Any:
        """A revision from the cursor in today's form: cursors written before revisions were
        normalised hold the upstream's raw time text (``modified:1763625600``)."""
        if isinstance(revision, str) and revision.startswith(TIME_REVISION):
            when = self.parse_time(revision.removeprefix(TIME_REVISION))
            if when is not None:
                return time_revision(when)
        return revision

    def poll(self, state: SourceState, http: PollSession, now: datetime) -> PollResult:
        cursor = state.cursor or {}
        snapshot: dict[str, dict[str, Any]] | None = (
            cursor.get("models") if state.baseline_done else None
        )
        swept_at = parse_upstream(cursor.get("swept_at"))
        sweep_due = swept_at is None or now - swept_at >= timedelta(seconds=self.sweep_interval)
        listing = self.list_models(http, state, conditional=snapshot is not None and not sweep_due)
        if listing.models is None:
            return PollResult(
                [], state.cursor, state.validators, state.validated_url, not_modified=True
            )
        listing.models = [_as_stored(m) for m in listing.models]
        current = {m.id: m for m in listing.models}
        new_cursor = {
            **{k: v for k, v in cursor.items() if k not in ("models", "since")},
            **listing.extra_cursor,
            "models": {
                m.id: {
                    "rev": m.revision,
                    "modified": to_store(m.last_modified),
                    "created": to_store(m.created_at),
                }
                for m in listing.models
            },
            "swept_at": to_store(now) if listing.complete else cursor.get("swept_at"),
        }
        since = parse_upstream(cursor.get("since"))
        if snapshot is None:
            # The baseline also lists what it could not read: a model that reads later is as
            # old as it says, not new to the listing.
            for held in listing.quarantined:
                if held.identified:
                    new_cursor["models"].setdefault(held.item_key, dict(UNREAD))
            if since is None:
                events = [self._event("model_added", m, now) for m in listing.models]
                return PollResult(
                    events,
                    new_cursor,
                    listing.validators,
                    listing.validated_url,
                    baseline=True,
                    quarantined=listing.quarantined,
                )
            # Reset to a time: report what changed after it, take the rest as the new snapshot.
            recent = [m for m in listing.models if m.last_modified and m.last_modified >= since]
            events = [self._event("model_updated", m, now) for m in recent]
            return PollResult(
                events,
                new_cursor,
                listing.validators,
                listing.validated_url,
                quarantined=listing.quarantined,
            )
        # A quarantined model is still listed: it keeps its snapshot entry and is no removal. One
        # that names no id could be any model, so the listing cannot prove a removal at all.
        held = {q.item_key for q in listing.quarantined}
        complete = listing.complete and all(q.identified for q in listing.quarantined)
        for model_id in held & snapshot.keys():
            new_cursor["models"].setdefault(model_id, snapshot[model_id])
        self._guard_shrink(snapshot, current.keys() | held, complete)
        events: list[TrackerEvent] = []
        for model in listing.models:
            before = snapshot.get(model.id)
            if before is not None and before.get("unread"):  # listed, unreadable, at the baseline
                events.append(self._event("model_added", model, now))
                continue
            if before is None:
                change = self._event("model_added", model, now)
            elif self.stored_revision(before.get("rev")) != model.revision:
                change = self._event("model_updated", model, now)
            else:
                continue
            # The snapshot proves the change came after it, whatever the upstream's stamp says
            # (a model created before the baseline and made public since; a late-stamped edit).
            change.occurred_at = appeared_at(change.occurred_at, state, now)
            events.append(change)
        if complete:
            for model_id, before in snapshot.items():
                if model_id not in current and model_id not in held:
                    events.append(self._removed(model_id, before, now))
        else:
            # An incomplete listing cannot prove a removal: keep what it did not reach.
            for model_id, before in snapshot.items():
                new_cursor["models"].setdefault(model_id, before)
        return PollResult(
            events,
            new_cursor,
            listing.validators,
            listing.validated_url,
            quarantined=listing.quarantined,
        )

    def _guard_shrink(
        self, snapshot: dict[str, Any], current: Collection[str], complete: bool
    ) -> None:
        if not complete or len(snapshot) < SHRINK_GUARD_MIN_MODELS:
            return
        if len(current) < len(snapshot) / 2:
            raise MalformedResponse(
                f"{self.org}'s model list shrank from {len(snapshot)} to {plural(len(current), 'model')} at once; "
                "treated as an upstream glitch, not as removals (reset the cursor to accept it)"
            )

    def web_url(self, model_id: str) -> str:
        return f"{self.api_base}/{model_id}"

    def _event(self, event_type: str, model: ModelInfo, now: datetime) -> TrackerEvent:
        if event_type == "model_added":
            event_id = to_store(model.created_at) or f"rev:{model.revision}"
            occurred = model.created_at or model.last_modified
        else:
            event_id = model.revision
            occurred = model.last_modified
        return TrackerEvent(
            source=self.platform,
            source_key=self.key,
            resource_type=self.resource_type,
            resource_id=model.id,
            event_type=event_type,
            event_id=event_id,
            title=model.id,
            summary=model.summary,
            url=model.url,
            author=self.org,
            labels=model.labels[:MAX_LABELS],
            occurred_at=occurred,
            observed_at=now,
            raw=model.raw,
        )

    def _removed(self, model_id: str, before: dict[str, Any], now: datetime) -> TrackerEvent:
        return TrackerEvent(
            source=self.platform,
            source_key=self.key,
            resource_type=self.resource_type,
            resource_id=model_id,
            event_type="model_removed",
            event_id=f"removed:{self.stored_revision(before.get('rev'))}@{github_time(now)[:10]}",
            title=model_id,
            summary="no longer listed (deleted, renamed or made private)",
            url=self.web_url(model_id),
            author=self.org,
            occurred_at=now,
            observed_at=now,
            raw={"last_known": before},
        )
