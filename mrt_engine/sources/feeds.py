"""RSS and Atom feeds (arXiv queries, blogs, PyPI's per-project RSS, GitHub's releases.atom).

Each feed is fetched with a conditional GET (ETag and Last-Modified through the shared HTTP
layer) and parsed by feedparser, which copes with the quirks of real feeds. Entries are not
assumed to be in date order: the set of entry ids is compared with the cursor's. An entry is
identified by its id (guid), else its link. With ``keywords``, only entries whose title or
text (summary and full content) holds one of them become events.
"""

from __future__ import annotations

import calendar
import html
import re
from datetime import UTC, datetime
from typing import Any

import feedparser
from pydantic import Field, field_validator

from mrt_engine.config import Duration, HostPolicy, StrictModel
from mrt_engine.http import PollSession
from mrt_engine.quarantine import Quarantine, keyed_by
from mrt_engine.secrets import shorten
from mrt_engine.sources.base import BuildContext, Source, SourceKind, SourceState, expect
from mrt_engine.sources.item_set import Item, ItemSet, ItemSetSource
from mrt_engine.sources.validators import ApiBase
from mrt_engine.text import BODY_MAX_CHARS, body_text, line_excerpt

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TAG = re.compile(r"<[^>]*>")
SUMMARY_CHARS = 280


class FeedConfig(StrictModel):
    """One entry of ``sources.feeds``."""

    name: str
    url: ApiBase
    keywords: list[str] = Field(default_factory=list)
    poll_interval_seconds: Duration | None = Field(None, ge=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"expected a short name of letters, digits, '.', '_' or '-', got {value!r}"
            )
        return value


def _text(value: Any) -> str:
    """Feed text is often HTML: its text, one line (bounded like any body rules read)."""
    return body_text(html.unescape(_TAG.sub(" ", str(value or "")[: BODY_MAX_CHARS * 4])))


def _body(entry: Any, summary: str) -> str:
    """The entry's whole text: its content (Atom ``content``, RSS ``content:encoded``), led by
    the summary where the content does not hold it already."""
    parts = [c.get("value") for c in entry.get("content") or [] if isinstance(c, dict)]
    content = _text(" ".join(str(p) for p in parts if p))
    if not content or content == summary:
        return summary
    if summary and summary not in content:
        return body_text(f"{summary} {content}")
    return content


def _when(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(key)
        if parsed:
            return datetime.fromtimestamp(calendar.timegm(parsed), UTC)
    return None


class Feed(ItemSetSource):
    platform = "feeds"
    resource_type = "feed"

    def __init__(self, feed: FeedConfig, interval: float) -> None:
        super().__init__(f"feed:{feed.name}", feed.url, interval, feed.name)
        self.url = feed.url
        self.words = tuple(w.casefold() for w in feed.keywords if w.strip())

    def fetch(self, http: PollSession, state: SourceState, *, conditional: bool) -> ItemSet:
        validators = state.validators if conditional and state.validated_url == self.url else None
        answer = http.get(
            self.url,
            headers={
                "Accept": "application/atom+xml, application/rss+xml, application/xml;q=0.9, */*;q=0.1"
            },
            validators=validators,
        )
        if answer.not_modified:
            return ItemSet(None)
        parsed = feedparser.parse(answer.content)
        kind = answer.headers.get("content-type", "no content-type").split(";")[0]
        expect(
            bool(parsed.get("version")) or bool(parsed.entries),
            f"expected an RSS or Atom feed from {self.url}, got {kind} "
            f"({shorten(answer.content[:120].decode('utf-8', 'replace'), 60)!r})",
        )
        quarantine = Quarantine()
        found = quarantine.each(
            parsed.entries,
            lambda entry: self._entry(entry, parsed.feed.get("title", "")),
            key=keyed_by("id", "link"),
            what="entry",
        )
        items = [item for item in found if item is not None]
        return ItemSet(items, answer.validators, self.url, quarantine.items)

    def _entry(self, entry: Any, feed_title: str) -> Item | None:
        """One entry as an item; ``None`` when it is not wanted (no id, no keyword)."""
        identity = entry.get("id") or entry.get("link")
        if not isinstance(identity, str) or not identity:
            return None  # nothing to recognise it by next time
        title = _text(entry.get("title")) or "(untitled)"
        summary = _text(entry.get("summary"))
        body = _body(entry, summary)
        if self.words and not any(w in f"{title}\n{body}".casefold() for w in self.words):
            return None
        authors = entry.get("author") or ""
        tags = tuple(
            _text(t.get("term"))
            for t in entry.get("tags") or []
            if isinstance(t, dict) and t.get("term")
        )
        link = entry.get("link") if isinstance(entry.get("link"), str) else ""
        return Item(
            key=identity,
            event_id=identity,
            event_type="feed_entry",
            title=title,
            url=link,
            occurred_at=_when(entry),
            summary=line_excerpt(summary, SUMMARY_CHARS),
            body=body,
            labels=tags[:20],
            author=_text(authors),
            raw={"id": identity, "link": link, "feed": feed_title},
        )


def build(settings: list[FeedConfig], ctx: BuildContext) -> list[Source]:
    return [Feed(feed, feed.poll_interval_seconds or ctx.default_interval) for feed in settings]


KIND = SourceKind(
    name="feeds",
    settings=list[FeedConfig],  # type: ignore[arg-type]  # the section is a list of feeds
    build=build,
    host_defaults=HostPolicy(max_concurrency=2, min_interval_seconds=0.5, timeout_seconds=20),
)
