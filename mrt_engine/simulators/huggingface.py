"""A HuggingFace Hub simulator: ``GET /api/models`` with ``author``, ``sort``, ``direction``,
``limit``, ``expand``, cursor pagination through ``Link: rel="next"``, weak ETags (304), private
models visible only with the token, and 429 with ``RateLimit: "api";r=0;t=N`` on demand."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from mrt_engine.simulators.base import Request, Response, Simulator


def hf_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class HuggingFaceSimulator(Simulator):
    def __init__(self, *, token: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.token = token
        self.models: dict[str, dict[str, Any]] = {}
        self.route("GET", r"/api/models", self._list)

    def now(self) -> datetime:
        return datetime.now(UTC)

    def put_model(
        self,
        model_id: str,
        *,
        sha: str | None = None,
        pipeline_tag: str = "text-generation",
        library_name: str = "transformers",
        tags: tuple[str, ...] = ("transformers", "safetensors"),
        private: bool = False,
        gated: bool = False,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """Create a model, or push a commit to it (a new sha and lastModified)."""
        when = hf_time(at or self.now())
        with self.lock:
            model = self.models.get(model_id)
            if model is None:
                model = self.models[model_id] = {
                    "_id": hashlib.md5(model_id.encode()).hexdigest()[:24],
                    "id": model_id,
                    "createdAt": when,
                    "downloads": 0,
                    "likes": 0,
                }
            model.update(
                sha=sha or hashlib.sha1(f"{model_id}{when}{len(self.models)}".encode()).hexdigest(),
                lastModified=when,
                pipeline_tag=pipeline_tag,
                library_name=library_name,
                tags=list(tags),
                private=private,
                gated=gated,
            )
            return model

    def remove_model(self, model_id: str) -> None:
        with self.lock:
            self.models.pop(model_id, None)

    def _list(self, request: Request, match: re.Match[str]) -> Response:
        authorized = (
            self.token is not None
            and request.headers.get("authorization") == f"Bearer {self.token}"
        )
        if request.headers.get("authorization") and not authorized:
            return Response.json({"error": "Invalid credentials in Authorization header"}, 401)
        author = request.param("author")
        limit = min(int(request.param("limit", "1000") or 1000), 1000)
        expand = request.query.get("expand", []) + request.query.get("expand[]", [])
        with self.lock:
            models = [dict(m) for m in self.models.values()]
        models = [m for m in models if (author is None or m["id"].split("/")[0] == author)]
        models = [m for m in models if authorized or not m["private"]]
        if request.param("sort") == "lastModified":
            models.sort(
                key=lambda m: (m["lastModified"], m["id"]),
                reverse=request.param("direction") == "-1",
            )
        offset = 0
        cursor = request.param("cursor")
        if cursor:
            try:
                offset = json.loads(base64.b64decode(cursor))["offset"]
            except (ValueError, KeyError):
                return Response.json({"error": "invalid cursor"}, 400)
        chunk = models[offset : offset + limit]
        fields = (
            {"_id", "id", *expand}
            if expand
            else {
                "_id",
                "id",
                "likes",
                "downloads",
                "tags",
                "pipeline_tag",
                "library_name",
                "createdAt",
                "private",
            }
        )
        payload = [{k: v for k, v in m.items() if k in fields} for m in chunk]
        headers: dict[str, str] = {}
        if offset + limit < len(models):
            token = base64.b64encode(json.dumps({"offset": offset + limit}).encode()).decode()
            query = [(k, v) for k, vs in request.query.items() if k != "cursor" for v in vs] + [
                ("cursor", token)
            ]
            headers["Link"] = f'<{self.url}/api/models?{urlencode(query)}>; rel="next"'
        body = json.dumps(payload).encode()
        etag = 'W/"' + hashlib.sha1(body).hexdigest() + '"'
        if request.headers.get("if-none-match") == etag:
            return Response(304, b"", {"ETag": etag, **headers})
        return Response(
            200, body, {"Content-Type": "application/json; charset=utf-8", "ETag": etag, **headers}
        )
