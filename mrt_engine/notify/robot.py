"""Group-robot webhooks (Feishu, DingTalk, WeCom), and Slack's Web API, which answers the same
way: what their channels share.

Each is one JSON POST to a URL that holds the robot's token (Slack: a bearer token in a header),
answered with HTTP 200 and a body whose code says whether the message was accepted (``code`` /
``errcode`` 0; Slack's ``ok``) or why not (Slack's ``error``, a word). This
module sends under a deadline (see :mod:`mrt_engine.http_deadline`), reads that code, and turns
it into a :class:`SendResult`: ``permanent`` only for codes that reject *this message* (its
shape, its content), never for the robot's configuration (a wrong token or signing secret, a
disabled robot, an IP allow list), which an operator fixes and a retry then delivers.
Resolving the webhook and signing secret from the environment is here too, so the three
channels check them alike and never show them.
"""

from __future__ import annotations

import json
import re
from abc import abstractmethod
from typing import Any, ClassVar

from mrt_engine.notify._post import Poster, preview_post, resolve_url, wait_asked
from mrt_engine.notify.base import Channel, ChannelContext, Outgoing, SendResult
from mrt_engine.secrets import Secret, shorten
from mrt_engine.untrusted_json import parse_json

# Answers that mean "the message is malformed or refused for what it says": a retry sends
# the same bytes and gets the same answer, so the delivery goes to the dead letter at once.
PERMANENT_HTTP = {400, 413, 422}
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]*")
_MOBILE = re.compile(r"\+?[0-9][0-9-]{4,19}")


def check_ids(values: list[str], what: str) -> list[str]:
    """Config validator: user ids that can be written into a mention as they are."""
    for value in values:
        if not _ID.fullmatch(value):
            raise ValueError(f"invalid {what} {value!r} (letters, digits, _ . @ - only)")
    return values


def check_mobiles(values: list[str]) -> list[str]:
    """Config validator: phone numbers (digits, an optional + and dashes)."""
    for value in values:
        if not _MOBILE.fullmatch(value):
            raise ValueError(f"invalid mobile number {value!r}")
    return values


def json_body(payload: dict[str, Any]) -> bytes:
    """The request body as sent (UTF-8, not ASCII-escaped: the platforms count its bytes)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def resolve_webhook(
    ctx: ChannelContext, section: str, env: str, what: str
) -> tuple[Secret | None, bool]:
    """The robot's webhook URL from ``env`` (``<section>.webhook_env``): :func:`resolve_url`."""
    return resolve_url(ctx, f"{section}.webhook_env", env, what)


def resolve_sign_secret(ctx: ChannelContext, section: str, env: str | None) -> Secret | None:
    """The optional signing secret: none when no variable is named; an error when one is named
    but not set (sending unsigned to a robot that checks signatures would fail every time)."""
    if not env:
        return None
    return ctx.secrets.get(
        env, where=f"{section}.secret_env", what="the robot's signing secret", required=True
    )


class RobotChannel(Channel):
    """A group robot's webhook: subclasses build the request and name their codes."""

    platform = ""  # shown in errors: "Feishu"
    # Result codes: numbers (the robots' ``code`` / ``errcode``, 0 is success) or words
    # (Slack's Web API ``error``: ``ok`` true answers 0).
    known_codes: ClassVar[dict[int | str, str]] = {}
    permanent_codes: frozenset[int | str] = frozenset()
    # Codes that say "too many messages": not the message's fault, so retried however many
    # attempts it takes, and not before the platform's documented throttle is over.
    rate_limit_codes: frozenset[int | str] = frozenset()
    rate_limit_wait = 60.0  # seconds
    webhook: Secret  # the robot's URL, set by each subclass

    def __init__(self, section: str, timeout: float | None, default_timeout: float) -> None:
        self.timeout = timeout or default_timeout
        self.timeout_key = (
            f"notify.{section}.timeout_seconds" if timeout else "delivery.request_timeout_seconds"
        )
        self._poster = Poster(self.platform, self.timeout, self.timeout_key)

    def endpoint(self) -> str:
        return self.webhook.reveal()

    @abstractmethod
    def request(self, outgoing: Outgoing) -> tuple[str, bytes]:
        """The URL to POST to (signed where the platform signs the URL) and the body."""

    @abstractmethod
    def answer_code(self, answer: dict[str, Any]) -> tuple[int | str | None, str]:
        """The platform's result code in ``answer`` (0 is success) and its message."""

    def headers(self) -> dict[str, str]:
        """The headers of a send (a channel that authenticates in a header adds its own)."""
        return {"Content-Type": "application/json; charset=utf-8"}

    def message_id(self, answer: dict[str, Any]) -> str | None:
        """The platform's id of the message an accepting ``answer`` names (none: robots)."""
        return None

    def preview(self, outgoing: Outgoing) -> str:
        """The request :meth:`send` would make (the robot's token redacted), signed as sent."""
        _, body = self.request(outgoing)
        return preview_post(self.describe(), body)

    def send(self, outgoing: Outgoing) -> SendResult:
        return self.deliver(*self.request(outgoing))

    def deliver(self, url: str, body: bytes) -> SendResult:
        """POST ``body`` to ``url`` and judge the answer."""
        response = self._poster.post(url, body, self.headers())
        if isinstance(response, SendResult):
            return response
        return self.judge(
            response.status_code, response.content, response.text, wait_asked(response)
        )

    def judge(
        self, status: int, content: bytes, text: str, asked: float | None = None
    ) -> SendResult:
        """The outcome of one answer: its code decides, else its HTTP status. ``asked``: the
        seconds its ``Retry-After`` asked for."""
        reply = shorten(text, 300)
        try:
            answer = parse_json(content)
        except ValueError:
            answer = None
        code, message = self.answer_code(answer) if isinstance(answer, dict) else (None, "")
        if code == 0 and status == 200:
            named = self.message_id(answer) if isinstance(answer, dict) else None
            return SendResult(ok=True, http_status=status, reply=reply, message_id=named)
        if code is not None and code != 0:
            limited = code in self.rate_limit_codes
            meaning = self.known_codes.get(code, "unknown code")
            said = shorten(message, 160)
            return SendResult(
                ok=False,
                http_status=status,
                reply=reply,
                error=f"{self.platform} code {code} ({meaning})" + (f": {said}" if said else ""),
                permanent=code in self.permanent_codes,
                retry_after=max(asked or 0.0, self.rate_limit_wait) if limited else asked,
                rate_limited=limited,
            )
        if status != 200:
            return SendResult(
                ok=False,
                http_status=status,
                reply=reply,
                error=f"HTTP {status} from {self.platform}",
                permanent=status in PERMANENT_HTTP,
                retry_after=asked,
                rate_limited=status == 429,
            )
        what = "non-JSON" if answer is None else "JSON without a result code"
        return SendResult(
            ok=False, http_status=status, reply=reply, error=f"{self.platform} answered {what}"
        )

    def close(self) -> None:
        self._poster.close()


def int_code(value: Any) -> int | None:
    """A result code as an int (platforms send numbers; a proxy may send strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value):
        return int(value)  # (not ``isdigit()``: "²" is a digit no int reads)
    return None
