"""Slack (``notify.slack``), with Block Kit blocks: an incoming webhook, or the Web API with a bot
token (``bot_token_env`` and ``channel``; :mod:`mrt_engine.notify.slack_api`), which threads.

``POST <https://hooks.slack.com/services/T.../B.../token>`` with JSON (Slack: "Sending messages
using incoming webhooks", https://api.slack.com/messaging/webhooks; blocks:
https://api.slack.com/reference/block-kit/blocks; text objects and escaping:
https://api.slack.com/reference/surfaces/formatting)::

    {"text": "<mentions> <the rendered text, mrkdwn-escaped>",      # the notification fallback
     "blocks": [
       {"type": "section", "text": {"type": "mrkdwn", "text": "<@U123> <!here>"}},  # if mentions
       {"type": "section", "text": {"type": "plain_text", "text": "<rendered>", "emoji": false}},
       {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text",
         "text": "Open"}, "url": "<the link>"}]}],
     "unfurl_links": false, "unfurl_media": false}

The rendered text (untrusted titles inside) is a ``plain_text`` object, which Slack never parses:
``<!channel>``, ``<http://evil|x>`` or ``*bold*`` in a title stay characters. The fallback
``text`` is mrkdwn, so ``&``, ``<`` and ``>`` are escaped there as Slack requires (no link or
mention can form), and ``* _ ~ ` ``, which Slack has no escape for, are shown full-width
(:func:`escape_mrkdwn`). Mentions come only from the config (``mentions: ["U123", "here"]`` becomes
``<@U123> <!here>``) and are checked to be ids or ``here``/``channel``/``everyone``. A section's
text is at most 3,000 characters (counted as UTF-16 units, as Slack's API counts): the message is
cut there by :func:`~mrt_engine.notify.message.render`, which keeps the link; the link is also a
button (when it is an http(s) URL of at most 3,000 characters) and previews are off.

Answers: 200 ``ok`` is success. Errors are a status and a plain-text code. The message itself is
wrong, so the delivery is dead at once (permanent): 400 ``invalid_payload``, ``no_text``,
``invalid_blocks``, ``invalid_blocks_format``, ``too_many_attachments``, ``user_not_found`` (and
any other 400), 413. The destination needs an operator (a new webhook URL, an unarchived
channel), so they are retried with backoff until ``delivery.max_attempts``, like WeLink's robot
errors: 403 ``invalid_token``, ``action_prohibited``, ``posting_to_general_channel_denied``; 404
``channel_not_found``, ``no_service``, ``no_team``; 410 ``channel_is_archived``,
``team_disabled``. 429 (``rate_limited``, about one message a second per webhook) and 5xx
(``rollup_error``) are retried, not before a ``Retry-After`` (recorded with the error).

Threads: a message of an incident (one model family across sources) belongs in the thread of
the incident's first message, which a payload names by ``thread_ts``, the first message's ``ts``.
An incoming webhook answers ``ok`` and nothing else (no ``ts``), so a webhook cannot thread: it
posts each message in the channel, and the message's incident line ("3rd source for
DeepSeek-V3.2: first seen on HuggingFace (deepseek-ai) 2 h ago") says where it belongs. The Web
API's ``chat.postMessage`` answers the ``ts``: with ``bot_token_env`` the messages of an
incident go into its thread (:mod:`mrt_engine.notify.slack_api`).
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from mrt_engine.config import Wait
from mrt_engine.notify._post import Poster, preview_post, resolve_url, retry_after, wait_asked
from mrt_engine.notify.base import (
    Channel,
    ChannelContext,
    ChannelKind,
    ChannelSettings,
    Outgoing,
    SendResult,
)
from mrt_engine.notify.locales import label
from mrt_engine.notify.markup import full_width, link_target
from mrt_engine.notify.message import render
from mrt_engine.secrets import Secret, register, shorten
from mrt_engine.text import clean_line

MAX_SECTION = 3000  # characters of a section block's text
# The message text: one section block (see base.py for the convention).
MAX_TEXT = MAX_SECTION
MAX_BYTES = None
MAX_BUTTON_URL = 3000
MAX_MENTIONS = 20
SPECIAL_MENTIONS = {"here", "channel", "everyone"}
# Member (U/W) and user group (S) ids: upper-case letters and digits.
_ID = re.compile(r"[UWS][A-Z0-9]{2,20}")
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,20}")
PERMANENT_STATUSES = {400, 413}


class SlackSettings(ChannelSettings):
    """``notify.slack``: an incoming webhook (``webhook_env``), or the Web API with a bot token
    (``bot_token_env`` and ``channel``), not both."""

    webhook_env: str = "SLACK_WEBHOOK_URL"
    # The Web API's way: the variable holding a bot token (xoxb-..., scope chat:write) and the
    # channel's id (C..., G... or D...: a thread is kept by it; the bot must be in the channel).
    bot_token_env: str | None = None
    channel: str | None = None
    # Replies in an incident's thread are also shown in the channel (Slack's reply_broadcast).
    reply_broadcast: bool = False
    api_base_url: str = "https://slack.com/api"
    mentions: list[str] = Field(default_factory=list)  # "U0123ABC", "S0456DEF" (a group), "here"
    # The link button's label; by default the locale's word ("Open", "打开").
    button_text: str | None = Field(None, min_length=1, max_length=75)
    timeout_seconds: Wait | None = Field(None, gt=0, le=120)

    @field_validator("channel")
    @classmethod
    def _channel_id(cls, value: str | None) -> str | None:
        if value is not None and not _CHANNEL_ID.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a Slack channel id (C..., G... or D...: in Slack, the"
                " channel's details show it)"
            )
        return value

    @field_validator("api_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_way(self) -> SlackSettings:
        if self.bot_token_env is not None:
            if "webhook_env" in self.model_fields_set:
                raise ValueError("webhook_env and bot_token_env: give one of them, not both")
            if self.channel is None:
                raise ValueError("channel: required with bot_token_env (the channel's id)")
        else:
            for name in ("channel", "reply_broadcast"):
                if name in self.model_fields_set and getattr(self, name):
                    raise ValueError(
                        f"{name}: only with bot_token_env (an incoming webhook posts to its own"
                        " channel and cannot thread)"
                    )
        return self

    @field_validator("mentions")
    @classmethod
    def _ids_or_special(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_MENTIONS:
            raise ValueError(f"at most {MAX_MENTIONS} mentions, got {len(value)}")
        for mention in value:
            if mention not in SPECIAL_MENTIONS and not _ID.fullmatch(mention):
                raise ValueError(
                    f"{mention!r} is not a Slack member id (U.../W...), user group id (S...),"
                    " or one of here, channel, everyone"
                )
        return value


def escape_mrkdwn(text: str, url: str = "") -> str:
    """``text`` inert in a mrkdwn string: Slack's three control characters as the entities it
    decodes, and its formatting characters, which have no escape, full-width (markup.py;
    an underscore inside a word stays). ``url``, the message's link, keeps its characters
    (but for the entities), so that it still links."""

    def entities(piece: str) -> str:
        return piece.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    def inert(piece: str) -> str:
        return full_width(entities(piece), "*_~`")

    if not url or link_target(url) is None or any(c.isspace() for c in url):
        return inert(text)  # not an http(s) URL: text like the rest
    return entities(url).join(inert(piece) for piece in text.split(url))


def mention_token(mention: str) -> str:
    """``U123`` -> ``<@U123>``, ``S123`` -> ``<!subteam^S123>``, ``here`` -> ``<!here>``."""
    if mention in SPECIAL_MENTIONS:
        return f"<!{mention}>"
    if mention.startswith("S"):
        return f"<!subteam^{mention}>"
    return f"<@{mention}>"


def slack_length(text: str) -> int:
    """Characters as Slack counts them (UTF-16 code units: an emoji may be two)."""
    return len(text.encode("utf-16-le")) // 2


class SlackBlocks:
    """The Block Kit message, the same whichever way it is sent (webhook or Web API)."""

    settings: SlackSettings

    def text(self, outgoing: Outgoing) -> str:
        """The rendered message, at most one section's worth as Slack counts it."""
        limit = MAX_SECTION
        text = render(outgoing.context, limit, self.settings)
        while slack_length(text) > MAX_SECTION and limit > 1:
            limit -= max(slack_length(text) - MAX_SECTION, 1)
            text = render(outgoing.context, limit, self.settings)
        return text or "(empty)"

    def button_text(self) -> str:
        """The link button's label: the configured one, else the locale's word."""
        return self.settings.button_text or label("open", self.settings.locale)

    def payload(self, outgoing: Outgoing) -> dict:
        text = self.text(outgoing)
        mentions = " ".join(mention_token(m) for m in self.settings.mentions)
        blocks: list[dict] = []
        if mentions:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": mentions}})
        blocks.append(
            {"type": "section", "text": {"type": "plain_text", "text": text, "emoji": False}}
        )
        url = clean_line(outgoing.context.url)
        parts = urlsplit(url) if url else None
        if (
            parts
            and parts.scheme in ("http", "https")
            and parts.netloc
            and len(url) <= MAX_BUTTON_URL
        ):
            button = {
                "type": "button",
                "text": {"type": "plain_text", "text": self.button_text(), "emoji": False},
                "url": url,
            }
            blocks.append({"type": "actions", "elements": [button]})
        fallback = escape_mrkdwn(text, url)
        return {
            "text": f"{mentions} {fallback}" if mentions else fallback,
            "blocks": blocks,
            "unfurl_links": False,
            "unfurl_media": False,
        }


class SlackChannel(SlackBlocks, Channel):
    """An incoming webhook: posts each message in its channel (no thread: see above)."""

    name = "slack"

    def __init__(self, settings: SlackSettings, webhook: Secret, timeout: float) -> None:
        self.settings = settings
        self.webhook = webhook
        key_name = "notify.slack.timeout_seconds" if settings.timeout_seconds else None
        self.timeout = settings.timeout_seconds or timeout  # a whole send's deadline
        self.poster = Poster(
            "Slack",
            self.timeout,
            key_name or "delivery.request_timeout_seconds",
        )

    def describe(self) -> str:
        parts = urlsplit(self.webhook.reveal())
        return f"Slack incoming webhook {parts.scheme}://{parts.hostname}/***"

    def endpoint(self) -> str:
        return self.webhook.reveal()

    def preview(self, outgoing: Outgoing) -> str:
        """The Block Kit payload :meth:`send` would post (the webhook redacted)."""
        body = json.dumps(self.payload(outgoing), ensure_ascii=False).encode("utf-8")
        return preview_post(self.describe(), body)

    def send(self, outgoing: Outgoing) -> SendResult:
        body = json.dumps(self.payload(outgoing), ensure_ascii=False).encode("utf-8")
        response = self.poster.post(
            self.webhook.reveal(), body, {"Content-Type": "application/json; charset=utf-8"}
        )
        if isinstance(response, SendResult):
            return response
        status = response.status_code
        reply = shorten(response.text, 300)
        if status == 200:
            return SendResult(ok=True, http_status=status, reply=reply)
        code = shorten(response.text, 80) or "no body"
        return SendResult(
            ok=False,
            http_status=status,
            reply=reply,
            error=f"HTTP {status} from Slack: {code}{retry_after(response)}",
            permanent=status in PERMANENT_STATUSES,
            retry_after=wait_asked(response),
            rate_limited=status == 429,
        )

    def close(self) -> None:
        self.poster.close()


def build(settings: SlackSettings, ctx: ChannelContext) -> Channel | None:
    if settings.bot_token_env is not None:
        from mrt_engine.notify.slack_api import build_web_api  # (it builds on this module)

        return build_web_api(settings, ctx)
    webhook, usable = resolve_url(
        ctx, "notify.slack.webhook_env", settings.webhook_env, "the Slack incoming webhook URL"
    )
    if webhook is None or not usable:
        return None
    parts = urlsplit(webhook.reveal())
    # The URL's last path segment is its token: redacted wherever it shows alone (a request
    # line echoed back, an error naming the path).
    token = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if len(token) >= 8:
        register(token)
    return SlackChannel(settings, webhook, ctx.request_timeout)


KIND = ChannelKind(name="slack", settings=SlackSettings, build=build)
