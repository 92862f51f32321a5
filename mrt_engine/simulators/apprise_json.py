"""A receiver for Apprise's ``json://`` service: what an Apprise URL of the tests reaches.

Apprise's JSON notification (https://github.com/caronc/apprise/wiki/Notify_Custom_JSON) POSTs
``{"version": "1.0", "title": ..., "message": ..., "attachments": [...], "type": "info"}`` as
``application/json`` to the URL's host and path, with the URL's ``+Header=value`` parameters as
headers; any 2xx is success. This receiver checks that shape (400 otherwise) and, when
``token`` is set, an ``X-Token`` header (401 otherwise).
"""

from __future__ import annotations

import re
from typing import Any

from mrt_engine.simulators.base import Request, Response, Simulator

PATH = "/notify"


class AppriseJsonSink(Simulator):
    """Accepted payloads land in ``messages``."""

    def __init__(self, *, token: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.token = token
        self.messages: list[dict[str, Any]] = []
        self.refused: list[tuple[int, str]] = []
        self.route("POST", re.escape(PATH), self._receive)

    def apprise_url(self, token: str | None = None) -> str:
        """The ``json://`` Apprise URL of this receiver."""
        host, port = self.server.server_address[:2]
        header = f"?+X-Token={token}" if token else ""
        return f"json://{host}:{port}{PATH}{header}"

    def _refuse(self, status: int, reason: str) -> Response:
        with self.lock:
            self.refused.append((status, reason))
        return Response.json({"error": reason}, status)

    def _receive(self, request: Request, match: re.Match[str]) -> Response:
        if self.token is not None and request.headers.get("x-token") != self.token:
            return self._refuse(401, "bad token")
        if not request.headers.get("content-type", "").startswith("application/json"):
            return self._refuse(400, "content-type")
        try:
            payload = request.json()
        except ValueError:
            return self._refuse(400, "not JSON")
        if not isinstance(payload, dict) or not all(
            isinstance(payload.get(k), str) for k in ("version", "title", "message", "type")
        ):
            return self._refuse(400, "missing fields")
        with self.lock:
            self.messages.append(payload)
        return Response.json({"ok": True})
