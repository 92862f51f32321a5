"""GitHub releases and tags of a repository: ``release_published`` and ``tag_created``.

``GET /repos/O/R/releases`` and ``/repos/O/R/tags`` list newest first, paginated by the Link
header (followed verbatim), with ETags on the first page so an unchanged repository costs a
``304``. A release is announced once per tag (pre-releases and drafts flagged, the notes' first
lines as the summary); a tag once per name.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any

from mrt_engine.http import PollSession
from mrt_engine.quarantine import Quarantine, keyed_by
from mrt_engine.secrets import Secret
from mrt_engine.sources.base import SourceState, expect
from mrt_engine.sources.item_set import Item, ItemSet, ItemSetSource
from mrt_engine.text import body_text, line_excerpt
from mrt_engine.timeutil import parse_upstream

if TYPE_CHECKING:
    from mrt_engine.sources.github import GitHubSettings


def web_base(api_base: str) -> str:
    """The web address of a GitHub (or GitHub Enterprise: ``https://HOST/api/v3``) API base."""
    if api_base.rstrip("/") == "https://api.github.com":
        return "https://github.com"
    return api_base.rstrip("/").removesuffix("/api/v3")


GITHUB_ACCEPT = "application/vnd.github+json"
GITHUB_HEADERS = {"X-GitHub-Api-Version": "2022-11-28"}


class _GitHubRefs(ItemSetSource):
    platform = "github"
    accept = GITHUB_ACCEPT
    extra_headers = GITHUB_HEADERS
    what = ""

    def __init__(
        self, repo: str, settings: GitHubSettings, token: Secret | None, interval: float
    ) -> None:
        super().__init__(f"github:{repo}:{self.what}", settings.api_base, interval, repo)
        self.repo = repo
        self.settings = settings
        self.token = token

    def fetch(self, http: PollSession, state: SourceState, *, conditional: bool) -> ItemSet:
        url = f"{self.api_base}/repos/{self.repo}/{self.what}?per_page={self.settings.per_page}"
        validators = state.validators if conditional and state.validated_url == url else None
        first = http.get(url, headers=self.headers(url), validators=validators)
        if first.not_modified:
            return ItemSet(None)
        quarantine = Quarantine()
        items = self._page(first.json(), quarantine)
        pages, next_url = 1, first.next_url()
        while next_url and pages < self.settings.max_pages_per_poll:
            page = http.get(next_url, headers=self.headers(next_url))
            items.extend(self._page(page.json(), quarantine))
            pages, next_url = pages + 1, page.next_url()
        return ItemSet(items, first.validators, url, quarantine.items)

    def _page(self, data: Any, quarantine: Quarantine) -> list[Item]:
        expect(
            isinstance(data, list),
            f"expected a JSON list of {self.what}, got {type(data).__name__}",
        )
        return quarantine.each(
            data, self._checked_item, key=keyed_by("tag_name", "name"), what=self.what[:-1]
        )

    def _checked_item(self, entry: Any) -> Item:
        expect(isinstance(entry, dict), f"expected each of the {self.what} to be an object")
        return self.item(entry)

    @abstractmethod
    def item(self, entry: dict[str, Any]) -> Item:
        """One release or tag object as an item."""


class GitHubReleases(_GitHubRefs):
    resource_type = "repo_release"
    what = "releases"

    def item(self, entry: dict[str, Any]) -> Item:
        tag = entry.get("tag_name")
        expect(isinstance(tag, str) and tag != "", "release without a 'tag_name'")
        url = entry.get("html_url")
        expect(isinstance(url, str), f"release {tag!r} without an 'html_url'")
        flags = tuple(f for f in ("prerelease", "draft") if entry.get(f) is True)
        name = (
            entry.get("name") if isinstance(entry.get("name"), str) and entry.get("name") else tag
        )
        title = f"{self.repo} {name}" + (f" ({', '.join(flags)})" if flags else "")
        author = entry.get("author") if isinstance(entry.get("author"), dict) else {}
        body = body_text(entry.get("body") if isinstance(entry.get("body"), str) else "")
        return Item(
            key=tag,
            event_id=tag,
            event_type="release_published",
            title=title,
            url=url,
            occurred_at=parse_upstream(entry.get("published_at") or entry.get("created_at")),
            summary=line_excerpt(body, self.settings.body_excerpt_chars),
            body=body,
            labels=flags,
            author=str(author.get("login") or ""),
            raw={
                k: entry.get(k)
                # tag_name and html_url are the event's id and URL
                for k in ("id", "name", "draft", "prerelease", "published_at")
            },
        )


class GitHubTags(_GitHubRefs):
    resource_type = "repo_tag"
    what = "tags"

    def item(self, entry: dict[str, Any]) -> Item:
        name = entry.get("name")
        expect(isinstance(name, str) and name != "", "tag without a 'name'")
        commit = entry.get("commit") if isinstance(entry.get("commit"), dict) else {}
        sha = str(commit.get("sha") or "")
        return Item(
            key=name,
            event_id=name,
            event_type="tag_created",
            title=f"{self.repo} tag {name}",
            url=f"{web_base(self.api_base)}/{self.repo}/releases/tag/{name}",
            summary=f"commit {sha[:12]}" if sha else "",
            raw={"name": name, "sha": sha},
        )
