"""A ModelScope simulator: the OpenAPI ``GET /openapi/v1/models`` (page_number/page_size,
``{"success": true, "data": {"models", "total_count"}}``) and the legacy ``PUT /api/v1/models/``
(``{"Code": 200, "Success": true, "Data": {"Models", "TotalCount"}}``). With ``legacy_only`` the
OpenAPI path answers 404, as on deployments that predate it.

The two APIs write the same instant differently: the OpenAPI as ISO 8601 text in Beijing time
(``2025-11-20T16:00:00+08:00``), the legacy API as epoch seconds (``1763625600``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from mrt_engine.simulators.base import Request, Response, Simulator

BEIJING = timezone(timedelta(hours=8))


def iso_stamp(epoch: int) -> str:
    """An instant as the OpenAPI writes it."""
    return datetime.fromtimestamp(epoch, BEIJING).isoformat()


class ModelScopeSimulator(Simulator):
    def __init__(self, *, legacy_only: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.legacy_only = legacy_only
        self.models: dict[str, dict[str, Any]] = {}
        self.route("GET", r"/openapi/v1/models", self._openapi)
        self.route("PUT", r"/api/v1/models/?", self._legacy)

    def put_model(
        self,
        model_id: str,
        *,
        tasks: tuple[str, ...] = ("text-generation",),
        tags: tuple[str, ...] = (),
        downloads: int = 0,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """Create a model or touch it (a new last_modified)."""
        when = int((at or datetime.now(UTC)).timestamp())
        with self.lock:
            model = self.models.get(model_id)
            if model is None:
                model = self.models[model_id] = {"id": model_id, "created_at": when}
            if at is None and model.get("last_modified", 0) >= when:
                when = model["last_modified"] + 1  # a touch is always a change
            model.update(
                last_modified=when, tasks=list(tasks), tags=list(tags), downloads=downloads
            )
            return model

    def remove_model(self, model_id: str) -> None:
        with self.lock:
            self.models.pop(model_id, None)

    def _select(self, owner: str) -> list[dict[str, Any]]:
        with self.lock:
            models = [dict(m) for m in self.models.values() if m["id"].split("/")[0] == owner]
        models.sort(key=lambda m: (m["last_modified"], m["id"]), reverse=True)
        return models

    def _openapi(self, request: Request, match: re.Match[str]) -> Response:
        if self.legacy_only:
            return Response.json({"message": "Not Found"}, 404)
        owner = request.param("owner") or ""
        page = max(int(request.param("page_number", "1") or 1), 1)
        size = min(max(int(request.param("page_size", "10") or 10), 1), 100)
        models = self._select(owner)
        chunk = models[(page - 1) * size : page * size]
        out = [
            {
                "id": m["id"],
                "last_modified": iso_stamp(m["last_modified"]),
                "created_at": iso_stamp(m["created_at"]),
                "tasks": m["tasks"],
                "tags": m["tags"],
                "downloads": m["downloads"],
            }
            for m in chunk
        ]
        return Response.json({"success": True, "data": {"models": out, "total_count": len(models)}})

    def _legacy(self, request: Request, match: re.Match[str]) -> Response:
        try:
            body = request.json()
            owner, page, size = body["Path"], int(body["PageNumber"]), int(body["PageSize"])
        except (ValueError, KeyError, TypeError):
            return Response.json({"Code": 400, "Success": False, "Message": "bad request"}, 400)
        models = self._select(owner)
        chunk = models[(page - 1) * size : page * size]
        out = [
            {
                "Name": m["id"].split("/", 1)[1],
                "Path": owner,
                "LastUpdatedTime": m["last_modified"],
                "CreatedTime": m["created_at"],
                "Tasks": [{"Name": t} for t in m["tasks"]],
                "Downloads": m["downloads"],
            }
            for m in chunk
        ]
        return Response.json(
            {"Code": 200, "Success": True, "Data": {"Models": out, "TotalCount": len(models)}}
        )
