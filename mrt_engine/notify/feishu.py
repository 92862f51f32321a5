"""Feishu / Lark custom bot (群自定义机器人) webhook.

Documented at https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot (Lark:
https://open.larksuite.com/document/client-docs/bot-v3/add-custom-bot).

``POST https://open.feishu.cn/open-apis/bot/v2/hook/<token>`` (Lark: open.larksuite.com) with
``{"msg_type": "text", "content": {"text": ...}}`` or ``{"msg_type": "post", "content": {"post":
{"zh_cn": {"title": ..., "content": [[elements of a paragraph], ...]}}}}`` (rich text: ``text``,
``a`` with ``href``, ``at`` with ``user_id``). A text message mentions with ``<at user_id="ou_x">
</at>`` (``all`` for everyone), so event text gets its tags neutralised. With signature
verification on, the body also carries ``timestamp`` (seconds, as a string) and ``sign`` =
base64(HMAC-SHA256 keyed with ``timestamp + "\\n" + secret`` over an empty message); Feishu
refuses a timestamp more than an hour from its clock. The request body may be at most 20 KB;
a bot may send 100 messages a minute and 5 a second.

Success is HTTP 200 with ``{"code": 0, "msg": "success"}`` (older answers: ``{"StatusCode": 0,
"StatusMessage": "success"}``). Error codes: 19001 invalid webhook token, 19002 missing
msg_type, 19007 bot not enabled, 19021 signature mismatch or timestamp over an hour off, 19022
IP not allowed, 19024 keyword check failed, 9499 bad request, 11232 frequency limited. Only
19002, 9499 (the message's shape) and 19024 (its words lack the bot's keyword) are permanent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator

from mrt_engine.config import Wait
from mrt_engine.notify.base import Channel, ChannelContext, ChannelKind, ChannelSettings, Outgoing
from mrt_engine.notify.markup import fit, neutralize_tags
from mrt_engine.notify.message import render
from mrt_engine.notify.robot import (
    RobotChannel,
    check_ids,
    int_code,
    json_body,
    resolve_sign_secret,
    resolve_webhook,
)
from mrt_engine.secrets import Secret, redact, register

MAX_BODY_BYTES = 20 * 1024
# The text can be no longer than the body it goes in (see base.py for the convention).
MAX_TEXT = None
MAX_BYTES = MAX_BODY_BYTES
DEFAULT_RATE_PER_MINUTE = 100  # and at most 5 a second
DEFAULT_RATE_PER_SECOND = 5
KNOWN_CODES = {
    19001: "invalid webhook token",
    19002: "msg_type missing",
    19007: "bot not enabled",
    19021: "signature mismatch or timestamp expired",
    19022: "IP not allowed",
    19024: "keyword check failed",
    9499: "bad request",
    11232: "frequency limited",
}
RATE_LIMIT_CODES = frozenset({11232})
PERMANENT_CODES = frozenset({19002, 19024, 9499})


def sign(timestamp: int, secret: str) -> str:
    """Feishu's signature: HMAC-SHA256 keyed with ``timestamp\\nsecret`` over nothing, base64."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


class FeishuSettings(ChannelSettings):
    """``notify.feishu``."""

    webhook_env: str = "FEISHU_WEBHOOK_URL"
    secret_env: str | None = None  # the signing secret, when signature verification is on
    message_type: Literal["post", "text"] = "post"
    at_user_ids: list[str] = Field(default_factory=list)  # open_id / user_id / union_id
    at_all: bool = False
    timeout_seconds: Wait | None = Field(None, gt=0, le=120)

    @field_validator("at_user_ids")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        return check_ids(value, "user id")


class FeishuChannel(RobotChannel):
    name = "feishu"
    platform = "Feishu"
    known_codes = KNOWN_CODES
    permanent_codes = PERMANENT_CODES
    rate_limit_codes = RATE_LIMIT_CODES
    rate_limit_wait = 60.0  # 100 a minute, 5 a second

    def __init__(
        self, settings: FeishuSettings, webhook: Secret, secret: Secret | None, timeout: float
    ) -> None:
        super().__init__("feishu", settings.timeout_seconds, timeout)
        self.settings = settings
        self.webhook = webhook
        self.secret = secret
        # The token is the path's last segment: shown alone (a proxy's error page, a log line
        # that quotes the path) it must be redacted too, not only as part of the whole URL.
        parts = urlsplit(webhook.reveal())
        self._token = parts.path.rstrip("/").rsplit("/", 1)[-1]
        if len(self._token) >= 8:  # a real hook id is a UUID; never redact a word like "hook"
            register(self._token)
        shown_path = parts.path[: len(parts.path.rstrip("/")) - len(self._token)] + "***"
        self._shown = urlunsplit(
            (parts.scheme, parts.netloc.rsplit("@", 1)[-1], shown_path, "", "")
        )

    def describe(self) -> str:
        signed = ", signed" if self.secret else ""
        return f"Feishu webhook {redact(self._shown)} ({self.settings.message_type}{signed})"

    def mentions(self) -> list[str]:
        ids = list(self.settings.at_user_ids)
        return (["all"] if self.settings.at_all else []) + ids

    def content(self, text: str, subject: str, url: str) -> dict[str, Any]:
        """The message part of the body for the rendered ``text``."""
        if self.settings.message_type == "text":
            tags = "".join(f'<at user_id="{m}"></at> ' for m in self.mentions())
            return {"msg_type": "text", "content": {"text": tags + neutralize_tags(text)}}
        paragraphs: list[list[dict[str, str]]] = []
        for line in text.split("\n"):
            pieces = line.split(url) if url else [line]
            paragraph: list[dict[str, str]] = []
            for i, piece in enumerate(pieces):
                if i:
                    paragraph.append({"tag": "a", "text": url, "href": url})
                if piece:
                    paragraph.append({"tag": "text", "text": neutralize_tags(piece)})
            paragraphs.append(paragraph or [{"tag": "text", "text": ""}])
        if self.mentions():
            paragraphs.insert(0, [{"tag": "at", "user_id": m} for m in self.mentions()])
        return {
            "msg_type": "post",
            "content": {"post": {"zh_cn": {"title": subject, "content": paragraphs}}},
        }

    def payload(self, outgoing: Outgoing, *, now: int | None = None) -> dict[str, Any]:
        """The whole body: the message, fitted to 20 KB, and the signature when signing."""
        context = outgoing.context
        signature: dict[str, str] = {}
        if self.secret is not None:
            stamp = int(time.time()) if now is None else now
            signature = {"timestamp": str(stamp), "sign": sign(stamp, self.secret.reveal())}
        url = context.url if context.url.startswith(("http://", "https://")) else ""

        def make(budget: int) -> dict[str, Any]:
            text = render(context, None, self.settings, limit_bytes=budget)
            return {**signature, **self.content(text, context.subject(self.settings.locale), url)}

        return fit(make, lambda body: len(json_body(body)), MAX_BODY_BYTES)

    def request(self, outgoing: Outgoing) -> tuple[str, bytes]:
        return self.webhook.reveal(), json_body(self.payload(outgoing))

    def answer_code(self, answer: dict[str, Any]) -> tuple[int | None, str]:
        if "code" in answer:
            return int_code(answer.get("code")), str(answer.get("msg") or "")
        return int_code(answer.get("StatusCode")), str(answer.get("StatusMessage") or "")


def build(settings: FeishuSettings, ctx: ChannelContext) -> Channel | None:
    webhook, usable = resolve_webhook(
        ctx,
        "notify.feishu",
        settings.webhook_env,
        "the Feishu/Lark custom bot webhook URL (…/open-apis/bot/v2/hook/<token>)",
    )
    secret = resolve_sign_secret(ctx, "notify.feishu", settings.secret_env)
    if webhook is None or not usable or (settings.secret_env and secret is None):
        return None
    return FeishuChannel(settings, webhook, secret, ctx.request_timeout)


KIND = ChannelKind(name="feishu", settings=FeishuSettings, build=build)
