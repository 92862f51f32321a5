"""What every source is: ``poll(state, http) -> PollResult``, plus how a platform registers."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from mrt_engine.config import HostPolicy, StrictModel
from mrt_engine.events import TrackerEvent
from mrt_engine.http import MalformedResponse, PollSession, Validators
from mrt_engine.quarantine import Quarantined
from mrt_engine.secrets import Secret, SecretResolver
from mrt_engine.timeutil import Clock


@dataclass(frozen=True)
class SourceState:
    """What a poll resumes from: the cursor and the validators of the last answer.

    ``baseline_at``: when the source's baseline was taken (``None`` before it, or unknown);
    an event that happened before it is history, not news.

    Read-only, the cursor too: the same state is handed to every poll until a commit changes it
    (:mod:`mrt_engine.state_cache`); a poll returns its new cursor in its :class:`PollResult`.
    """

    cursor: dict[str, Any] | None = None
    validators: Validators = field(default_factory=Validators)
    validated_url: str | None = None
    baseline_done: bool = False
    baseline_at: datetime | None = None


@dataclass
class PollResult:
    """New events (already-seen ones are fine: the store dedupes) and the state to save.

    ``baseline`` marks a first poll whose events are recorded but never alerted, so a repo with
    a long history does not flood the channel. A first poll is the source's baseline, taken at
    the poll's time unless ``baseline_at`` says otherwise (a first run that reports a recent
    window: the window's start). ``quarantined`` are the items that could not be processed
    (:mod:`mrt_engine.quarantine`); they are committed with the events.
    """

    events: list[TrackerEvent]
    cursor: dict[str, Any] | None
    validators: Validators | None = None
    validated_url: str | None = None
    baseline: bool = False
    not_modified: bool = False
    baseline_at: datetime | None = None
    quarantined: list[Quarantined] = field(default_factory=list)


class Source(ABC):
    """One source key: one cursor, one schedule."""

    platform: str = ""
    accept = "application/json"
    extra_headers: Mapping[str, str] = {}
    token: Secret | None = None

    def headers(self, url: str) -> dict[str, str]:
        """API headers. The token goes only to the origin (scheme, host, port) of this source's
        API base: a URL that an answer points elsewhere (a Link to another port, plain http, or
        another host) never gets it. Redirects are httpx's: it drops Authorization when one
        leaves the origin, keeping it only for an http -> https upgrade of the same host."""
        headers = {"Accept": self.accept, **self.extra_headers}
        target = origin(url)
        if self.token is not None and target is not None and target == origin(self.api_base):
            headers["Authorization"] = f"Bearer {self.token.reveal()}"
        return headers

    def __init__(self, key: str, api_base: str, interval: float) -> None:
        self.key = key
        self.api_base = api_base.rstrip("/")
        self.interval = interval

    @abstractmethod
    def poll(self, state: SourceState, http: PollSession, now: Any) -> PollResult:
        """Fetch what changed since ``state``. Raises ``FetchError`` subclasses on failure."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key}>"


@dataclass
class BuildContext:
    """What a platform needs to turn its config section into sources."""

    default_interval: float
    secrets: SecretResolver
    clock: Clock
    environ: Mapping[str, str]


@dataclass(frozen=True)
class SourceKind:
    """A platform: its config section, how to build its sources, its default HTTP limits."""

    name: str
    settings: type[StrictModel]
    build: Callable[[Any, BuildContext], list[Source]]
    host_defaults: HostPolicy = field(default_factory=HostPolicy)


_DEFAULT_PORTS = {"http": 80, "https": 443}


@functools.lru_cache(maxsize=1024)  # every request of every poll asks it of the same few URLs
def origin(url: str) -> tuple[str, str, int | None] | None:
    """The origin of ``url`` (RFC 6454): scheme, host and port, lower-cased, the port defaulted
    from the scheme; ``None`` for a URL without one (unparsable, or no host)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS.get(scheme)


def appeared_at(stated: datetime | None, state: SourceState, now: datetime) -> datetime | None:
    """The time of something new to a listing that the baseline saw whole.

    Its stated time when that is not before the baseline. An earlier stated time means it was
    made before and shown later (a private model made public, an advisory imported late, a feed
    entry dated before it was posted): the poll that first lists it is the closest time known,
    so it is news, not history (see :func:`mrt_engine.batch.is_history`).
    """
    if stated is None or state.baseline_at is None or stated >= state.baseline_at:
        return stated
    return now


def expect(condition: bool, message: str) -> None:
    """Raise :class:`MalformedResponse` when an upstream answer lacks what its API documents."""
    if not condition:
        raise MalformedResponse(message)
