"""An OSV simulator: ``POST /v1/query`` by package name and ecosystem, paged by token."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from mrt_engine.simulators.base import Request, Response, Simulator


class OsvSimulator(Simulator):
    def __init__(self, *, page_size: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.page_size = page_size
        self.vulns: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.route("POST", r"/v1/query", self._query)

    def publish(
        self,
        name: str,
        vuln_id: str,
        summary: str,
        *,
        ecosystem: str = "PyPI",
        severity: str | None = "HIGH",
        cvss: str | None = None,
        aliases: tuple[str, ...] = (),
    ) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        vuln: dict[str, Any] = {
            "id": vuln_id,
            "summary": summary,
            "details": f"{summary}. Upgrade to the fixed version.",
            "aliases": list(aliases),
            "modified": now,
            "published": now,
            "affected": [{"package": {"name": name, "ecosystem": ecosystem}}],
        }
        if severity:
            vuln["database_specific"] = {"severity": severity}
        if cvss:
            vuln["severity"] = [{"type": "CVSS_V3", "score": cvss}]
        with self.lock:
            self.vulns.setdefault((ecosystem, name), []).append(vuln)

    def _query(self, request: Request, match: re.Match[str]) -> Response:
        try:
            body = request.json()
            package = body["package"]
            key = (package["ecosystem"], package["name"])
        except (ValueError, KeyError, TypeError):
            return Response.json({"code": 3, "message": "Invalid query."}, 400)
        start = int(body.get("page_token") or 0)
        with self.lock:
            vulns = list(self.vulns.get(key, []))
        chunk = vulns[start : start + self.page_size]
        answer: dict[str, Any] = {"vulns": chunk} if chunk else {}
        if start + self.page_size < len(vulns):
            answer["next_page_token"] = str(start + self.page_size)
        return Response.json(answer)
