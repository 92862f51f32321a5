"""A WeLink group-robot webhook simulator that validates requests as WeLink documents them and
fails on demand (HTTP errors, WeLink error codes, stalls)."""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from typing import Any

from mrt_engine.simulators.base import Request, Response, Simulator

PATH = "/api/werobot/v1/webhook/send"


@dataclass
class Received:
    text: str
    payload: dict[str, Any]
    at: float


class WeLinkSimulator(Simulator):
    """Accepted messages land in ``messages``; ``fail_rate`` fails that share of them at random."""

    def __init__(
        self,
        *,
        token: str = "sim-token",
        fail_rate: float = 0.0,
        seed: int | None = None,
        fail_matching: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.token = token
        self.fail_rate = fail_rate
        self.fail_matching = fail_matching  # messages holding this text always fail (58500)
        self.rng = random.Random(seed)
        self.messages: list[Received] = []
        self.rejected: list[tuple[str, dict[str, Any] | None]] = []
        self._uuids: set[str] = set()
        self.route("POST", re.escape(PATH), self._send)

    @property
    def webhook_url(self) -> str:
        return f"{self.url}{PATH}?token={self.token}&channel=standard"

    def texts(self) -> list[str]:
        with self.lock:
            return [m.text for m in self.messages]

    def _error(self, code: str, message: str, payload: dict[str, Any] | None) -> Response:
        with self.lock:
            self.rejected.append((code, payload))
        return Response.json({"code": code, "data": None, "message": message})

    def _send(self, request: Request, match: re.Match[str]) -> Response:
        if request.param("token") != self.token or request.param("channel") != "standard":
            return self._error("58404", "robot resource does not exist", None)
        try:
            payload = request.json()
        except ValueError:
            return self._error("58601", "invalid parameter: body is not JSON", None)
        problem = _validate(payload)
        if problem:
            return self._error("58601", f"invalid parameter: {problem}", payload)
        if self.fail_matching and self.fail_matching in payload["content"]["text"]:
            return self._error("58500", "service exception", payload)
        with self.lock:
            if payload["uuid"] in self._uuids:
                return self._error("58601", "invalid parameter: uuid already used", payload)
            self._uuids.add(payload["uuid"])
            fail = self.fail_rate and self.rng.random() < self.fail_rate
            kind = self.rng.choice(["http", "code"]) if fail else None
        if kind == "http":
            with self.lock:
                self.rejected.append(("http503", payload))
            return Response.json({"message": "service unavailable"}, 503)
        if kind == "code":
            return self._error("58500", "service exception", payload)
        with self.lock:
            self.messages.append(Received(payload["content"]["text"], payload, time.time()))
        return Response.json({"code": "0", "data": "success", "message": "ok"})


def _validate(payload: Any) -> str | None:
    """What WeLink would reject in this body, or ``None``."""
    if not isinstance(payload, dict):
        return "body must be an object"
    if payload.get("messageType") != "text":
        return "messageType must be text"
    content = payload.get("content")
    text = content.get("text") if isinstance(content, dict) else None
    if not isinstance(text, str) or not 1 <= len(text) <= 500:
        return "content.text must be 1..500 characters"
    stamp = payload.get("timeStamp")
    if not isinstance(stamp, int) or abs(time.time() * 1000 - stamp) > 10 * 60 * 1000:
        return "timeStamp must be milliseconds within 10 minutes"
    if not isinstance(payload.get("uuid"), str) or not payload["uuid"]:
        return "uuid is required"
    if payload.get("isAt"):
        accounts = payload.get("atAccounts")
        if not isinstance(accounts, list) or not 1 <= len(accounts) <= 10:
            return "atAccounts must hold 1..10 userids when isAt is true"
    return None
