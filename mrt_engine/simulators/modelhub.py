"""The internal Model Hub's service API: ``/api/services`` and ``/api/services/{id}``, with ETags."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from mrt_engine.simulators.base import Request, Response, Simulator


class ModelHubSimulator(Simulator):
    def __init__(self, *, token: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.token = token
        self.services: dict[str, dict[str, Any]] = {}
        self.route("GET", r"/api/services", self._list)
        self.route("GET", r"/api/services/(?P<id>[^/]+)", self._detail)

    def publish(
        self, service_id: str, version: str, *, stable: bool = False, content: str = ""
    ) -> None:
        with self.lock:
            service = self.services.setdefault(
                service_id,
                {
                    "service_id": service_id,
                    "service_name": f"{service_id} service",
                    "service_type": "python",
                    "port": 5008,
                    "description": "simulated",
                    "versions": [],
                },
            )
            service["versions"].insert(
                0,
                {
                    "version": version,
                    "size_bytes": 1_048_576_000,
                    "sha256": hashlib.sha256(
                        f"{service_id}{version}{content}".encode()
                    ).hexdigest(),
                    "models": [
                        {"model_id": f"{service_id}-model", "model_type": "nmt", "version": "1.0.0"}
                    ],
                    "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "stable": stable,
                },
            )

    def set_version(self, service_id: str, version: str, **changes: Any) -> None:
        with self.lock:
            for v in self.services[service_id]["versions"]:
                if v["version"] == version:
                    v.update(changes)

    def _denied(self, request: Request) -> Response | None:
        if self.token and request.headers.get("authorization") != f"Bearer {self.token}":
            return Response.json({"detail": "Not authenticated"}, 401)
        return None

    def _list(self, request: Request, match: re.Match[str]) -> Response:
        denied = self._denied(request)
        if denied:
            return denied
        with self.lock:
            listing = [
                {k: s[k] for k in ("service_id", "service_name", "service_type")}
                | {
                    "latest_version": s["versions"][0]["version"] if s["versions"] else None,
                    "versions": [
                        {k: v[k] for k in ("version", "size_bytes", "created_at", "stable")}
                        for v in s["versions"]
                    ],
                }
                for s in self.services.values()
            ]
        return Response.json(listing)

    def _detail(self, request: Request, match: re.Match[str]) -> Response:
        denied = self._denied(request)
        if denied:
            return denied
        with self.lock:
            service = self.services.get(match["id"])
            payload = (
                None
                if service is None
                else {**service, "versions": [dict(v) for v in service["versions"]]}
            )
        if payload is None:
            return Response.json({"detail": "Service not found"}, 404)
        return self.conditional(request, payload)
