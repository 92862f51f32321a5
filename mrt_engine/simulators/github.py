"""A GitHub REST API simulator: issues and pull requests as the docs describe them.

* ``GET /repos/{owner}/{repo}/issues`` with ``state``, ``sort`` (created|updated), ``direction``,
  ``since`` (updated at or after, second resolution), ``per_page`` (<= 100), ``page``;
  pull requests appear in it with a ``pull_request`` object carrying ``merged_at``.
* ``Link`` pagination whose URLs point at ``/repositories/{id}/issues?...&page=N``, as GitHub's do.
* Weak ETags; ``If-None-Match`` answers ``304`` and does not count against the rate limit.
* ``x-ratelimit-*`` headers on every answer; when the budget is spent, ``403`` with
  ``x-ratelimit-remaining: 0`` until the reset time.
* With a ``token`` set, requests without ``Authorization: Bearer <token>`` get ``401``.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from mrt_engine.simulators.base import Request, Response, Simulator


def gh_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@dataclass
class Repo:
    id: int
    full_name: str
    issues: list[dict[str, Any]] = field(default_factory=list)
    releases: list[dict[str, Any]] = field(default_factory=list)
    tags: list[dict[str, Any]] = field(default_factory=list)


class GitHubSimulator(Simulator):
    """An in-memory GitHub with a clock the tests control (``now``)."""

    def __init__(self, *, token: str | None = None, rate_limit: int = 5000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.token = token
        self.repos: dict[str, Repo] = {}
        self._next_repo_id = 1000
        self.rate_limit = rate_limit
        self.remaining = rate_limit
        self.reset_at = int(time.time()) + 3600
        self.now: datetime | None = None  # None: the real clock
        self.route("GET", r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/issues", self._issues_by_name)
        self.route("GET", r"/repositories/(?P<id>\d+)/issues", self._issues_by_id)
        self.route("GET", r"/repositories/(?P<id>\d+)/(?P<what>releases|tags)", self._refs_by_id)
        self.route(
            "GET", r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/pulls/(?P<number>\d+)", self._pull
        )
        self.route("GET", r"/rate_limit", self._rate)
        self.route(
            "GET", r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/(?P<what>releases|tags)", self._refs
        )

    # ------------------------------------------------------------------ data
    def clock(self) -> datetime:
        return self.now or datetime.now(UTC)

    def repo(self, full_name: str) -> Repo:
        with self.lock:
            if full_name not in self.repos:
                self.repos[full_name] = Repo(self._next_repo_id, full_name)
                self._next_repo_id += 1
            return self.repos[full_name]

    def add_issue(
        self,
        full_name: str,
        title: str,
        *,
        body: str | None = "",
        labels: tuple[str, ...] = (),
        user: str = "octocat",
        pull: bool = False,
        at: datetime | None = None,
        state: str = "open",
        legacy_pull: bool = False,
    ) -> dict[str, Any]:
        """A new issue (or pull request) created and updated at ``at``."""
        with self.lock:
            repo = self.repo(full_name)
            number = len(repo.issues) + 1
            when = gh_time(at or self.clock())
            kind = "pull" if pull else "issues"
            item: dict[str, Any] = {
                "url": f"{self.url}/repos/{full_name}/issues/{number}",
                "html_url": f"https://github.com/{full_name}/{kind}/{number}",
                "id": repo.id * 100000 + number,
                "node_id": f"I_{repo.id}_{number}",
                "number": number,
                "title": title,
                "user": {"login": user, "id": abs(hash(user)) % 10**7, "type": "User"},
                "labels": [
                    {"id": i, "name": name, "color": "ededed"} for i, name in enumerate(labels)
                ],
                "state": state,
                "locked": False,
                "comments": 0,
                "created_at": when,
                "updated_at": when,
                "closed_at": when if state == "closed" else None,
                "author_association": "CONTRIBUTOR",
                "body": body,
                "state_reason": None,
            }
            if pull:
                item["draft"] = False
                item["pull_request"] = {
                    "url": f"{self.url}/repos/{full_name}/pulls/{number}",
                    "html_url": item["html_url"],
                    "diff_url": item["html_url"] + ".diff",
                    "patch_url": item["html_url"] + ".patch",
                }
                if not legacy_pull:  # older GitHub Enterprise servers omit merged_at here
                    item["pull_request"]["merged_at"] = None
                item["_merged_at"] = None
            repo.issues.append(item)
            return item

    def add_release(
        self,
        full_name: str,
        tag: str,
        *,
        name: str | None = None,
        body: str = "",
        prerelease: bool = False,
        draft: bool = False,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """A published release (newest first in listings), and its tag."""
        with self.lock:
            repo = self.repo(full_name)
            when = gh_time(at or self.clock())
            release = {
                "id": repo.id * 1000 + len(repo.releases) + 1,
                "tag_name": tag,
                "name": name if name is not None else tag,
                "body": body,
                "draft": draft,
                "prerelease": prerelease,
                "created_at": when,
                "published_at": None if draft else when,
                "html_url": f"https://github.com/{full_name}/releases/tag/{tag}",
                "author": {"login": "release-bot"},
                "assets": [],
            }
            repo.releases.insert(0, release)
        self.add_tag(full_name, tag)
        return release

    def add_tag(self, full_name: str, tag: str, sha: str | None = None) -> None:
        with self.lock:
            repo = self.repo(full_name)
            sha = sha or hashlib.sha1(f"{full_name}{tag}".encode()).hexdigest()
            repo.tags = [t for t in repo.tags if t["name"] != tag]
            repo.tags.insert(
                0,
                {
                    "name": tag,
                    "commit": {"sha": sha, "url": f"{self.url}/repos/{full_name}/commits/{sha}"},
                    "zipball_url": f"{self.url}/repos/{full_name}/zipball/refs/tags/{tag}",
                    "node_id": f"REF_{tag}",
                },
            )

    def update(
        self, full_name: str, number: int, *, at: datetime | None = None, **changes: Any
    ) -> dict[str, Any]:
        """Change fields of an issue and bump its ``updated_at``."""
        with self.lock:
            item = self.repo(full_name).issues[number - 1]
            item.update(changes)
            item["updated_at"] = gh_time(at or self.clock())
            return item

    def close(
        self, full_name: str, number: int, *, merged: bool = False, at: datetime | None = None
    ) -> dict[str, Any]:
        with self.lock:
            when = gh_time(at or self.clock())
            item = self.repo(full_name).issues[number - 1]
            item.update(state="closed", closed_at=when, updated_at=when, state_reason="completed")
            if merged and "pull_request" in item:
                item["_merged_at"] = when
                if "merged_at" in item["pull_request"]:
                    item["pull_request"]["merged_at"] = when
            return item

    # ------------------------------------------------------------------ API
    def _authorized(self, request: Request) -> bool:
        if self.token is None:
            return True
        header = request.headers.get("authorization", "")
        return header in (f"Bearer {self.token}", f"token {self.token}")

    def decorate(self, request: Request, response: Response, *, fault: bool) -> Response:
        if fault and any(k.lower().startswith("x-ratelimit") for k in response.headers):
            return response
        response.headers.setdefault("x-ratelimit-limit", str(self.rate_limit))
        response.headers.setdefault("x-ratelimit-remaining", str(max(self.remaining, 0)))
        response.headers.setdefault("x-ratelimit-reset", str(self.reset_at))
        response.headers.setdefault(
            "x-ratelimit-used", str(self.rate_limit - max(self.remaining, 0))
        )
        response.headers.setdefault("x-ratelimit-resource", "core")
        return response

    def _guard(self, request: Request) -> Response | None:
        if not self._authorized(request):
            return Response.json(
                {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"},
                401,
            )
        with self.lock:
            if time.time() >= self.reset_at:
                self.remaining = self.rate_limit
                self.reset_at = int(time.time()) + 3600
            if self.remaining <= 0:
                return Response.json(
                    {
                        "message": "API rate limit exceeded for 127.0.0.1.",
                        "documentation_url": "https://docs.github.com/rest/rate-limit",
                    },
                    403,
                )
        return None

    def _charge(self) -> None:
        with self.lock:
            self.remaining -= 1

    def _conditional(self, request: Request, payload: Any, headers: dict[str, str]) -> Response:
        response = self.conditional(request, payload, headers)
        if response.status == 200:
            self._charge()  # a 304 costs no rate limit, as on GitHub
        return response

    def _issues_by_name(self, request: Request, match: re.Match[str]) -> Response:
        name = f"{match['owner']}/{match['repo']}"
        if name not in self.repos:
            return Response.json({"message": "Not Found"}, 404)
        return self._list(request, self.repos[name])

    def _issues_by_id(self, request: Request, match: re.Match[str]) -> Response:
        repo = next((r for r in self.repos.values() if r.id == int(match["id"])), None)
        if repo is None:
            return Response.json({"message": "Not Found"}, 404)
        return self._list(request, repo)

    def _list(self, request: Request, repo: Repo) -> Response:
        denied = self._guard(request)
        if denied:
            return denied
        state = request.param("state", "open")
        sort = request.param("sort", "created")
        direction = request.param("direction", "desc")
        since = request.param("since")
        try:
            per_page = min(int(request.param("per_page", "30") or 30), 100)
            page = max(int(request.param("page", "1") or 1), 1)
            since_at = _parse(since) if since else None
        except ValueError:
            return Response.json({"message": "Validation Failed"}, 422)
        with self.lock:
            items = [dict(i) for i in repo.issues]
        if state != "all":
            items = [i for i in items if i["state"] == state]
        if since_at is not None:
            items = [i for i in items if _parse(i["updated_at"]) >= since_at]
        key = "updated_at" if sort == "updated" else "created_at"
        items.sort(key=lambda i: (i[key], i["number"]), reverse=direction == "desc")
        total_pages = max((len(items) + per_page - 1) // per_page, 1)
        chunk = items[(page - 1) * per_page : page * per_page]
        for item in chunk:
            item.pop("_merged_at", None)
        return self._conditional(request, chunk, self._links(request, repo, page, total_pages))

    def _links(self, request: Request, repo: Repo, page: int, last: int) -> dict[str, str]:
        query = {k: v[0] for k, v in request.query.items() if k != "page"}

        def link(n: int, rel: str) -> str:
            return f'<{self.url}/repositories/{repo.id}/issues?{urlencode({**query, "page": n})}>; rel="{rel}"'

        parts = []
        if page < last:
            parts += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            parts += [link(1, "first"), link(page - 1, "prev")]
        return {"Link": ", ".join(parts)} if parts else {}

    def _refs_by_id(self, request: Request, match: re.Match[str]) -> Response:
        repo = next((r for r in self.repos.values() if r.id == int(match["id"])), None)
        if repo is None:
            return Response.json({"message": "Not Found"}, 404)
        owner, name = repo.full_name.split("/")
        return self._refs(
            request,
            re.match(r"(?P<owner>.+)/(?P<repo>.+)/(?P<what>.+)", f"{owner}/{name}/{match['what']}"),
        )

    def _refs(self, request: Request, match: re.Match[str]) -> Response:
        """``/repos/O/R/releases`` and ``/repos/O/R/tags``: newest first, Link-paginated."""
        denied = self._guard(request)
        if denied:
            return denied
        full_name = f"{match['owner']}/{match['repo']}"
        repo = self.repos.get(full_name)
        if repo is None:
            return Response.json({"message": "Not Found"}, 404)
        per_page = min(int(request.param("per_page", "30") or 30), 100)
        page = max(int(request.param("page", "1") or 1), 1)
        with self.lock:
            items = [dict(i) for i in (repo.releases if match["what"] == "releases" else repo.tags)]
        last = max((len(items) + per_page - 1) // per_page, 1)
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {}
        if page < last:
            query = urlencode({"per_page": per_page, "page": page + 1})
            headers["Link"] = (
                f'<{self.url}/repositories/{repo.id}/{match["what"]}?{query}>; rel="next"'
            )
        return self._conditional(request, chunk, headers)

    def _pull(self, request: Request, match: re.Match[str]) -> Response:
        denied = self._guard(request)
        if denied:
            return denied
        repo = self.repos.get(f"{match['owner']}/{match['repo']}")
        number = int(match["number"])
        if (
            repo is None
            or number > len(repo.issues)
            or "pull_request" not in repo.issues[number - 1]
        ):
            return Response.json({"message": "Not Found"}, 404)
        item = repo.issues[number - 1]
        self._charge()
        merged_at = item.get("_merged_at")
        return Response.json(
            {
                "number": number,
                "state": item["state"],
                "title": item["title"],
                "merged": merged_at is not None,
                "merged_at": merged_at,
                "html_url": item["html_url"],
            }
        )

    def _rate(self, request: Request, match: re.Match[str]) -> Response:
        return Response.json(
            {
                "resources": {
                    "core": {
                        "limit": self.rate_limit,
                        "remaining": self.remaining,
                        "reset": self.reset_at,
                    }
                }
            }
        )
