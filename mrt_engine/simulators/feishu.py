"""A Feishu/Lark custom-bot webhook simulator: checks the body, the signature (recomputed from
the documented formula, within an hour) and the 20 KB limit, and answers Feishu's bodies.
See mrt_engine/notify/feishu.py for the documentation it follows."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Any, ClassVar

from mrt_engine.simulators.base import Request, Response
from mrt_engine.simulators.robot import RobotSimulator, within_an_hour

PATH = "/open-apis/bot/v2/hook/"
MAX_BODY_BYTES = 20 * 1024


class FeishuSimulator(RobotSimulator):
    """``secret`` turns signature verification on."""

    MESSAGES: ClassVar[dict[int, str]] = {
        19001: "param invalid: incoming webhook access token invalid",
        19002: "params error, msg_type need",
        19007: "Bot Not Enabled",
        19021: "sign match fail or timestamp is not within one hour from current time",
        19022: "Ip Not Allowed",
        19024: "Key Words Not Found",
        9499: "Bad Request",
        11232: "frequency limited psm[lark.oapi.app_platform_runtime]appID[1]",
    }
    RATE_LIMITED = 11232

    def __init__(
        self, *, token: str = "sim-hook-token", secret: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(token=token, **kwargs)
        self.secret = secret
        self.route("POST", re.escape(PATH) + r"(?P<token>[^/]+)", self._send)

    @property
    def webhook_url(self) -> str:
        return f"{self.url}{PATH}{self.token}"

    def body(self, code: int, message: str) -> dict[str, Any]:
        if code == 0:  # today's answer carries the old fields too
            return {
                "StatusCode": 0,
                "StatusMessage": "success",
                "code": 0,
                "data": {},
                "msg": "success",
            }
        return {"code": code, "data": {}, "msg": message}

    def _send(self, request: Request, match: re.Match[str]) -> Response:
        if match.group("token") != self.token:
            return self.error(19001, None)
        if not request.headers.get("content-type", "").startswith("application/json"):
            return self.error(9499, None, "Bad Request: Content-Type must be application/json")
        if len(request.body) > MAX_BODY_BYTES:
            return self.error(9499, None, f"Bad Request: body over {MAX_BODY_BYTES} bytes")
        try:
            payload = request.json()
        except ValueError:
            return self.error(9499, None)
        if not isinstance(payload, dict):
            return self.error(9499, None)
        if self.secret is not None and not self._signed(payload):
            return self.error(19021, payload)
        if "msg_type" not in payload:
            return self.error(19002, payload)
        text = _text_of(payload)
        if text is None:
            return self.error(9499, payload, "Bad Request: content does not match msg_type")
        return self.accept(text, payload)

    def _signed(self, payload: dict[str, Any]) -> bool:
        stamp, given = payload.get("timestamp"), payload.get("sign")
        if not isinstance(stamp, str) or not stamp.isdigit() or not isinstance(given, str):
            return False
        if not within_an_hour(int(stamp)):
            return False
        key = f"{stamp}\n{self.secret}".encode()
        expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        return hmac.compare_digest(expected, given)


def _text_of(payload: dict[str, Any]) -> str | None:
    """The message as a reader sees it (links as their href), or ``None`` if malformed."""
    content = payload.get("content")
    if not isinstance(content, dict):
        return None
    if payload["msg_type"] == "text":
        text = content.get("text")
        return text if isinstance(text, str) and text else None
    if payload["msg_type"] != "post":
        return None
    post = content.get("post")
    if not isinstance(post, dict) or not post:
        return None
    lines = []
    for lang in post.values():
        paragraphs = lang.get("content") if isinstance(lang, dict) else None
        if not isinstance(paragraphs, list):
            return None
        for paragraph in paragraphs:
            if not isinstance(paragraph, list):
                return None
            line = []
            for element in paragraph:
                tag = element.get("tag") if isinstance(element, dict) else None
                if tag == "text" and isinstance(element.get("text"), str):
                    line.append(element["text"])
                elif tag == "a" and isinstance(element.get("href"), str):
                    line.append(element["href"])
                elif tag == "at" and isinstance(element.get("user_id"), str):
                    line.append(f"@{element['user_id']} ")
                else:
                    return None
            lines.append("".join(line))
    return "\n".join(lines)
