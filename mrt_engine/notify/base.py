"""What every channel is: ``send(message) -> SendResult``, plus how a channel registers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mrt_engine.config import StrictModel
from mrt_engine.notify.message import MessageContext
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
