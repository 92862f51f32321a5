"""A DingTalk custom-robot webhook simulator: checks the body, the signature in the query
(recomputed from the documented formula, within an hour), an optional keyword and the 20,000
byte text limit, and answers DingTalk's bodies. See mrt_engine/notify/dingtalk.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Any, ClassVar

from mrt_engine.simulators.base import Request, Response
from mrt_engine.simulators.robot import RobotSimulator, within_an_hour

PATH = "/robot/send"
MAX_TEXT_BYTES = 20_000


class DingTalkSimulator(RobotSimulator):
    """``secret`` turns signing (加签) on; ``keywords`` the keyword check (自定义关键词)."""

    MESSAGES: ClassVar[dict[int, str]] = {
        -1: "系统繁忙",
        310000: "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]",
        300001: "token is not exist",
        400013: "群已被解散",
        400101: "access_token不存在",
        400102: "机器人已停用",
        400105: "不支持的消息类型",
        400106: "机器人不存在",
        410100: "send too fast, exceed 20 times per minute",
        430101: "含有不安全的外链",
        430102: "含有不合适的文本",
        430103: "含有不合适的图片",
        430104: "含有不合适的内容",
        460101: "message too large",
    }
    RATE_LIMITED = 410100

    def __init__(
        self,
        *,
        token: str = "sim-access-token",
        secret: str | None = None,
        keywords: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(token=token, **kwargs)
        self.secret = secret
        self.keywords = keywords
        self.route("POST", re.escape(PATH), self._send)

    @property
    def webhook_url(self) -> str:
        return f"{self.url}{PATH}?access_token={self.token}"

    def body(self, code: int, message: str) -> dict[str, Any]:
        return {"errcode": code, "errmsg": "ok" if code == 0 else message}

    def _send(self, request: Request, match: re.Match[str]) -> Response:
        if request.param("access_token") != self.token:
            return self.error(300001, None)
        if self.secret is not None:
            problem = self._signature_problem(request)
            if problem:
                return self.error(310000, None, problem)
        try:
            payload = request.json()
        except ValueError:
            return self.error(400105, None, "invalid json")
        text = _text_of(payload)
        if text is None:
            return self.error(400105, payload if isinstance(payload, dict) else None)
        if not text:
            return self.error(400105, payload, "content is empty")
        if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
            return self.error(460101, payload)
        if self.keywords and not any(k in text for k in self.keywords):
            return self.error(310000, payload, "keywords not in content")
        return self.accept(text, payload)

    def _signature_problem(self, request: Request) -> str | None:
        stamp, given = request.param("timestamp"), request.param("sign")
        if not stamp or not stamp.isdigit() or not within_an_hour(int(stamp) / 1000):
            return "invalid timestamp"
        # The query is decoded here as DingTalk decodes it: a sign sent without URL-encoding
        # loses its "+" to a space and does not match.
        message = f"{stamp}\n{self.secret}".encode()
        digest = hmac.new(str(self.secret).encode(), message, hashlib.sha256).digest()
        if not given or not hmac.compare_digest(base64.b64encode(digest).decode(), given):
            return self.MESSAGES[310000]
        return None


def _text_of(payload: Any) -> str | None:
    """The message's text, or ``None`` if the body is not a text/markdown message."""
    if not isinstance(payload, dict):
        return None
    at = payload.get("at", {})
    if not isinstance(at, dict):
        return None
    for name in ("atMobiles", "atUserIds"):
        if not isinstance(at.get(name, []), list):
            return None
    if not isinstance(at.get("isAtAll", False), bool):
        return None
    if payload.get("msgtype") == "text":
        text = payload.get("text")
        content = text.get("content") if isinstance(text, dict) else None
        return content if isinstance(content, str) else None
    if payload.get("msgtype") == "markdown":
        markdown = payload.get("markdown")
        if not isinstance(markdown, dict) or not isinstance(markdown.get("title"), str):
            return None
        if not markdown["title"]:
            return ""
        content = markdown.get("text")
        return content if isinstance(content, str) else None
    return None
