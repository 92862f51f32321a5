"""What every channel is: ``send(message) -> SendResult``, plus how a channel registers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator

from mrt_engine.config import Duration, StrictModel
from mrt_engine.notify.message import MessageContext, TemplateError, compile_template
from mrt_engine.secrets import SecretResolver


@dataclass(frozen=True)
class SendResult:
    """The outcome of one attempt, as it is recorded."""

    ok: bool
    http_status: int | None = None
    reply: str | None = None  # the upstream's answer: a JSON body excerpt, an SMTP reply
    error: str | None = None
    permanent: bool = False  # retrying the same message cannot succeed: dead-letter at once


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

    template: str | None = None  # Jinja2 source (sandboxed); the built-in one when unset
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
                compile_template(value)
            except TemplateError as exc:
                raise ValueError(str(exc)) from None
        return value


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
