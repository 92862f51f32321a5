"""Slack's Web API (``notify.slack`` with ``bot_token_env`` and ``channel``): ``chat.postMessage``
with a bot token, whose answer names the message, so an incident's messages form one thread.

``POST https://slack.com/api/chat.postMessage`` with ``Authorization: Bearer xoxb-...`` and a
JSON body (``Content-Type: application/json; charset=utf-8``): the webhook's Block Kit payload
(:class:`~mrt_engine.notify.slack.SlackBlocks`) plus ``channel`` (its id), and for a reply
``thread_ts`` (the thread's first message's ``ts``; Slack: "avoid using a reply's ts value; use
its parent instead") and, when set, ``reply_broadcast``. Documented at
https://api.slack.com/methods/chat.postMessage, https://api.slack.com/web (JSON bodies, the bearer
token) and https://api.slack.com/docs/rate-limits.

Answers are HTTP 200 with ``{"ok": true, "channel": "C...", "ts": "1503435956.000247",
"message": {...}}``, or ``{"ok": false, "error": "<code>"}`` (with ``response_metadata.messages``
for some): judged by the robots' mechanism (:class:`~mrt_engine.notify.robot.RobotChannel`, the
code a word here). The message is wrong, dead at once: ``invalid_blocks``, ``msg_too_long``,
``no_text``, ``invalid_arguments`` and the like. An operator must act (a new token, the bot
invited, the channel unarchived), retried with backoff until ``delivery.max_attempts``, as the
webhook's 403/404/410: ``invalid_auth``, ``not_authed``, ``account_inactive``, ``token_revoked``,
``missing_scope``, ``channel_not_found``, ``not_in_channel``, ``is_archived``. Rate limited:
HTTP 429 with ``Retry-After`` and ``ratelimited`` (chat.postMessage allows about one message a
second a channel), retried not before it. Slack's own trouble (HTTP 5xx, ``internal_error``,
``fatal_error``, ``service_unavailable``, ``request_timeout``) is retried.

Threads: the first message sent for an incident (mrt_engine/incidents.py) on this channel starts
its thread; the outbox records its ``ts`` with the send (store table ``incident_thread``) and
hands it to the later messages of the incident (``IncidentNote.thread``), which carry it as
``thread_ts``, after a restart too. A message whose thread is not known yet (the first is still
in flight, or failed) goes to the channel and never waits; the first one recorded becomes the
thread. The sends of a worker's batch are recorded together after the batch, so the channel also
remembers the threads it started itself until then. The token comes only from the environment
variable, is a registered secret (redacted from every error, reply and log line) and is never
stored.
"""

from __future__ import annotations

import re
import threading
from dataclasses import replace
from typing import Any

from mrt_engine.notify._post import Poster, preview_post
from mrt_engine.notify.base import Channel, ChannelContext, Outgoing, SendResult
from mrt_engine.notify.robot import RobotChannel, json_body
from mrt_engine.notify.slack import SlackBlocks, SlackSettings
from mrt_engine.secrets import Secret, shorten

KNOWN_CODES: dict[int | str, str] = {
    # The message: the same bytes fail again.
    "invalid_blocks": "the blocks are invalid",
    "invalid_blocks_format": "the blocks are not a valid JSON array",
    "msg_too_long": "the message text is too long",
    "no_text": "no message text",
    "invalid_arguments": "the method was called with invalid arguments",
    "invalid_arg_name": "an argument's name is invalid",
    "too_many_attachments": "too many attachments",
    "invalid_json": "the body is not valid JSON",
    "json_not_object": "the body is not a JSON object",
    "invalid_post_type": "the Content-Type is not accepted",
    "invalid_charset": "the charset is not accepted",
    "missing_post_type": "no Content-Type",
    # An operator: the token, the app's scopes, the channel.
    "not_authed": "no token sent",
    "invalid_auth": "the token is invalid (or the request's IP is not allowed)",
    "account_inactive": "the token's user or workspace was deleted",
    "token_revoked": "the token was revoked or the app removed",
    "token_expired": "the token expired",
    "missing_scope": "the token lacks the scope chat:write",
    "no_permission": "the token may not post here",
    "channel_not_found": "no such channel (or the bot cannot see it)",
    "not_in_channel": "the bot is not in the channel: invite it",
    "is_archived": "the channel is archived",
    "restricted_action": "a workspace preference prevents posting",
    "restricted_action_read_only_channel": "the channel is read-only",
    "restricted_action_thread_only_channel": "the channel takes thread replies only",
    "restricted_action_non_threadable_channel": "the channel takes no thread replies",
    "ekm_access_denied": "administrators suspended posting",
    "org_login_required": "the workspace is being migrated",
    "team_added_to_org": "the workspace is being migrated",
    # Slack's rate limit and its own trouble.
    "ratelimited": "rate limited",
    "rate_limited": "rate limited",
    "internal_error": "Slack's internal error",
    "fatal_error": "Slack's fatal error",
    "service_unavailable": "Slack is unavailable",
    "request_timeout": "the request timed out at Slack",
}
PERMANENT_CODES = frozenset(
    {
        "invalid_blocks",
        "invalid_blocks_format",
        "msg_too_long",
        "no_text",
        "invalid_arguments",
        "invalid_arg_name",
        "too_many_attachments",
        "invalid_json",
        "json_not_object",
        "invalid_post_type",
        "invalid_charset",
        "missing_post_type",
    }
)
RATE_LIMIT_CODES = frozenset({"ratelimited", "rate_limited"})
# A message's ts as Slack writes it (seconds, a dot, microseconds): anything else in an answer
# is not kept (it would name no message, and it is a stranger's text).
_TS = re.compile(r"[0-9]{1,12}\.[0-9]{1,9}")
MAX_REMEMBERED = 4096  # threads this channel started, kept until recorded (cleared when full)


class SlackApiChannel(SlackBlocks, RobotChannel):
    """``chat.postMessage`` to one channel, an incident's messages in its thread."""

    name = "slack"
    platform = "Slack"
    known_codes = KNOWN_CODES
    permanent_codes = PERMANENT_CODES
    rate_limit_codes = RATE_LIMIT_CODES
    rate_limit_wait = 1.0  # about one message a second a channel

    def __init__(self, settings: SlackSettings, token: Secret, timeout: float) -> None:
        super().__init__("slack", settings.timeout_seconds, timeout)
        assert settings.channel is not None
        self.settings = settings
        self.token = token
        self.channel_id = settings.channel
        self.base = settings.api_base_url
        # The threads this channel started, by incident, until the store has them: a worker
        # records its batch's sends after the batch (see the module's docstring).
        self._started: dict[int, str] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"Slack Web API {self.base}/chat.postMessage to channel {self.channel_id}"

    def endpoint(self) -> str:
        return f"{self.base}/chat.postMessage"

    def headers(self) -> dict[str, str]:
        return {
            "Content-Type": "application/json; charset=utf-8",
            "Authorization": f"Bearer {self.token.reveal()}",
        }

    def thread_of(self, outgoing: Outgoing) -> str | None:
        """The ``ts`` of the thread ``outgoing`` goes into: its incident's on this channel, as
        recorded or as started here; ``None``: to the channel (no incident, or none known)."""
        note = outgoing.context.thread_incident
        if note is None:
            return None
        if note.thread:
            return note.thread
        with self._lock:
            return self._started.get(note.incident_id)

    def request(self, outgoing: Outgoing) -> tuple[str, bytes]:
        """The URL and body of ``outgoing``'s post, into the thread :meth:`thread_of` knows."""
        return self._request(outgoing, self.thread_of(outgoing))

    def _request(self, outgoing: Outgoing, thread: str | None) -> tuple[str, bytes]:
        """The URL and body of ``outgoing``'s post into ``thread`` (``None``: the channel)."""
        payload: dict[str, Any] = {"channel": self.channel_id, **self.payload(outgoing)}
        if thread:
            payload["thread_ts"] = thread
            if self.settings.reply_broadcast:
                payload["reply_broadcast"] = True
        return self.endpoint(), json_body(payload)

    def preview(self, outgoing: Outgoing) -> str:
        """The request :meth:`send` would make, its token redacted."""
        _, body = self.request(outgoing)
        return preview_post(self.describe(), body, {"Authorization": "Bearer ***"})

    def send(self, outgoing: Outgoing) -> SendResult:
        thread = self.thread_of(outgoing)  # decided once: what is sent is what is recorded
        result = self.deliver(*self._request(outgoing, thread))
        note = outgoing.context.thread_incident
        if not result.ok or thread or note is None or not result.message_id:
            return result
        with self._lock:  # this message starts the incident's thread (if the store agrees)
            if len(self._started) >= MAX_REMEMBERED:
                self._started.clear()
            self._started.setdefault(note.incident_id, result.message_id)
        return replace(result, started_thread=True)

    def answer_code(self, answer: dict[str, Any]) -> tuple[int | str | None, str]:
        ok = answer.get("ok")
        if ok is True:
            return 0, ""
        if ok is not False:
            return None, ""
        # Redacted before it is cut (shorten): a secret cut in two is no longer recognised.
        code = shorten(str(answer.get("error") or ""), 80) or "no error code"
        meta = answer.get("response_metadata")
        said = meta.get("messages") if isinstance(meta, dict) else None
        details = "; ".join(m for m in said if isinstance(m, str)) if isinstance(said, list) else ""
        return code, details

    def message_id(self, answer: dict[str, Any]) -> str | None:
        ts = answer.get("ts")
        return ts if isinstance(ts, str) and _TS.fullmatch(ts) else None

    def probe(self, timeout: float) -> SendResult | None:
        """``auth.test``: whether Slack answers and takes the token (no message sent)."""
        poster = Poster(self.platform, timeout, "the probe's timeout")
        try:
            response = poster.post(f"{self.base}/auth.test", b"{}", self.headers())
        finally:
            poster.close()
        if isinstance(response, SendResult):
            return response
        result = self.judge(response.status_code, response.content, response.text)
        if result.ok:
            return replace(
                result, reply=f"auth.test: the token is valid (HTTP {result.http_status})"
            )
        return result


def build_web_api(settings: SlackSettings, ctx: ChannelContext) -> Channel | None:
    """The Web API's channel, its token from ``bot_token_env`` (problems go to the config's
    report, never with the value)."""
    token = ctx.secrets.get(
        settings.bot_token_env,
        where="notify.slack.bot_token_env",
        what="the Slack bot token (xoxb-...)",
        required=True,
    )
    if token is None:
        return None
    return SlackApiChannel(settings, token, ctx.request_timeout)
