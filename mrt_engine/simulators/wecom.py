"""A WeCom group-robot webhook simulator: checks the key, the body and the byte limits
(markdown 4096, text 2048), and answers WeCom's bodies. See mrt_engine/notify/wecom.py."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from mrt_engine.simulators.base import Request, Response
from mrt_engine.simulators.robot import RobotSimulator

PATH = "/cgi-bin/webhook/send"
LIMITS = {"markdown": 4096, "text": 2048}


class WeComSimulator(RobotSimulator):
    MESSAGES: ClassVar[dict[int, str]] = {
        -1: "system busy",
        93000: "invalid webhook url, hint: [1700000000_1_x], from ip: 127.0.0.1",
        45009: "api freq out of limit, hint: [1700000000_2_x]",
        40058: "invalid parameter",
        44004: "empty content, hint: [1700000000_3_x]",
        40008: "invalid message type, hint: [1700000000_4_x]",
    }
    RATE_LIMITED = 45009

    def __init__(self, *, token: str = "sim-robot-key", **kwargs: Any) -> None:
        super().__init__(token=token, **kwargs)
        self.route("POST", re.escape(PATH), self._send)

    @property
    def webhook_url(self) -> str:
        return f"{self.url}{PATH}?key={self.token}"

    def body(self, code: int, message: str) -> dict[str, Any]:
        return {"errcode": code, "errmsg": "ok" if code == 0 else message}

    def _send(self, request: Request, match: re.Match[str]) -> Response:
        if request.param("key") != self.token:
            return self.error(93000, None)
        try:
            payload = request.json()
        except ValueError:
            return self.error(40058, None, "Warning: wrong json format.")
        msgtype = payload.get("msgtype") if isinstance(payload, dict) else None
        if msgtype not in LIMITS:
            return self.error(40008, payload if isinstance(payload, dict) else None)
        part = payload.get(msgtype)
        content = part.get("content") if isinstance(part, dict) else None
        if not isinstance(content, str) or not content:
            return self.error(44004, payload)
        limit = LIMITS[msgtype]
        if len(content.encode("utf-8")) > limit:
            detail = f"{msgtype}.content exceed max length {limit}"
            return self.error(40058, payload, detail)
        for name in ("mentioned_list", "mentioned_mobile_list"):
            value = part.get(name, [])
            if msgtype == "markdown" and name in part:
                return self.error(40058, payload, f"markdown does not take {name}")
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return self.error(40058, payload, f"{name} must be a list of strings")
        return self.accept(content, payload)
