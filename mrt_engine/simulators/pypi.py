"""A PyPI JSON API simulator: ``GET /pypi/NAME/json`` with releases and files, and ETags."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from mrt_engine.simulators.base import Request, Response, Simulator


class PyPISimulator(Simulator):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.projects: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.route("GET", r"/pypi/(?P<name>[^/]+)/json", self._project)

    def release(
        self,
        name: str,
        version: str,
        *,
        at: datetime | None = None,
        yanked: bool = False,
        files: tuple[str, ...] = ("bdist_wheel", "sdist"),
    ) -> None:
        when = (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with self.lock:
            self.projects.setdefault(name, {})[version] = [
                {
                    "filename": f"{name}-{version}.{'whl' if kind == 'bdist_wheel' else 'tar.gz'}",
                    "packagetype": kind,
                    "upload_time_iso_8601": when,
                    "yanked": yanked,
                    "digests": {"sha256": "0" * 64},
                }
                for kind in files
            ]

    def _project(self, request: Request, match: re.Match[str]) -> Response:
        name = match["name"]
        with self.lock:
            releases = self.projects.get(name)
            if releases is None:
                return Response.json({"message": "Not Found"}, 404)
            latest = list(releases)[-1] if releases else None
            payload = {
                "info": {"name": name, "version": latest, "summary": f"{name} (simulated)"},
                # As stored: a test may put what a broken upstream would send.
                "releases": {
                    v: list(files) if isinstance(files, list) else files
                    for v, files in releases.items()
                },
                "urls": list(releases.get(latest, [])) if latest else [],
            }
        return self.conditional(request, payload)
