"""An RSS / Atom server: feeds whose entries the test controls, with ETag and Last-Modified."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from xml.sax.saxutils import escape

from mrt_engine.simulators.base import Request, Response, Simulator


class FeedSimulator(Simulator):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.feeds: dict[str, dict[str, Any]] = {}
        self.route("GET", r"/feeds/(?P<name>[^/]+)", self._feed)

    def feed(self, name: str, *, kind: str = "atom", title: str = "") -> str:
        with self.lock:
            self.feeds[name] = {
                "kind": kind,
                "title": title or name,
                "entries": [],
                "modified": datetime.now(UTC),
            }
        return f"{self.url}/feeds/{name}"

    def add_entry(
        self,
        name: str,
        title: str,
        *,
        entry_id: str | None = None,
        link: str | None = None,
        summary: str = "",
        content: str = "",
        at: datetime | None = None,
    ) -> None:
        """An entry; ``content`` is the full text (Atom ``content``, RSS ``content:encoded``)
        where ``summary`` is the short one."""
        with self.lock:
            feed = self.feeds[name]
            n = len(feed["entries"]) + 1
            when = at or datetime.now(UTC)
            feed["entries"].append(
                {
                    "id": entry_id,
                    "title": title,
                    "link": link or f"https://example.org/{name}/{n}",
                    "summary": summary,
                    "content": content,
                    "at": when,
                }
            )
            feed["modified"] = datetime.now(UTC).replace(microsecond=0)

    def _feed(self, request: Request, match: re.Match[str]) -> Response:
        with self.lock:
            feed = self.feeds.get(match["name"])
            if feed is None:
                return Response(404, b"not found", {"Content-Type": "text/plain"})
            body = (self._atom if feed["kind"] == "atom" else self._rss)(feed).encode()
            modified = format_datetime(feed["modified"], usegmt=True)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {"ETag": etag, "Last-Modified": modified}
        if request.headers.get("if-none-match") == etag or (
            "if-none-match" not in request.headers
            and request.headers.get("if-modified-since") == modified
        ):
            return Response(304, b"", headers)
        kind = "application/atom+xml" if feed["kind"] == "atom" else "application/rss+xml"
        return Response(200, body, {"Content-Type": f"{kind}; charset=utf-8", **headers})

    @staticmethod
    def _atom(feed: dict[str, Any]) -> str:
        entries = "".join(
            f"<entry><title>{escape(e['title'])}</title>"
            + (f"<id>{escape(e['id'])}</id>" if e["id"] else "")
            + f'<link href="{escape(e["link"])}"/>'
            f"<updated>{e['at'].strftime('%Y-%m-%dT%H:%M:%SZ')}</updated>"
            f'<summary type="html">{escape(e["summary"])}</summary>'
            + (f'<content type="html">{escape(e["content"])}</content>' if e["content"] else "")
            + "</entry>"
            for e in feed["entries"]
        )
        return (
            '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            f"<title>{escape(feed['title'])}</title><id>urn:feed:{escape(feed['title'])}</id>"
            f"<updated>{feed['modified'].strftime('%Y-%m-%dT%H:%M:%SZ')}</updated>{entries}</feed>"
        )

    @staticmethod
    def _rss(feed: dict[str, Any]) -> str:
        items = "".join(
            f"<item><title>{escape(e['title'])}</title><link>{escape(e['link'])}</link>"
            + (f'<guid isPermaLink="false">{escape(e["id"])}</guid>' if e["id"] else "")
            + f"<pubDate>{format_datetime(e['at'], usegmt=True)}</pubDate>"
            f"<description>{escape(e['summary'])}</description>"
            + (f"<content:encoded>{escape(e['content'])}</content:encoded>" if e["content"] else "")
            + "</item>"
            for e in feed["entries"]
        )
        return (
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"'
            ' xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>'
            f"<title>{escape(feed['title'])}</title><link>https://example.org</link>"
            f"<description>simulated</description>{items}</channel></rss>"
        )
