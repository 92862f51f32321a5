"""What the group-robot simulators (Feishu, DingTalk, WeCom) share: accepted messages, refused
ones with the code they got, error codes answered on demand, and the platform's rate limit."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

from mrt_engine.simulators.base import Response, Simulator


@dataclass
class Received:
    """An accepted message: its text as a reader sees it, and the whole body."""

    text: str
    payload: dict[str, Any]
    at: float


class RobotSimulator(Simulator):
    """Subclasses route their path, validate, and name their codes in ``MESSAGES``."""

    MESSAGES: ClassVar[dict[int, str]] = {}
    RATE_LIMITED = 0  # the code a platform answers over its rate limit

    def __init__(self, *, token: str, rate_per_minute: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.token = token
        self.rate_per_minute = rate_per_minute
        self.messages: list[Received] = []
        self.rejected: list[tuple[int, dict[str, Any] | None]] = []
        self._fail_next: deque[int] = deque()
        self._sent_at: deque[float] = deque()

    def texts(self) -> list[str]:
        with self.lock:
            return [m.text for m in self.messages]

    def fail_next(self, code: int, times: int = 1) -> None:
        """Answer the next ``times`` valid requests with error ``code`` and its real message."""
        with self.lock:
            self._fail_next.extend([code] * times)

    def body(self, code: int, message: str) -> dict[str, Any]:
        """The platform's answer for ``code`` (0: success)."""
        raise NotImplementedError

    def error(self, code: int, payload: dict[str, Any] | None, detail: str = "") -> Response:
        with self.lock:
            self.rejected.append((code, payload))
        return Response.json(self.body(code, detail or self.MESSAGES.get(code, "error")))

    def accept(self, text: str, payload: dict[str, Any]) -> Response:
        """The answer to a valid message: a queued failure, the rate limit, or success."""
        with self.lock:
            if self._fail_next:
                code = self._fail_next.popleft()
            elif self._over_rate():
                code = self.RATE_LIMITED
            else:
                self._sent_at.append(time.monotonic())
                self.messages.append(Received(text, payload, time.time()))
                return Response.json(self.body(0, ""))
        return self.error(code, payload)

    def _over_rate(self) -> bool:
        if self.rate_per_minute is None:
            return False
        now = time.monotonic()
        while self._sent_at and now - self._sent_at[0] >= 60:
            self._sent_at.popleft()
        return len(self._sent_at) >= self.rate_per_minute


def within_an_hour(stamp_seconds: float) -> bool:
    """Feishu and DingTalk refuse a signature timestamp more than an hour from their clock."""
    return abs(time.time() - stamp_seconds) <= 3600
