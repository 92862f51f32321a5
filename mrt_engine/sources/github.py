"""GitHub issues and pull requests of a repository, through the REST API.

One source key per repository and kind (``github:vllm-project/vllm:issues`` and ``...:pulls``).
Both read ``GET /repos/{owner}/{repo}/issues?state=all&sort=updated&direction=asc&since=T``,
which lists issues and pull requests (a pull request carries ``pull_request.merged_at``).

The cursor is the newest ``updated_at`` seen. ``since`` is inclusive and GitHub timestamps have
one-second resolution, so the next poll asks again from that same second: an item updated in the
same second as the last one is never skipped, and the ones seen twice are dropped by fingerprint.
An unchanged repository therefore answers the same first page again, which the ETag turns into
one ``304`` that costs no rate limit. Pages are followed through the ``Link`` header verbatim.

The first poll records the newest page as a baseline and alerts nothing (or, with
``first_run = "24h"``, alerts on what changed in that window). An older item that is touched
later comes back through ``since``; its events (opened, closed, merged, each at its own time)
that happened before the baseline are history, not news (see :func:`mrt_engine.batch.is_history`).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import msgspec
from pydantic import AfterValidator, Field, field_validator
from pydantic_core import PydanticCustomError

from mrt_engine.config import Duration, HostPolicy, StrictModel
from mrt_engine.events import TrackerEvent
from mrt_engine.http import PollSession, Stopped
from mrt_engine.quarantine import Quarantine, keyed_by
from mrt_engine.secrets import Secret, shorten
from mrt_engine.sources.base import (
    BuildContext,
    PollResult,
    Source,
    SourceKind,
    SourceState,
    expect,
)
from mrt_engine.sources.github_refs import (
    GITHUB_ACCEPT,
    GITHUB_HEADERS,
    GitHubReleases,
    GitHubTags,
)
from mrt_engine.sources.validators import ApiBase
from mrt_engine.text import body_text, line_excerpt
from mrt_engine.timeutil import github_time, parse_upstream, parse_when
from mrt_engine.untrusted_json import Shape

DEFAULT_API = "https://api.github.com"
_REPO = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
EMPTY_REPO_MARGIN = timedelta(minutes=10)
ISSUE_KEY = keyed_by("number")  # the upstream id a quarantined issue is known by
_REQUIRED = (("number", int), ("title", str), ("html_url", str), ("state", str))

# Any JSON value but an object, in a msgspec union with a Struct that reads objects.
_NOT_OBJECT = None | bool | int | float | str | list[Any]


class _User(msgspec.Struct):
    login: Any = None


class _Label(msgspec.Struct):
    name: Any = None


class Issue(msgspec.Struct):
    """The fields of an issue object (``GET /repos/{owner}/{repo}/issues``) that the source
    reads; each holds whatever JSON came (``None`` when absent), checked by the source."""

    number: Any = None
    title: Any = None
    html_url: Any = None
    state: Any = None
    user: _User | _NOT_OBJECT = None
    labels: list[_Label | _NOT_OBJECT] | bool | int | float | str | dict[str, Any] | None = None
    body: Any = None
    created_at: Any = None
    updated_at: Any = None
    closed_at: Any = None
    pull_request: Any = None
    state_reason: Any = None
    draft: Any = None


# A page of issues as the source reads it: a list of issue objects (anything else in it is one
# bad item), or anything else (an error object, say), which fails the page as before.
ISSUES_PAGE = Shape(
    list[Issue | _NOT_OBJECT] | dict[str, Any] | None | bool | int | float | str,
    Issue,
    _User,
    _Label,
)


class GitHubMonitor(StrictModel):
    issues: bool = True
    pulls: bool = True
    releases: bool = False
    tags: bool = False


def _owner_slash_repo(repo: str) -> str:
    if not _REPO.match(repo):
        raise PydanticCustomError(
            "repo_format", 'expected "owner/repo", got {value}', {"value": f'"{repo}"'}
        )
    return repo


RepoName = Annotated[str, AfterValidator(_owner_slash_repo)]


class GitHubSettings(StrictModel):
    """``sources.github``."""

    repos: list[RepoName]
    monitor: GitHubMonitor = Field(default_factory=GitHubMonitor)
    token_env: str | None = None
    api_base: ApiBase = DEFAULT_API
    poll_interval_seconds: Duration | None = Field(None, ge=1)
    first_run: str = "baseline"
    per_page: int = Field(100, ge=1, le=100)
    max_pages_per_poll: int = Field(10, ge=1, le=1000)
    body_excerpt_chars: int = Field(280, ge=0, le=4000)

    @field_validator("first_run")
    @classmethod
    def _baseline_or_time(cls, value: str) -> str:
        if value != "baseline":
            try:
                parse_when(value)
            except ValueError:
                raise PydanticCustomError(
                    "first_run",
                    'expected "baseline", an age like "24h" or a time like "2026-11-01", '
                    "got {value}",
                    {"value": f'"{value}"'},
                ) from None
        return value


# Items by this key: the issues endpoint lists both; each key keeps its own kind.
Kind = Literal["issues", "pulls"]


class GitHubIssues(Source):
    """Issues or pull requests of one repository."""

    platform = "github"
    accept = GITHUB_ACCEPT
    extra_headers = GITHUB_HEADERS

    def __init__(
        self,
        repo: str,
        kind: Kind,
        settings: GitHubSettings,
        token: Secret | None,
        interval: float,
    ) -> None:
        super().__init__(f"github:{repo}:{kind}", settings.api_base, interval)
        self.repo = repo
        self.kind = kind
        self.settings = settings
        self.token = token
        self._since_url: tuple[datetime, str] | None = None  # the last listing since a time

    # ------------------------------------------------------------------ HTTP
    def _list_url(self, **params: Any) -> str:
        query = {"state": "all", "per_page": self.settings.per_page, **params}
        return f"{self.api_base}/repos/{self.repo}/issues?{urlencode(query)}"

    def _changed_since_url(self, since: datetime) -> str:
        """The listing of what changed since ``since``: the same URL poll after poll until the
        cursor moves, so it is built once for each cursor."""
        last = self._since_url
        if last is None or last[0] != since:
            url = self._list_url(sort="updated", direction="asc", since=github_time(since))
            last = self._since_url = (since, url)
        return last[1]

    # ------------------------------------------------------------------ poll
    def poll(self, state: SourceState, http: PollSession, now: datetime) -> PollResult:
        since: datetime | None = None
        window: datetime | None = None  # a first run over a recent window: its start
        if state.baseline_done and state.cursor:
            since = parse_upstream(state.cursor.get("since"))
        if since is None:
            if self.settings.first_run == "baseline":
                return self._baseline(http, now)
            since = window = parse_when(self.settings.first_run, now)
        url = self._changed_since_url(since)
        validators = state.validators if state.validated_url == url else None
        first = http.get(url, headers=self.headers(url), validators=validators)
        if first.not_modified:
            return PollResult(
                [], state.cursor, state.validators, state.validated_url, not_modified=True
            )
        items = self._page_items(first)
        pages, next_url = 1, first.next_url()
        while next_url and pages < self.settings.max_pages_per_poll:
            if http.stopping:
                raise Stopped("engine stopping")
            page = http.get(next_url, headers=self.headers(next_url))
            items.extend(self._page_items(page))
            pages += 1
            next_url = page.next_url()
        quarantine = Quarantine()
        newest = since
        events: list[TrackerEvent] = []
        for updated, found in quarantine.each(
            items, lambda item: self._normalise(item, now, http), key=ISSUE_KEY, what="issue"
        ):
            newest = max(newest, updated)
            events.extend(found)
        return PollResult(
            events,
            {"since": github_time(newest)},
            first.validators,
            url,
            baseline_at=window,
            quarantined=quarantine.items,
        )

    def _baseline(self, http: PollSession, now: datetime) -> PollResult:
        """The newest page only: recorded as seen, never alerted."""
        url = self._list_url(sort="updated", direction="desc")
        fetched = http.get(url, headers=self.headers(url))
        items = self._page_items(fetched)
        quarantine = Quarantine()
        events: list[TrackerEvent] = []
        newest: datetime | None = None
        for updated, found in quarantine.each(
            items, lambda item: self._normalise(item, now, http), key=ISSUE_KEY, what="issue"
        ):
            newest = updated if newest is None else max(newest, updated)
            events.extend(found)
        if newest is None:
            newest = now - EMPTY_REPO_MARGIN
        return PollResult(
            events,
            {"since": github_time(newest)},
            None,
            None,
            baseline=True,
            quarantined=quarantine.items,
        )

    def _page_items(self, fetched: Any) -> list[Any]:
        """The items of one page; each is checked on its own (:meth:`_normalise`)."""
        data = fetched.json(ISSUES_PAGE)
        if isinstance(data, dict) and "message" in data:
            expect(
                False,
                f"GitHub answered an error object instead of a list: {shorten(data['message'], 160)}",
            )
        expect(isinstance(data, list), f"expected a JSON list of issues, got {type(data).__name__}")
        return data

    def _normalise(
        self, item: Any, now: datetime, http: PollSession
    ) -> tuple[datetime, list[TrackerEvent]]:
        """One issue object, checked: its ``updated_at`` (for the cursor) and its events."""
        expect(isinstance(item, Issue), "expected each issue to be an object")
        for key, kind in _REQUIRED:
            value = getattr(item, key)
            if not isinstance(value, kind):  # the message only then: this runs for every item
                expect(False, f"issue object without a valid {key!r} (got {type(value).__name__})")
        updated = _time(item, "updated_at")
        created = _time(item, "created_at")
        return updated, self.item_events(item, now, http, created=created)

    # ------------------------------------------------------------------ normalise
    def item_events(
        self,
        item: Issue | dict[str, Any],
        now: datetime,
        http: PollSession | None = None,
        *,
        created: datetime | None = None,
    ) -> list[TrackerEvent]:
        """The events one issue/PR object stands for, for this source's kind (``created``: its
        ``created_at`` when the caller parsed it already). ``item``: as a page is read
        (:data:`ISSUES_PAGE`), or as ``json.loads`` reads it."""
        if isinstance(item, dict):
            item = ISSUES_PAGE.convert([item])[0]
        pull = item.pull_request
        is_pr = isinstance(pull, dict)
        if is_pr != (self.kind == "pulls"):
            return []
        if created is None:
            created = _time(item, "created_at")
        number = item.number
        labels = _labels(item)
        user = item.user
        login = user.login if isinstance(user, _User) else None
        body = item.body
        body = body_text(body if isinstance(body, str) else "")
        closed_at = parse_upstream(item.closed_at)
        common: dict[str, Any] = {
            "source": "github",
            "source_key": self.key,
            "resource_id": self.repo,
            "title": item.title,
            "summary": line_excerpt(body, self.settings.body_excerpt_chars),
            "body": body,
            "url": item.html_url,
            "author": str(login or ""),
            "labels": labels,
            "observed_at": now,
            "raw": _compact(item),
        }
        events: list[TrackerEvent] = []
        if is_pr:
            common["resource_type"] = "repo_pr"
            events.append(
                TrackerEvent(
                    event_type="pr_opened", event_id=str(number), occurred_at=created, **common
                )
            )
            if item.state == "closed":
                merged_at = self._merged_at(pull, http)
                if merged_at is not None:
                    events.append(
                        TrackerEvent(
                            event_type="pr_merged",
                            event_id=str(number),
                            occurred_at=merged_at,
                            **common,
                        )
                    )
                else:
                    events.append(
                        TrackerEvent(
                            event_type="pr_closed",
                            event_id=f"{number}@{github_time(closed_at or now)}",
                            occurred_at=closed_at,
                            **common,
                        )
                    )
        else:
            common["resource_type"] = "repo_issue"
            events.append(
                TrackerEvent(
                    event_type="issue_opened", event_id=str(number), occurred_at=created, **common
                )
            )
            if item.state == "closed":
                events.append(
                    TrackerEvent(
                        event_type="issue_closed",
                        event_id=f"{number}@{github_time(closed_at or now)}",
                        occurred_at=closed_at,
                        **common,
                    )
                )
        return events

    def _merged_at(self, pull: dict[str, Any], http: PollSession | None) -> datetime | None:
        """``pull_request.merged_at``; older GitHub Enterprise servers omit it, so ask the PR."""
        if "merged_at" in pull:
            return parse_upstream(pull.get("merged_at"))
        url = pull.get("url")
        if http is None or not isinstance(url, str):
            return None
        detail = http.get(url, headers=self.headers(url)).json()
        expect(isinstance(detail, dict), "expected a pull request object")
        return parse_upstream(detail.get("merged_at"))


def _time(item: Issue, key: str) -> datetime:
    value = parse_upstream(getattr(item, key))
    if value is None:
        expect(False, f"issue object without a valid {key!r} timestamp")
    assert value is not None
    return value


def _labels(item: Issue) -> tuple[str, ...]:
    """The label names: GitHub sends a list of label objects (or, from some tools, names);
    anything else (a bare string would iterate into letters) is no label."""
    found = item.labels
    if not isinstance(found, list):
        return ()
    names = []
    for label in found:  # a loop, not a generator: it runs for every item
        if isinstance(label, _Label):
            name = label.name
            if isinstance(name, str):
                names.append(name)
        elif isinstance(label, str):
            names.append(label)
    return tuple(names)


def _compact(item: Issue) -> dict[str, Any]:
    """What trace needs beyond the event's columns (title, URL, author, labels, body): the
    issue's state and the times that decided its events and the cursor. No avatars, API URLs
    or counters that change without an event."""
    pull = item.pull_request if isinstance(item.pull_request, dict) else None
    return {
        "number": item.number,
        "state": item.state,
        "state_reason": item.state_reason,
        "draft": item.draft,
        "updated_at": item.updated_at,
        "closed_at": item.closed_at,
        "merged_at": pull.get("merged_at") if pull else None,
    }


def build(settings: GitHubSettings, ctx: BuildContext) -> list[Source]:
    token = ctx.secrets.get(
        settings.token_env,
        where="sources.github.token_env",
        what="GitHub token; anonymous access gets 60 requests an hour",
        required=False,
    )
    interval = settings.poll_interval_seconds or ctx.default_interval
    out: list[Source] = []
    for repo in settings.repos:
        if settings.monitor.issues:
            out.append(GitHubIssues(repo, "issues", settings, token, interval))
        if settings.monitor.pulls:
            out.append(GitHubIssues(repo, "pulls", settings, token, interval))
        if settings.monitor.releases:
            out.append(GitHubReleases(repo, settings, token, interval))
        if settings.monitor.tags:
            out.append(GitHubTags(repo, settings, token, interval))
    return out


KIND = SourceKind(
    name="github",
    settings=GitHubSettings,
    build=build,
    host_defaults=HostPolicy(max_concurrency=4, min_interval_seconds=0.0, timeout_seconds=20),
)
