"""Reading what an upstream says about its rate limits (S1: the same rules for every platform).

``Retry-After`` (RFC 9110 §10.2.3: seconds or an HTTP date), the IETF ``RateLimit`` header
(``r=0;t=N``), GitHub's and HuggingFace's ``x-ratelimit-remaining`` / ``x-ratelimit-reset``, and
GitHub's secondary limit, which may come with no header at all. :mod:`mrt_engine.http` decides
what to do with it (wait inline, or block the host and fail the poll).
"""

from __future__ import annotations

import email.utils
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx

from mrt_engine.timeutil import doubling

SECONDARY_LIMIT_MIN_WAIT = 60.0
SECONDARY_LIMIT_MAX_WAIT = 900.0
# The longest rate-limit wait an upstream can impose: a longer Retry-After or reset time is a
# broken or hostile header, and an unbounded one would overflow the time arithmetic.
MAX_RATE_LIMIT_WAIT = 86400.0
_RATELIMIT_T = re.compile(r"(?:^|[;,\s])(?:t|reset)\s*=\s*(\d+)")


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """The last budget reading of a host: requests left and when the budget resets."""

    remaining: int | None
    reset_at: datetime | None


def secondary_limit_wait(strikes: int) -> float:
    """GitHub's secondary limit without headers: at least a minute, doubling with each strike."""
    return doubling(SECONDARY_LIMIT_MIN_WAIT, strikes - 1, SECONDARY_LIMIT_MAX_WAIT)


def retry_after(headers: httpx.Headers, now: datetime) -> float | None:
    """Seconds the answer asks us to wait: ``Retry-After`` (seconds or an HTTP date), else the
    ``t``/``reset`` of an IETF ``RateLimit`` header whose remaining budget is 0; else ``None``."""
    value = headers.get("retry-after")
    if value:
        value = value.strip()
        if value.isascii() and value.isdigit():  # ("²".isdigit(), but no float reads it)
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: a year past any integer
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max((when - now).total_seconds(), 0.0)
    ratelimit = headers.get("ratelimit")
    if ratelimit:
        match = _RATELIMIT_T.search(ratelimit)
        remaining = re.search(r"(?:^|[;,\s])(?:r|remaining)\s*=\s*(\d+)", ratelimit)
        if match and (remaining is None or remaining.group(1) == "0"):
            return float(match.group(1))
    return None


def rate_limit_info(headers: httpx.Headers, now: datetime) -> RateLimitInfo | None:
    """The budget an answer reports in ``x-ratelimit-remaining`` / ``x-ratelimit-reset``."""
    remaining = headers.get("x-ratelimit-remaining")
    reset = headers.get("x-ratelimit-reset")
    if remaining is None and reset is None:
        return None
    try:
        left = int(remaining) if remaining is not None else None
    except ValueError:
        left = None
    reset_at = None
    if reset is not None:
        try:
            number = float(reset)
        except ValueError:
            number = None
        if number is not None and math.isfinite(number):
            # Epoch seconds (GitHub) or, when small, seconds from now; at most a day away.
            seconds = number - now.timestamp() if number > 10**9 else number
            reset_at = now + timedelta(seconds=min(max(seconds, 0.0), MAX_RATE_LIMIT_WAIT))
    return RateLimitInfo(left, reset_at)
