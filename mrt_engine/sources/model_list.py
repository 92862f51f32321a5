"""Model lists of an organisation (HuggingFace, ModelScope, ...): snapshot, diff, events.

Each poll lists the organisation's models and compares the list with the snapshot kept in the
cursor (modelscope-watcher.md's new / updated / removed):

* a model not in the snapshot: ``model_added`` (event_id: its creation time, so a model deleted
  and created again is news again);
* a model whose revision changed (a commit sha, or a last-modified stamp where the platform has
  no sha): ``model_updated`` with the new revision as event_id;
* a model gone from a complete listing (deleted or made private): ``model_removed``.

The first poll takes the whole list as a baseline. A listing that suddenly shrinks by more than
half is refused as an upstream glitch rather than announced as mass removals. Platforms whose
first page supports conditional requests answer ``304`` when nothing changed; a full sweep still
runs every ``sweep_interval_seconds`` so removals further down the list are seen.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mrt_engine.events import TrackerEvent
from mrt_engine.http import MalformedResponse, PollSession, Validators
from mrt_engine.sources.base import PollResult, Source, SourceState
from mrt_engine.timeutil import github_time, parse_upstream, to_store
from mrt_engine.wording import plural

SHRINK_GUARD_MIN_MODELS = 6
MAX_LABELS = 20


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
    """A listing; ``models`` is ``None`` when the first page answered ``304``."""

    models: list[ModelInfo] | None
    validators: Validators | None = None
    validated_url: str | None = None
    complete: bool = True
    extra_cursor: dict[str, Any] = field(default_factory=dict)


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
            if since is None:
                events = [self._event("model_added", m, now) for m in listing.models]
                return PollResult(
                    events, new_cursor, listing.validators, listing.validated_url, baseline=True
                )
            # Reset to a time: report what changed after it, take the rest as the new snapshot.
            recent = [m for m in listing.models if m.last_modified and m.last_modified >= since]
            events = [self._event("model_updated", m, now) for m in recent]
            return PollResult(events, new_cursor, listing.validators, listing.validated_url)
        self._guard_shrink(snapshot, current, listing.complete)
        events: list[TrackerEvent] = []
        for model in listing.models:
            before = snapshot.get(model.id)
            if before is None:
                events.append(self._event("model_added", model, now))
            elif before.get("rev") != model.revision:
                events.append(self._event("model_updated", model, now))
        if listing.complete:
            for model_id, before in snapshot.items():
                if model_id not in current:
                    events.append(self._removed(model_id, before, now))
        else:
            # An incomplete listing cannot prove a removal: keep what it did not reach.
            for model_id, before in snapshot.items():
                new_cursor["models"].setdefault(model_id, before)
        return PollResult(events, new_cursor, listing.validators, listing.validated_url)

    def _guard_shrink(
        self, snapshot: dict[str, Any], current: dict[str, ModelInfo], complete: bool
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
            event_id=f"removed:{before.get('rev')}@{github_time(now)[:10]}",
            title=model_id,
            summary="no longer listed (deleted, renamed or made private)",
            url=self.web_url(model_id),
            author=self.org,
            occurred_at=now,
            observed_at=now,
            raw={"last_known": before},
        )
