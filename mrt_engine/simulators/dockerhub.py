"""A Docker Hub simulator: ``GET /v2/repositories/NS/REPO/tags`` newest first, paged by ``next``."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from mrt_engine.simulators.base import Request, Response, Simulator


class DockerHubSimulator(Simulator):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.repos: dict[str, dict[str, dict[str, Any]]] = {}
        self.route("GET", r"/v2/repositories/(?P<ns>[^/]+)/(?P<repo>[^/]+)/tags/?", self._tags)

    def push(self, image: str, tag: str, *, content: str = "", at: datetime | None = None) -> str:
        """Push ``tag`` (again); the digest follows ``content``. Returns the digest."""
        when = (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        digest = "sha256:" + hashlib.sha256(f"{image}:{tag}:{content}".encode()).hexdigest()
        with self.lock:
            tags = self.repos.setdefault(image, {})
            tags.pop(tag, None)  # a push moves the tag to the front
            tags[tag] = {
                "name": tag,
                "digest": digest,
                "last_updated": when,
                "tag_last_pushed": when,
                "full_size": 9_876_543_210,
                "images": [
                    {
                        "architecture": "amd64",
                        "os": "linux",
                        "digest": digest,
                        "size": 9_876_543_210,
                    }
                ],
            }
        return digest

    def _tags(self, request: Request, match: re.Match[str]) -> Response:
        image = f"{match['ns']}/{match['repo']}"
        page = int(request.param("page", "1") or 1)
        size = int(request.param("page_size", "10") or 10)
        with self.lock:
            if image not in self.repos:
                return Response.json({"message": "object not found", "errinfo": {}}, 404)
            tags = list(reversed(self.repos[image].values()))
        chunk = tags[(page - 1) * size : page * size]
        more = page * size < len(tags)
        base = f"{self.url}/v2/repositories/{image}/tags?ordering=last_updated&page_size={size}"
        return Response.json(
            {
                "count": len(tags),
                "next": f"{base}&page={page + 1}" if more else None,
                "previous": f"{base}&page={page - 1}" if page > 1 else None,
                "results": chunk,
            }
        )
