"""TrackerEvent, the one shape every source produces, and its fingerprint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mrt_engine.text import storable


@dataclass(slots=True)
class TrackerEvent:
    """Something an upstream published, normalised (v0-architecture §7.1)."""

    source: str  # platform: github, huggingface, ...
    source_key: str  # the cursor it came from: github:vllm-project/vllm:issues
    resource_type: str  # repo_issue, repo_pr, model, ...
    resource_id: str  # vllm-project/vllm, deepseek-ai/DeepSeek-V3, ...
    event_type: str  # issue_opened, pr_merged, model_updated, ...
    event_id: str  # changes exactly when the user should hear again
    title: str
    observed_at: datetime
    summary: str = ""
    url: str = ""
    author: str = ""
    labels: tuple[str, ...] = ()
    occurred_at: datetime | None = None
    # The upstream's facts the fields above do not hold, for trace (a state, a revision, the
    # time a cursor went by): not the whole upstream object. See :func:`stored_raw`.
    raw: dict[str, Any] = field(default_factory=dict)
    # The whole text the upstream gave (text.body_text), when ``summary`` is only its excerpt:
    # rules match ``summary`` against it, messages show the excerpt.
    body: str = ""
    _fingerprint: str | None = field(default=None, repr=False, compare=False)

    @property
    def fingerprint(self) -> str:
        """sha256 of ``source|resource_type|resource_id|event_type|event_id``."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint_of(
                self.source, self.resource_type, self.resource_id, self.event_type, self.event_id
            )
        return self._fingerprint

    @property
    def org(self) -> str:
        """The owner part of ``resource_id`` (``vllm-project`` of ``vllm-project/vllm``)."""
        return self.resource_id.split("/", 1)[0]


# A copy of an empty sha256 is a new one in ~half the time of hashlib.sha256(), which looks the
# algorithm up in OpenSSL on every call (and it runs for every event). The empty one is never
# updated, so copies of it from several threads are safe.
_new_sha256 = hashlib.sha256().copy

_SEQUENCES = (list, tuple)  # made once: ``list | tuple`` in the loop made a new union per value


def stored_raw(event: TrackerEvent) -> dict[str, Any] | None:
    """What of ``event.raw`` the store keeps: no null (it says nothing) and no value one of the
    event's fields already holds (a title, URL, author, resource, event id or the labels are
    stored once, in their column). ``None`` when nothing is left."""
    held = (event.title, event.url, event.author, event.resource_id, event.event_id, "")
    kept = {}
    # A loop, not a comprehension with the tests in one condition: it runs for every event,
    # and most values are short texts, the common case tested first.
    for key, value in event.raw.items():
        if value is None:
            continue
        if isinstance(value, str):
            if value in held:
                continue
        elif isinstance(value, _SEQUENCES) and tuple(value) == event.labels:
            continue
        kept[key] = value
    return kept or None


def fingerprint_of(
    source: str, resource_type: str, resource_id: str, event_type: str, event_id: str
) -> str:
    """The idempotency key of an event (DESIGN.md "Fingerprint"), of the fields as stored."""
    joined = "|".join((source, resource_type, resource_id, event_type, event_id))
    digest = _new_sha256()
    digest.update(storable(joined).encode("utf-8"))
    return digest.hexdigest()


def stable_event_id(*parts: object) -> str:
    """An event_id for upstream items that carry none: a short hash of fields that identify it."""
    joined = "\x1f".join("" if p is None else str(p) for p in parts)
    digest = _new_sha256()
    digest.update(storable(joined).encode("utf-8"))
    return digest.hexdigest()[:24]
