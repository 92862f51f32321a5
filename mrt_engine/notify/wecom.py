"""WeCom (企业微信) group robot (群机器人) webhook.

Documented at https://developer.work.weixin.qq.com/document/path/91770 (群机器人配置说明)
and https://developer.work.weixin.qq.com/document/path/90313 (global error codes).

``POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...`` with ``{"msgtype":
"markdown", "markdown": {"content": ...}}`` (at most 4096 bytes of UTF-8) or ``{"msgtype":
"text", "text": {"content": ..., "mentioned_list": [userids or "@all"],
"mentioned_mobile_list": [...]}}`` (at most 2048 bytes). Both parse ``<@userid>`` in the
content as a mention, which is how a markdown message mentions (it has no mention lists, so
mobiles and @all need ``message_type: text``); event text is escaped (markdown) or has its
tags neutralised (text) so a title cannot mention anyone or make a link. A robot may send 20
messages a minute.

Success is ``{"errcode": 0, "errmsg": "ok"}``. Error codes: 93000 invalid webhook URL (key),
45009 API frequency over the limit, 40058 invalid parameter (a content over its limit), 44004
empty content, 40008 invalid message type, -1 system busy. Permanent: 40058, 44004 and 40008
(this message's shape).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mrt_engine.config import Wait
from mrt_engine.notify.base import Channel, ChannelContext, ChannelKind, ChannelSettings, Outgoing
from mrt_engine.notify.markup import fit, markdown_with_link, neutralize_tags
from mrt_engine.notify.message import render
from mrt_engine.notify.robot import (
    RobotChannel,
    check_ids,
    check_mobiles,
    int_code,
    json_body,
    resolve_webhook,
)
from mrt_engine.secrets import Secret, redact_url

MAX_TEXT = None
MAX_BYTES = 4096  # markdown, the default message type
MAX_TEXT_BYTES = 2048
DEFAULT_RATE_PER_MINUTE = 20
KNOWN_CODES = {
    -1: "system busy",
    93000: "invalid webhook URL",
    45009: "API frequency over the limit",
    40058: "invalid parameter",
    44004: "empty content",
    40008: "invalid message type",
}
RATE_LIMIT_CODES = frozenset({45009})
PERMANENT_CODES = frozenset({40058, 44004, 40008})


class WeComSettings(ChannelSettings):
    """``notify.wecom``."""

    webhook_env: str = "WECOM_WEBHOOK_URL"
    message_type: Literal["markdown", "text"] = "markdown"
    at_user_ids: list[str] = Field(default_factory=list)
    at_mobiles: list[str] = Field(default_factory=list)  # text messages only
    at_all: bool = False  # text messages only
    timeout_seconds: Wait | None = Field(None, gt=0, le=120)

    @field_validator("at_user_ids")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        return check_ids(value, "userid")

    @field_validator("at_mobiles")
    @classmethod
    def _mobiles(cls, value: list[str]) -> list[str]:
        return check_mobiles(value)

    @model_validator(mode="after")
    def _markdown_mentions_userids_only(self) -> WeComSettings:
        if self.message_type == "markdown" and (self.at_mobiles or self.at_all):
            raise ValueError(
                "WeCom markdown messages mention userids only (<@userid>): at_mobiles and"
                " at_all need message_type: text"
            )
        return self


class WeComChannel(RobotChannel):
    name = "wecom"
    platform = "WeCom"
    known_codes = KNOWN_CODES
    permanent_codes = PERMANENT_CODES
    rate_limit_codes = RATE_LIMIT_CODES
    rate_limit_wait = 60.0  # 20 a minute

    def __init__(self, settings: WeComSettings, webhook: Secret, timeout: float) -> None:
        super().__init__("wecom", settings.timeout_seconds, timeout)
        self.settings = settings
        self.webhook = webhook

    def describe(self) -> str:
        return f"WeCom webhook {redact_url(self.webhook.reveal())} ({self.settings.message_type})"

    def payload(self, outgoing: Outgoing) -> dict[str, Any]:
        """The body, its content within the platform's byte limit."""
        context = outgoing.context
        settings = self.settings
        if self.settings.message_type == "markdown":
            suffix = "".join(f"\n<@{u}>" for u in self.settings.at_user_ids)

            def markdown(budget: int) -> str:
                text = render(context, None, settings, limit_bytes=budget)
                return markdown_with_link(text, context.url) + suffix

            content = fit(markdown, lambda t: len(t.encode("utf-8")), MAX_BYTES)
            return {"msgtype": "markdown", "markdown": {"content": content}}

        def text(budget: int) -> str:
            return neutralize_tags(render(context, None, settings, limit_bytes=budget))

        body: dict[str, Any] = {
            "content": fit(text, lambda t: len(t.encode("utf-8")), MAX_TEXT_BYTES)
        }
        mentioned = [*self.settings.at_user_ids, *(["@all"] if self.settings.at_all else [])]
        if mentioned:
            body["mentioned_list"] = mentioned
        if self.settings.at_mobiles:
            body["mentioned_mobile_list"] = list(self.settings.at_mobiles)
        return {"msgtype": "text", "text": body}

    def request(self, outgoing: Outgoing) -> tuple[str, bytes]:
        return self.webhook.reveal(), json_body(self.payload(outgoing))

    def answer_code(self, answer: dict[str, Any]) -> tuple[int | None, str]:
        return int_code(answer.get("errcode")), str(answer.get("errmsg") or "")


def build(settings: WeComSettings, ctx: ChannelContext) -> Channel | None:
    webhook, usable = resolve_webhook(
        ctx,
        "notify.wecom",
        settings.webhook_env,
        "the WeCom group robot webhook URL (…/cgi-bin/webhook/send?key=...)",
    )
    if webhook is None or not usable:
        return None
    return WeComChannel(settings, webhook, ctx.request_timeout)


KIND = ChannelKind(name="wecom", settings=WeComSettings, build=build)
