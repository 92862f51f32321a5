"""What every channel is: ``send(message) -> SendResult``, plus how a channel registers.

A channel module (one per platform) exposes ``KIND``, a :class:`ChannelKind`, and declares its
platform's length limit at module level, so every limit is visible and tested in one place
(tests/test_templates.py):

* ``MAX_TEXT``: the most characters the platform takes in the message text (WeLink 500), or
  ``None``;
* ``MAX_BYTES``: the most UTF-8 bytes (WeCom 4096, DingTalk 20000), or ``None``.

It renders with ``render(outgoing.context, MAX_TEXT, self.settings, limit_bytes=MAX_BYTES)``
(less what it adds around the text, such as mentions), which cuts at a safe place and keeps the
link, and honours the settings' locale and template.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from mrt_engine.config import Duration, StrictModel
from mrt_engine.notify.message import MessageContext, TemplateError, check_template, render
from mrt_engine.secrets import SecretResolver


@dataclass(frozen=True)
class SendResult:
    """The outcome of one attempt, as it is recorded."""

    ok: bool
    http_status: int | None = None
    reply: str | None = None  # the upstream's answer: a JSON body excerpt, an SMTP reply
    error: str | None = None
    permanent: bool = False  # retrying the same message cannot succeed: dead-letter at once
    # Seconds the platform asked us to wait before the next try (Retry-After, or its documented
    # throttle after a rate-limit code): the retry is not before it (delivery/backoff.py).
    retry_after: float | None = None
    # The platform refused for its rate limit, not for the message: retried however many
    # attempts it took, never dead-lettered for the count.
    rate_limited: bool = False
    # The platform's id of the message it accepted, when its answer names one (Slack's ``ts``).
    message_id: str | None = None
    # This message started its incident's thread on the channel (a channel that threads by
    # ``message_id``, sending an incident's message while no thread of it was known): the
    # outbox records it with the attempt, and later messages of the incident reply to it.
    started_thread: bool = False


@dataclass(frozen=True)
class Outgoing:
    """One delivery to send: its id (stable across retries) and what to say."""

    delivery_id: int
    attempt: int
    context: MessageContext


class Channel(ABC):
    """A configured destination (a WeLink group, a mailing list, ...)."""

    name: str = ""

    @abstractmethod
    def send(self, outgoing: Outgoing) -> SendResult:
        """Try once. Never raises for a failed send: the failure is the result."""

    @abstractmethod
    def describe(self) -> str:
        """Where it sends, safe to show (tokens redacted)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def send_seconds(self) -> float | None:
        """The most one :meth:`send` may take, all of it (its deadline); ``None``: unknown.
        The outbox leases a delivery for at least twice this (engine.py), so a send never
        outlives its lease and is sent again by another worker meanwhile."""
        timeout = getattr(self, "timeout", None)
        return float(timeout) if isinstance(timeout, int | float) else None

    def endpoint(self) -> str | None:
        """The URL this channel posts to, for :meth:`probe` (it may hold a token: never show
        it); ``None`` when it has no single one."""
        return None

    def probe(self, timeout: float) -> SendResult | None:
        """Whether the endpoint answers (connection, TLS, an HTTP answer) without sending a
        message (``mrt-engine doctor --network``); ``None`` when there is nothing to probe."""
        url = self.endpoint()
        if url is None:
            return None
        from mrt_engine.notify._post import probe_http

        return probe_http(url, timeout)

    def preview(self, outgoing: Outgoing) -> str:
        """What :meth:`send` would transmit, as text, without sending (``mrt-engine preview``).

        This default is the message text as the module's ``MAX_TEXT``/``MAX_BYTES`` cut it; a
        channel that wraps it in a payload shows the payload (secrets redacted).
        """
        module = sys.modules[type(self).__module__]
        return render(
            outgoing.context,
            getattr(module, "MAX_TEXT", None),
            getattr(self, "settings", None),
            limit_bytes=getattr(module, "MAX_BYTES", None),
        )


class DigestSettings(StrictModel):
    """``notify.<channel>.digest``: hits below ``below_priority`` are held and sent as one
    message every hour (at minute ``at``'s minutes) or every day at ``at``, local time."""

    every: Literal["hourly", "daily"] = "daily"
    at: str = "09:00"  # HH:MM (hourly: only the minutes count)
    timezone: str = "UTC"  # an IANA zone: "Asia/Shanghai"
    below_priority: int = Field(1, ge=-1000, le=1000)

    @field_validator("at")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        hours, _, minutes = value.partition(":")
        if not (
            hours.isdigit()
            and minutes.isdigit()
            and len(minutes) == 2
            and 0 <= int(hours) < 24
            and 0 <= int(minutes) < 60
        ):
            raise ValueError(f'expected a time of day "HH:MM", got {value!r}')
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(value)
        except Exception:
            raise ValueError(f"unknown time zone {value!r} (an IANA name: Asia/Shanghai)") from None
        return value


class ChannelSettings(StrictModel):
    """What every ``notify.<channel>`` section may set, whatever the platform."""

    locale: Literal["en", "zh"] = "en"  # the fixed words of the built-in template
    template: str | None = None  # Jinja2 source (sandboxed); the built-in one when unset
    # A file holding the template, relative to the config file's directory.
    template_file: str | None = None
    _template_text: str | None = PrivateAttr(None)

    @property
    def message_template(self) -> str | None:
        """The operator's template (``template``, or the text of ``template_file``), if any."""
        return self.template if self.template is not None else self._template_text

    # Routing and less noise (issue 11; mrt_engine/delivery/policy.py). Protected hits (source
    # health, checksum alarms) ignore all of these.
    min_priority: int | None = Field(None, ge=-1000, le=1000)  # lower hits are not routed here
    group_wait_seconds: Duration | None = Field(None, ge=0)  # None: delivery.group_wait_seconds
    group_interval_seconds: Duration | None = Field(None, ge=0)
    # Messages a minute at most; more due at once are folded into one summary. None: the
    # platform's default (its module's DEFAULT_RATE_PER_MINUTE); 0: no limit.
    rate_limit_per_minute: int | None = Field(None, ge=0, le=10_000)
    digest: DigestSettings | None = None

    @field_validator("template")
    @classmethod
    def _template_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_template(value)
            except TemplateError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("template_file")
    @classmethod
    def _template_file_readable(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            _read_template(value, info)
        return value

    @model_validator(mode="after")
    def _one_template(self) -> ChannelSettings:
        if self.template is not None and self.template_file is not None:
            raise ValueError("template and template_file: give one of them, not both")
        return self

    def model_post_init(self, context: Any) -> None:
        # The text read when the file was checked (the validation context: _read_template),
        # or, for settings made without one, the file read from the working directory.
        if self.template_file is not None:
            read = context.get("templates", {}) if isinstance(context, dict) else {}
            text = read.get(self.template_file)
            if text is None:
                text = Path(self.template_file).expanduser().read_text(encoding="utf-8")
            self._template_text = text


def _read_template(value: str, info: ValidationInfo) -> None:
    """Read and check the template file ``value`` (relative to the config's directory, the
    validation context's ``config_dir``); keep its text in the context for the settings.
    Raises ``ValueError`` with what is wrong and the template's line."""
    context = info.context if isinstance(info.context, dict) else {}
    base = context.get("config_dir")
    path = Path(value).expanduser()
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    try:
        check_template(text)
    except TemplateError as exc:
        raise ValueError(f"{path}: {exc}") from None
    context.setdefault("templates", {})[value] = text


@dataclass
class ChannelContext:
    """What a channel needs to build itself."""

    secrets: SecretResolver
    request_timeout: float


@dataclass(frozen=True)
class ChannelKind:
    """A channel type: its config section under ``notify`` and how to build it."""

    name: str
    settings: type[StrictModel]
    build: Callable[[Any, ChannelContext], Channel | None]
