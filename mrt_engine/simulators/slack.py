"""A Slack simulator: incoming webhooks and the Web API's ``chat.postMessage``, checking a message
as Slack does and answering Slack's bodies.

From https://api.slack.com/messaging/webhooks ("Handling errors") and the Block Kit reference
(https://api.slack.com/reference/block-kit/blocks, .../block-elements, .../composition-objects):
the URL's token (403 ``invalid_token``) and service (404 ``no_service``), a JSON body (400
``invalid_payload``), ``text`` or ``blocks`` (400 ``no_text``), and every block within Slack's
limits (400 ``invalid_blocks``): at most 50 blocks; a section's text object ``plain_text`` or
``mrkdwn`` of 1..3000 characters; a header's ``plain_text`` of 1..150; an actions block of
1..25 elements, a button's ``plain_text`` label of 1..75 and ``url`` of at most 3000. Success is
``200 ok`` (``text/html``). Channel states answer their codes: ``archived`` (410
``channel_is_archived``), ``prohibited`` (403 ``action_prohibited``).

What Slack would turn into a link or a mention is what a mrkdwn string holds between ``<`` and
``>``; :meth:`SlackSimulator.markup` lists those of every accepted message, so tests can check
that only the configured mentions and no link from event text got through.

The Web API (https://api.slack.com/methods/chat.postMessage, https://api.slack.com/web,
https://api.slack.com/docs/rate-limits): ``POST /api/chat.postMessage`` with a JSON body and
``Authorization: Bearer <bot token>`` answers HTTP 200 and ``{"ok": true, "channel": ..., "ts":
..., "message": {...}}``, or ``{"ok": false, "error": "<code>"}``: ``not_authed`` (no token),
``invalid_auth`` (a wrong one), ``invalid_json``, ``channel_not_found``, ``no_text``,
``invalid_blocks``, ``msg_too_long`` (text over 40,000 characters), ``is_archived`` and
``not_in_channel`` (the channel's states), or any code queued in ``api_errors``; ``ratelimited``
is HTTP 429 with ``Retry-After``. Every accepted post gets a new, larger ``ts``; its
``thread_ts`` (a reply) and ``reply_broadcast`` are recorded. ``POST /api/auth.test`` answers who
the token is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mrt_engine.simulators.base import Request, Response, Simulator

TEAM, SERVICE = "T0SIMTEAM", "B0SIMHOOK"
API_CHANNEL, BOT_USER, BOT_ID = "C0SIMALERTS", "U0SIMBOT", "B0SIMBOT"
MAX_API_TEXT = 40_000  # chat.postMessage's ``text``: "no more than 40,000 characters"
_MARKUP = re.compile(r"<([^<>]*)>")


@dataclass
class Posted:
    payload: dict[str, Any]
    body: bytes
    ts: str | None = None  # the Web API's id of the message (webhooks have none)

    @property
    def thread_ts(self) -> str | None:
        """The ``ts`` of the message this one replies to, if it went into a thread."""
        value = self.payload.get("thread_ts")
        return value if isinstance(value, str) else None


def slack_length(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


class SlackSimulator(Simulator):
    """Accepted messages land in ``messages``."""

    def __init__(
        self,
        *,
        token: str = "sim-slack-token-0001",
        bot_token: str = "xoxb-sim-0001-bot-token",
        channel_id: str = API_CHANNEL,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.token = token
        self.bot_token = bot_token
        self.channel_id = channel_id
        self.archived = False
        self.prohibited = False
        self.not_in_channel = False  # the bot was never invited (Web API: not_in_channel)
        self.messages: list[Posted] = []
        self.refused: list[tuple[int, str]] = []
        # Web API error codes the next posts are answered with, in order (then checks again).
        self.api_errors: list[str] = []
        self.retry_after = 30  # seconds, in a ``ratelimited`` answer's Retry-After
        self._posts = 0
        self.route("POST", r"/services/([^/]+)/([^/]+)/([^/]+)", self._post)
        self.route("POST", r"/api/chat\.postMessage", self._api_post)
        self.route("POST", r"/api/auth\.test", self._auth_test)

    @property
    def api_url(self) -> str:
        """The Web API's base (``https://slack.com/api`` on Slack)."""
        return f"{self.url}/api"

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/services/{TEAM}/{SERVICE}/{self.token}"

    def markup(self) -> list[str]:
        """Every ``<...>`` sequence Slack would parse in the accepted messages' mrkdwn."""
        found = []
        with self.lock:
            for message in self.messages:
                for text in _mrkdwn_strings(message.payload):
                    found.extend(_MARKUP.findall(text))
        return found

    def _error(self, status: int, code: str) -> Response:
        with self.lock:
            self.refused.append((status, code))
        return Response(status, code.encode(), {"Content-Type": "text/html"})

    def _post(self, request: Request, match: re.Match[str]) -> Response:
        team, service, token = match.groups()
        if (team, service) != (TEAM, SERVICE):
            return self._error(404, "no_service")
        if token != self.token:
            return self._error(403, "invalid_token")
        if not request.headers.get("content-type", "").startswith("application/json"):
            return self._error(400, "invalid_payload")
        try:
            payload = request.json()
        except ValueError:
            return self._error(400, "invalid_payload")
        if not isinstance(payload, dict):
            return self._error(400, "invalid_payload")
        if not payload.get("text") and not payload.get("blocks"):
            return self._error(400, "no_text")
        if "text" in payload and not isinstance(payload["text"], str):
            return self._error(400, "invalid_payload")
        if "blocks" in payload and _blocks_problem(payload["blocks"]):
            return self._error(400, "invalid_blocks")
        if self.archived:
            return self._error(410, "channel_is_archived")
        if self.prohibited:
            return self._error(403, "action_prohibited")
        with self.lock:
            self.messages.append(Posted(payload, request.body))
        return Response(200, b"ok", {"Content-Type": "text/html"})

    # ------------------------------------------------------------------ the Web API
    def _api_error(self, code: str) -> Response:
        with self.lock:
            self.refused.append((200, code))
        if code == "ratelimited":
            return Response.json(
                {"ok": False, "error": code}, 429, {"Retry-After": str(self.retry_after)}
            )
        return Response.json({"ok": False, "error": code})

    def _authorized(self, request: Request) -> str | None:
        """The error code of the request's bearer token, or ``None`` when it is the bot's."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "not_authed"
        return None if token.strip() == self.bot_token else "invalid_auth"

    def _api_post(self, request: Request, match: re.Match[str]) -> Response:
        problem = self._authorized(request)
        if problem:
            return self._api_error(problem)
        if not request.headers.get("content-type", "").startswith("application/json"):
            return self._api_error("invalid_post_type")
        try:
            payload = request.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return self._api_error("invalid_json")
        with self.lock:
            queued = self.api_errors.pop(0) if self.api_errors else None
        if queued:
            return self._api_error(queued)
        if payload.get("channel") != self.channel_id:
            return self._api_error("channel_not_found")
        text = payload.get("text")
        if not text and not payload.get("blocks"):
            return self._api_error("no_text")
        if text is not None and not isinstance(text, str):
            return self._api_error("invalid_arguments")
        if isinstance(text, str) and slack_length(text) > MAX_API_TEXT:
            return self._api_error("msg_too_long")
        if "blocks" in payload and _blocks_problem(payload["blocks"]):
            return self._api_error("invalid_blocks")
        thread = payload.get("thread_ts")
        if thread is not None and not isinstance(thread, str):
            return self._api_error("invalid_arguments")
        if self.archived:
            return self._api_error("is_archived")
        if self.not_in_channel:
            return self._api_error("not_in_channel")
        with self.lock:
            self._posts += 1
            ts = f"1712345678.{self._posts * 100:06d}"  # seconds.micro, each post later
            self.messages.append(Posted(payload, request.body, ts))
        message = {
            "type": "message",
            "subtype": "bot_message",
            "text": text or "",
            "bot_id": BOT_ID,
            "ts": ts,
            **({"thread_ts": thread} if thread else {}),
        }
        return Response.json({"ok": True, "channel": self.channel_id, "ts": ts, "message": message})

    def _auth_test(self, request: Request, match: re.Match[str]) -> Response:
        problem = self._authorized(request)
        if problem:
            return self._api_error(problem)
        return Response.json(
            {
                "ok": True,
                "url": "https://simteam.slack.com/",
                "team": "Sim Team",
                "user": "mrt",
                "team_id": TEAM,
                "user_id": BOT_USER,
                "bot_id": BOT_ID,
            }
        )


def _text_object(obj: Any, *, kinds: tuple[str, ...], most: int) -> bool:
    """Whether ``obj`` is a valid text object of one of ``kinds`` and 1..``most`` characters."""
    return (
        isinstance(obj, dict)
        and obj.get("type") in kinds
        and isinstance(obj.get("text"), str)
        and 1 <= slack_length(obj["text"]) <= most
        and (obj.get("type") == "plain_text" or "emoji" not in obj)
    )


def _blocks_problem(blocks: Any) -> str | None:
    """What Slack would refuse in ``blocks``, or ``None``."""
    if not isinstance(blocks, list) or not 1 <= len(blocks) <= 50:
        return "blocks must be a list of 1..50"
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "section":
            if not _text_object(block.get("text"), kinds=("plain_text", "mrkdwn"), most=3000):
                return "section text"
        elif kind == "header":
            if not _text_object(block.get("text"), kinds=("plain_text",), most=150):
                return "header text"
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
                return "actions elements"
            for element in elements:
                if not isinstance(element, dict) or element.get("type") != "button":
                    return "element type"
                if not _text_object(element.get("text"), kinds=("plain_text",), most=75):
                    return "button text"
                url = element.get("url")
                if url is not None and (
                    not isinstance(url, str) or not re.match(r"https?://", url) or len(url) > 3000
                ):
                    return "button url"
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                return "context elements"
        elif kind != "divider":
            return f"unknown block type {kind!r}"
    return None


def _mrkdwn_strings(payload: dict[str, Any]) -> list[str]:
    """The strings of a message that Slack parses as mrkdwn: ``text`` and mrkdwn objects."""
    found = [payload["text"]] if isinstance(payload.get("text"), str) else []
    for block in payload.get("blocks") or []:
        objects = [block.get("text"), *(block.get("elements") or [])]
        found.extend(
            o["text"] for o in objects if isinstance(o, dict) and o.get("type") == "mrkdwn"
        )
    return found
