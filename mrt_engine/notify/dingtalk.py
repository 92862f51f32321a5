"""DingTalk custom robot (自定义机器人) webhook.

Documented at https://open.dingtalk.com/document/orgapp/custom-robot-access (sending),
https://open.dingtalk.com/document/orgapp/custom-bot-send-message-type (message types) and
https://open.dingtalk.com/document/robots/customize-robot-security-settings (signing).

``POST https://oapi.dingtalk.com/robot/send?access_token=...`` with ``{"msgtype": "markdown",
"markdown": {"title": ..., "text": ...}, "at": {"atMobiles": [...], "atUserIds": [...],
"isAtAll": false}}`` or ``{"msgtype": "text", "text": {"content": ...}, "at": {...}}``. A
mention highlights only when ``@<mobile>`` / ``@<userid>`` also appears in the text, so the
mentions are put in front of it. With signing on, the URL also carries ``timestamp`` (ms) and
``sign`` = urlencode(base64(HMAC-SHA256(key=secret, msg=timestamp + "\\n" + secret))); DingTalk
refuses a timestamp more than an hour from its clock. The markdown title is built from
trusted words only (it is what the notification shows); the markdown text is escaped (see
:mod:`mrt_engine.notify.markup`) so an event's title cannot make a link, image or heading. The
text is at most 20,000 bytes; a robot may send 20 messages a minute (then it is throttled for
10 minutes).

Success is ``{"errcode": 0, "errmsg": "ok"}``. Error codes: 310000 keyword / signature /
timestamp / IP check failed (errmsg says which), 300001 invalid token, 400013 group
dissolved, 400101 access_token does not exist, 400102 robot stopped, 400105 unsupported
msgtype, 400106 robot does not exist, 410100 sending too fast (flow control; 130101 in older
answers), 430101..430104 unsafe link / inappropriate text / image / content, 460101 message
too large, -1 system busy. Permanent: 400105, 430101..430104 and 460101 (this message's shape
or content).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field, field_validator

from mrt_engine.config import Wait
from mrt_engine.notify.base import Channel, ChannelContext, ChannelKind, ChannelSettings, Outgoing
from mrt_engine.notify.markup import fit, markdown_with_link
from mrt_engine.notify.message import render
from mrt_engine.notify.robot import (
    RobotChannel,
    check_ids,
    check_mobiles,
    int_code,
    json_body,
    resolve_sign_secret,
    resolve_webhook,
)
from mrt_engine.secrets import Secret, redact_url

MAX_TEXT = None
MAX_BYTES = 20_000  # the text, UTF-8
DEFAULT_RATE_PER_MINUTE = 20
KNOWN_CODES = {
    -1: "system busy",
    310000: "keyword, signature, timestamp or IP check failed",
    300001: "invalid token",
    400013: "group dissolved",
    400101: "access_token does not exist",
    400102: "robot stopped",
    400105: "unsupported message type",
    400106: "robot does not exist",
    410100: "sending too fast (flow control)",
    130101: "sending too fast (20 a minute)",
    430101: "unsafe external link",
    430102: "inappropriate text",
    430103: "inappropriate image",
    430104: "inappropriate content",
    460101: "message too large",
}
RATE_LIMIT_CODES = frozenset({130101, 410100})
PERMANENT_CODES = frozenset({400105, 430101, 430102, 430103, 430104, 460101})


def sign(timestamp_ms: int, secret: str) -> str:
    """DingTalk's signature, URL-encoded as it goes in the query."""
    message = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return quote(base64.b64encode(digest).decode(), safe="")


class DingTalkSettings(ChannelSettings):
    """``notify.dingtalk``."""

    webhook_env: str = "DINGTALK_WEBHOOK_URL"
    secret_env: str | None = None  # the signing secret (SEC...), when 加签 is on
    message_type: Literal["markdown", "text"] = "markdown"
    at_mobiles: list[str] = Field(default_factory=list)
    at_user_ids: list[str] = Field(default_factory=list)
    at_all: bool = False
    timeout_seconds: Wait | None = Field(None, gt=0, le=120)

    @field_validator("at_mobiles")
    @classmethod
    def _mobiles(cls, value: list[str]) -> list[str]:
        return check_mobiles(value)

    @field_validator("at_user_ids")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        return check_ids(value, "user id")


class DingTalkChannel(RobotChannel):
    name = "dingtalk"
    platform = "DingTalk"
    known_codes = KNOWN_CODES
    permanent_codes = PERMANENT_CODES
    rate_limit_codes = RATE_LIMIT_CODES
    rate_limit_wait = 600.0  # over 20 a minute, DingTalk throttles the robot for 10 minutes

    def __init__(
        self, settings: DingTalkSettings, webhook: Secret, secret: Secret | None, timeout: float
    ) -> None:
        super().__init__("dingtalk", settings.timeout_seconds, timeout)
        self.settings = settings
        self.webhook = webhook
        self.secret = secret

    def describe(self) -> str:
        signed = ", signed" if self.secret else ""
        return f"DingTalk webhook {redact_url(self.webhook.reveal())} ({self.settings.message_type}{signed})"

    def mentions(self) -> str:
        names = [*self.settings.at_mobiles, *self.settings.at_user_ids]
        return "".join(f"@{n} " for n in names)

    def payload(self, outgoing: Outgoing) -> dict[str, Any]:
        """The body: the message (its text at most 20,000 bytes) and who it mentions."""
        context = outgoing.context
        prefix = self.mentions()
        markdown = self.settings.message_type == "markdown"

        def make(budget: int) -> str:
            text = render(context, None, self.settings, limit_bytes=budget)
            # A single newline does not break a line in DingTalk's markdown.
            body = markdown_with_link(text, context.url, line_break="\n\n") if markdown else text
            return prefix + body

        text = fit(make, lambda t: len(t.encode("utf-8")), MAX_BYTES)
        at = {
            "atMobiles": list(self.settings.at_mobiles),
            "atUserIds": list(self.settings.at_user_ids),
            "isAtAll": self.settings.at_all,
        }
        if markdown:
            return {
                "msgtype": "markdown",
                "markdown": {"title": context.subject(self.settings.locale), "text": text},
                "at": at,
            }
        return {"msgtype": "text", "text": {"content": text}, "at": at}

    def signed_url(self, *, now_ms: int | None = None) -> str:
        """The webhook, with ``timestamp`` and ``sign`` when signing."""
        url = self.webhook.reveal()
        if self.secret is None:
            return url
        stamp = int(time.time() * 1000) if now_ms is None else now_ms
        joiner = "&" if "?" in url else "?"
        return f"{url}{joiner}timestamp={stamp}&sign={sign(stamp, self.secret.reveal())}"

    def request(self, outgoing: Outgoing) -> tuple[str, bytes]:
        return self.signed_url(), json_body(self.payload(outgoing))

    def answer_code(self, answer: dict[str, Any]) -> tuple[int | None, str]:
        return int_code(answer.get("errcode")), str(answer.get("errmsg") or "")


def build(settings: DingTalkSettings, ctx: ChannelContext) -> Channel | None:
    webhook, usable = resolve_webhook(
        ctx,
        "notify.dingtalk",
        settings.webhook_env,
        "the DingTalk robot webhook URL (…/robot/send?access_token=...)",
    )
    secret = resolve_sign_secret(ctx, "notify.dingtalk", settings.secret_env)
    if webhook is None or not usable or (settings.secret_env and secret is None):
        return None
    return DingTalkChannel(settings, webhook, secret, ctx.request_timeout)


KIND = ChannelKind(name="dingtalk", settings=DingTalkSettings, build=build)
