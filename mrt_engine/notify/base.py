"""What every channel is: ``send(message) -> SendResult``, plus how a channel registers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import field_validator

from mrt_engine.config import StrictModel
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


class ChannelSettings(StrictModel):
    """What every ``notify.<channel>`` section may set, whatever the platform."""

    template: str | None = None  # Jinja2 source (sandboxed); the built-in one when unset

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
