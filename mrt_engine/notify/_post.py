"""One POST of a channel's message, bounded as a whole (every HTTP channel sends through it).

The timeout is also the most one whole send may take (see :mod:`mrt_engine.http_deadline`): a
reply trickled a byte at a time would otherwise hold a delivery worker for ever. A failure to
get an answer is a :class:`SendResult` (never an exception), its text free of secrets.
"""

from __future__ import annotations

import time

import httpx

from mrt_engine.http_deadline import Deadline, DeadlineBackend, install, within
from mrt_engine.notify.base import SendResult
from mrt_engine.secrets import redact
from mrt_engine.text import clean_line


class Poster:
    """An HTTP client for one channel: ``post`` answers a response or a failed ``SendResult``."""

    def __init__(self, platform: str, timeout: float, timeout_key: str) -> None:
        self.platform = platform
        self.timeout = timeout
        self.timeout_key = timeout_key  # the setting to name when the deadline passes
        self._client = httpx.Client(timeout=timeout)
        install(self._client, DeadlineBackend())

    def post(
        self, url: str, content: bytes, headers: dict[str, str]
    ) -> httpx.Response | SendResult:
        """POST ``content``; the response whatever its status, or why there was none."""
        deadline = Deadline(time.monotonic() + self.timeout)
        try:
            with within(deadline):
                return self._client.post(url, content=content, headers=headers)
        except httpx.HTTPError as exc:
            if deadline.passed:
                return SendResult(
                    ok=False,
                    error=f"no complete answer from {self.platform} within {self.timeout:g}s"
                    f" ({self.timeout_key})",
                )
            return SendResult(ok=False, error=redact(f"{type(exc).__name__}: {exc}"))

    def close(self) -> None:
        self._client.close()


def retry_after(response: httpx.Response) -> str:
    """`` (Retry-After: N)`` when the answer asks the sender to wait, for the recorded error."""
    value = clean_line(response.headers.get("retry-after", ""))
    return f" (Retry-After: {value[:40]})" if value else ""
