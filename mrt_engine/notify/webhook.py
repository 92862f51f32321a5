"""Generic webhook: a JSON POST signed the Standard Webhooks way (``notify.webhook``).

Standard Webhooks 1.0.0 (https://www.standardwebhooks.com, spec/standard-webhooks.md in
github.com/standard-webhooks/standard-webhooks). Every attempt carries three headers:

* ``webhook-id``: ``msg_<delivery id>_<first 16 hex of the event's fingerprint>``, the same on
  every retry of one delivery (a receiver's idempotency key) and never reused by another
  delivery, even of another store (no ``.`` in it, as the spec requires);
* ``webhook-timestamp``: this attempt's time, integer Unix seconds (a receiver rejects old ones:
  replays);
* ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``, keyed with the
  secret, given as the spec serialises it: ``whsec_`` then the base64 of 24 to 64 random bytes
  (``python -c "import base64,os; print('whsec_' + base64.b64encode(os.urandom(32)).decode())"``).

The body, compact UTF-8 JSON, signed exactly as sent (schema ``mrt.alert``, version 1; fields
are only ever added)::

    {"type": "mrt.alert",
     "timestamp": "<ISO 8601 UTC: when the event occurred, else this attempt's time>",
     "data": {"version": 1, "delivery_id": 12, "fingerprint": "<sha256 hex>",
              "source_key": "github:vllm-project/vllm:issues", "event_type": "issue_opened",
              "resource_id": "vllm-project/vllm", "title": "...", "url": "https://...",
              "author": "...", "labels": ["..."], "summary": "...",
              "rules": ["deepseek"], "reasons": ["keyword \\"deepseek\\" in title"],
              "tags": ["..."], "priority": 0, "occurred_at": "<ISO 8601 or null>",
              "fields": {"<platform key field>": "..."},
              "text": "<the message as rendered for this channel>"}}

Untrusted strings are cleaned of control characters and cut (``title`` 1,000 characters,
``summary`` 2,000, ``text`` 4,000 with the link kept) so a body stays well under the spec's
recommended 20 KB; ``url`` is never cut.

Answers (the spec's "Delivery success and failure"): 2xx is success. 408 and 429 are retried,
like 5xx, 3xx (redirects are not followed) and network errors; every other 4xx is permanent (the
receiver refuses this message: 400, 401, 403, 404, 410 Gone, 413, 422...), so the delivery goes
to the dead letter at once, where it can be requeued after the receiver is fixed. A
``Retry-After`` is recorded with the error, and the retry is not before it (held to an hour).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

from pydantic import Field

from mrt_engine import __version__
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
from mrt_engine.notify.message import MessageContext, render
from mrt_engine.secrets import Secret, redact_url, register, shorten
from mrt_engine.text import clean, clean_line, excerpt

SCHEMA_VERSION = 1
EVENT_TYPE = "mrt.alert"
SECRET_PREFIX = "whsec_"
MAX_TITLE = 1000
MAX_SUMMARY = 2000
MAX_TEXT = 4000
MAX_BYTES = None
# The spec: a symmetric secret is 24 to 64 random bytes.
KEY_BYTES = (24, 64)
RETRIED_4XX = {408, 429}
# What every attempt carries besides its signature (prepared once, by the channel's Poster).
HEADERS = {
    "Content-Type": "application/json",
    "User-Agent": f"model-release-tracker/{__version__}",
}


class WebhookSettings(ChannelSettings):
    """``notify.webhook``."""

    url_env: str = "WEBHOOK_URL"
    secret_env: str = "WEBHOOK_SECRET"
    timeout_seconds: Wait | None = Field(None, gt=0, le=120)


class SecretFormatError(ValueError):
    """A signing secret that is not ``whsec_`` + base64 of 24..64 bytes (its value not shown)."""


def signing_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: the bytes after ``whsec_``, base64-decoded."""
    encoded = secret.strip()
    if encoded.startswith(SECRET_PREFIX):
        encoded = encoded[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SecretFormatError("is not whsec_ followed by base64") from None
    if not KEY_BYTES[0] <= len(key) <= KEY_BYTES[1]:
        raise SecretFormatError(
            f"holds {len(key)} bytes; Standard Webhooks secrets are {KEY_BYTES[0]} to"
            f" {KEY_BYTES[1]} random bytes"
        )
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    signed = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def message_id(outgoing: Outgoing) -> str:
    """The delivery's ``webhook-id``: stable across its retries, unique across stores."""
    fingerprint = outgoing.context.fingerprint
    # A stored fingerprint is hex: its first 16 characters, without walking it character by
    # character on every send; anything else keeps only its letters and digits.
    fingerprint = (
        fingerprint[:16]
        if fingerprint[:16].isalnum()
        else "".join(c for c in fingerprint if c.isalnum())[:16]
    )
    return (
        f"msg_{outgoing.delivery_id}_{fingerprint}"
        if fingerprint
        else f"msg_{outgoing.delivery_id}"
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def payload(outgoing: Outgoing, text: str, now: datetime) -> dict:
    """The JSON body of one delivery (the schema in this module's docstring)."""
    ctx: MessageContext = outgoing.context
    occurred = _iso(ctx.occurred_at) if ctx.occurred_at else None
    return {
        "type": EVENT_TYPE,
        "timestamp": occurred or _iso(now),
        "data": {
            "version": SCHEMA_VERSION,
            "delivery_id": outgoing.delivery_id,
            "fingerprint": ctx.fingerprint,
            "source_key": ctx.source_key,
            "event_type": ctx.event_type,
            "resource_id": clean_line(ctx.resource_id),
            "title": excerpt(ctx.title, MAX_TITLE),
            "url": clean_line(ctx.url),
            "author": clean_line(ctx.author),
            "labels": [excerpt(label, 200) for label in ctx.labels[:100]],
            "summary": excerpt(ctx.summary, MAX_SUMMARY),
            "rules": list(ctx.rules),
            "reasons": [clean_line(r) for r in ctx.reasons],
            "tags": list(ctx.tags),
            "priority": ctx.priority,
            "occurred_at": occurred,
            "fields": {clean_line(k): clean(v) for k, v in ctx.extra.items()},
            "text": text,
        },
    }


class WebhookChannel(Channel):
    name = "webhook"

    def __init__(self, settings: WebhookSettings, url: Secret, key: bytes, timeout: float) -> None:
        self.settings = settings
        self.url = url
        self._key = key
        key_name = "notify.webhook.timeout_seconds" if settings.timeout_seconds else None
        self.timeout = settings.timeout_seconds or timeout  # a whole send's deadline
        self.poster = Poster(
            "the webhook",
            self.timeout,
            key_name or "delivery.request_timeout_seconds",
            HEADERS,
        )

    def describe(self) -> str:
        return f"webhook {redact_url(self.url.reveal())} (Standard Webhooks signature)"

    def endpoint(self) -> str:
        return self.url.reveal()

    def request(self, outgoing: Outgoing, now: float | None = None) -> tuple[bytes, dict[str, str]]:
        """The body and headers of one attempt at ``now`` (Unix seconds; default: the time)."""
        body, signed = self._signed(outgoing, now)
        return body, {**HEADERS, **signed}

    def _signed(self, outgoing: Outgoing, now: float | None) -> tuple[bytes, dict[str, str]]:
        """The body of one attempt and the headers only it carries (its id and signature)."""
        stamp = int(time.time() if now is None else now)
        text = render(outgoing.context, MAX_TEXT, self.settings)
        body = json.dumps(
            payload(outgoing, text, datetime.fromtimestamp(stamp, UTC)),
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8")
        msg_id = message_id(outgoing)
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(self._key, msg_id, stamp, body),
        }
        return body, headers

    def preview(self, outgoing: Outgoing) -> str:
        """The body and signed headers :meth:`send` would post now (the URL redacted)."""
        body, headers = self.request(outgoing)
        return preview_post(self.describe(), body, headers)

    def send(self, outgoing: Outgoing) -> SendResult:
        body, headers = self._signed(outgoing, None)  # the poster adds HEADERS
        response = self.poster.post(self.url.reveal(), body, headers)
        if isinstance(response, SendResult):
            return response
        status = response.status_code
        reply = shorten(response.text, 300)
        if 200 <= status < 300:
            return SendResult(ok=True, http_status=status, reply=reply)
        return SendResult(
            ok=False,
            http_status=status,
            reply=reply,
            error=f"HTTP {status} from the webhook{retry_after(response)}",
            permanent=400 <= status < 500 and status not in RETRIED_4XX,
            retry_after=wait_asked(response),
            rate_limited=status == 429,
        )

    def close(self) -> None:
        self.poster.close()


def build(settings: WebhookSettings, ctx: ChannelContext) -> Channel | None:
    url, usable = resolve_url(
        ctx, "notify.webhook.url_env", settings.url_env, "the URL the webhook is POSTed to"
    )
    secret = ctx.secrets.get(
        settings.secret_env,
        where="notify.webhook.secret_env",
        what="the Standard Webhooks signing secret (whsec_...)",
        required=True,
    )
    if url is None or not usable or secret is None:
        return None
    try:
        key = signing_key(secret.reveal())
    except SecretFormatError as exc:
        ctx.secrets.errors.append(
            f"notify.webhook.secret_env: {settings.secret_env} {exc} (value not shown); make one"
            " with: python -c \"import base64,os; print('whsec_' +"
            ' base64.b64encode(os.urandom(32)).decode())"'
        )
        return None
    # The key's base64 without the prefix is the secret too (a receiver's config shows it so).
    register(secret.reveal().removeprefix(SECRET_PREFIX))
    return WebhookChannel(settings, url, key, ctx.request_timeout)


KIND = ChannelKind(name="webhook", settings=WebhookSettings, build=build)
