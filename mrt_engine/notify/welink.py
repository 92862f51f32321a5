"""WeLink group robot webhook (v0-usage.md §3.5).

``POST <webhook>?token=..&channel=standard`` with ``{"messageType": "text", "content": {"text":
...}, "timeStamp": <ms>, "uuid": <new each call>, "isAt", "isAtAll", "atAccounts"}``. The text
is 1..500 characters and must contain ``@userid`` (or ``@all``) for a mention to highlight, so
the mentions are put in front of it. Success is ``{"code": "0"}``; WeLink's error codes are
58404 (robot not found), 58500 (service error), 58601 (bad parameters), 58602 (robot disabled).
"""

from __future__ import annotations

import json
import time
import uuid

from pydantic import Field, field_validator, model_validator

from mrt_engine.config import Wait
from mrt_engine.notify._post import Poster, resolve_url, wait_asked
from mrt_engine.notify.base import (
    Channel,
    ChannelContext,
    ChannelKind,
    ChannelSettings,
    Outgoing,
    SendResult,
)
from mrt_engine.notify.message import render
from mrt_engine.secrets import Secret, redact_url, shorten
from mrt_engine.untrusted_json import parse_json

MAX_TEXT = 500
MAX_BYTES = None  # WeLink counts characters
MAX_AT_ACCOUNTS = 10
# The same message cannot succeed by retrying: it is malformed. Robot missing/disabled is an
# operator fix, so those are retried with backoff like a server error.
PERMANENT_CODES = {"58601"}
KNOWN_CODES = {
    "58404": "robot does not exist",
    "58500": "WeLink service error",
    "58601": "invalid parameters",
    "58602": "robot is not enabled",
}


class WeLinkSettings(ChannelSettings):
    """``notify.welink``."""

    webhook_env: str = "WELINK_WEBHOOK_URL"
    is_at: bool | None = None  # default: true when at_accounts is not empty
    is_at_all: bool = False
    at_accounts: list[str] = Field(default_factory=list)
    timeout_seconds: Wait | None = Field(None, gt=0, le=120)

    @field_validator("at_accounts")
    @classmethod
    def _at_most_ten(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_AT_ACCOUNTS:
            raise ValueError(f"WeLink accepts at most {MAX_AT_ACCOUNTS} accounts, got {len(value)}")
        for account in value:
            if not account.strip() or any(c.isspace() for c in account):
                raise ValueError(f"invalid userid {account!r}")
        return value

    @model_validator(mode="after")
    def _is_at_needs_accounts(self) -> WeLinkSettings:
        if self.is_at and not self.at_accounts:
            raise ValueError("is_at is true but at_accounts is empty (WeLink requires both)")
        return self


class WeLinkChannel(Channel):
    name = "welink"

    def __init__(self, settings: WeLinkSettings, webhook: Secret, timeout: float) -> None:
        self.settings = settings
        self.webhook = webhook
        self.is_at = settings.is_at if settings.is_at is not None else bool(settings.at_accounts)
        self.timeout = settings.timeout_seconds or timeout
        self.timeout_key = (
            "notify.welink.timeout_seconds"
            if settings.timeout_seconds
            else "delivery.request_timeout_seconds"
        )
        self._poster = Poster("WeLink", self.timeout, self.timeout_key)

    def describe(self) -> str:
        return f"WeLink webhook {redact_url(self.webhook.reveal())}"

    def endpoint(self) -> str:
        return self.webhook.reveal()

    def mentions(self) -> str:
        parts = []
        if self.settings.is_at_all:
            parts.append("@all")
        if self.is_at:
            parts.extend(f"@{a}" for a in self.settings.at_accounts)
        return (" ".join(parts) + " ") if parts else ""

    def payload(self, outgoing: Outgoing) -> dict:
        prefix = self.mentions()
        text = prefix + render(outgoing.context, MAX_TEXT - len(prefix), self.settings)
        body: dict = {
            "messageType": "text",
            "content": {"text": text[:MAX_TEXT] or "(empty)"},
            "timeStamp": int(time.time() * 1000),
            "uuid": uuid.uuid4().hex,  # WeLink: regenerate before every call
            "isAt": self.is_at,
            "isAtAll": self.settings.is_at_all,
        }
        if self.is_at:
            body["atAccounts"] = list(self.settings.at_accounts)
        return body

    def preview(self, outgoing: Outgoing) -> str:
        """The request :meth:`send` would make: its URL (token redacted) and JSON body."""
        body = json.dumps(self.payload(outgoing), ensure_ascii=False, indent=2)
        return f"POST {redact_url(self.webhook.reveal())}\n\n{body}"

    def send(self, outgoing: Outgoing) -> SendResult:
        body = self.payload(outgoing)
        response = self._poster.post(
            self.webhook.reveal(),
            json.dumps(body, ensure_ascii=False).encode("utf-8"),
            {"Content-Type": "application/json", "Accept-Charset": "UTF-8"},
        )
        if isinstance(response, SendResult):
            return response
        reply = shorten(response.text, 300)
        if response.status_code != 200:
            permanent = response.status_code in (400, 413, 422)
            return SendResult(
                ok=False,
                http_status=response.status_code,
                reply=reply,
                error=f"HTTP {response.status_code} from WeLink",
                permanent=permanent,
                retry_after=wait_asked(response),
                rate_limited=response.status_code == 429,
            )
        try:
            answer = parse_json(response.content)
        except ValueError:
            return SendResult(
                ok=False, http_status=200, reply=reply, error="WeLink answered non-JSON"
            )
        code = str(answer.get("code")) if isinstance(answer, dict) else None
        if code == "0":
            return SendResult(ok=True, http_status=200, reply=reply)
        message = answer.get("message") if isinstance(answer, dict) else None
        meaning = KNOWN_CODES.get(code or "", "unknown code")
        return SendResult(
            ok=False,
            http_status=200,
            reply=reply,
            error=f"WeLink code {code} ({meaning}): {shorten(message or '', 160)}",
            permanent=code in PERMANENT_CODES,
        )

    def close(self) -> None:
        self._poster.close()


def build(settings: WeLinkSettings, ctx: ChannelContext) -> Channel | None:
    webhook, usable = resolve_url(
        ctx,
        "notify.welink.webhook_env",
        settings.webhook_env,
        "the WeLink group robot webhook URL with token and channel",
    )
    if webhook is None or not usable:
        return None
    return WeLinkChannel(settings, webhook, ctx.request_timeout)


KIND = ChannelKind(name="welink", settings=WeLinkSettings, build=build)
