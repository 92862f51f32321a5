"""What every source is: ``poll(state, http) -> PollResult``, plus how a platform registers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
    """What a poll resumes from: the cursor and the validators of the last answer."""

    cursor: dict[str, Any] | None = None
    validators: Validators = field(default_factory=Validators)
    validated_url: str | None = None
    baseline_done: bool = False


@dataclass
class PollResult:
    """New events (already-seen ones are fine: the store dedupes) and the state to save.

    ``baseline`` marks a first poll whose events are recorded but never alerted, so a repo with
    a long history does not flood the channel. ``quarantined`` are the items that could not be
    processed (:mod:`mrt_engine.quarantine`); they are committed with the events.
    """

    events: list[TrackerEvent]
    cursor: dict[str, Any] | None
    validators: Validators | None = None
    validated_url: str | None = None
    baseline: bool = False
    not_modified: bool = False
    quarantined: list[Quarantined] = field(default_factory=list)


class Source(ABC):
    """One source key: one cursor, one schedule."""

    platform: str = ""
    accept = "application/json"
    extra_headers: Mapping[str, str] = {}
    token: Secret | None = None

    def headers(self, url: str) -> dict[str, str]:
        """API headers. The token goes only to this source's own API host: a URL that an answer
        points somewhere else (a Link, a redirect target) never gets it."""
        headers = {"Accept": self.accept, **self.extra_headers}
        if self.token is not None and (urlsplit(url).hostname or "").lower() == self.host:
            headers["Authorization"] = f"Bearer {self.token.reveal()}"
        return headers

    def __init__(self, key: str, api_base: str, interval: float) -> None:
        self.key = key
        self.api_base = api_base.rstrip("/")
        self.interval = interval

    @property
    def host(self) -> str:
        return (urlsplit(self.api_base).hostname or "").lower()

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


def expect(condition: bool, message: str) -> None:
    """Raise :class:`MalformedResponse` when an upstream answer lacks what its API documents."""
    if not condition:
        raise MalformedResponse(message)
