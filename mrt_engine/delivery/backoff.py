"""Retry delays: exponential, capped, with jitter so a burst of failures does not retry in step;
never before the time the platform asked for (``Retry-After``), held to an hour."""

from __future__ import annotations

import math
import random

from mrt_engine.timeutil import doubling

# The longest wait a platform's Retry-After (or rate-limit code) may impose on a delivery: a
# longer one is a broken or hostile header, and the message should not sit for a day.
MAX_ASKED_WAIT = 3600.0


def retry_delay(
    attempts: int,
    *,
    initial: float,
    maximum: float,
    jitter: float = 0.2,
    rng: random.Random | None = None,
    asked: float | None = None,
) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (1-based).

    ``initial * 2**(attempts-1)`` capped at ``maximum``, then scaled by a random factor in
    ``[1 - jitter, 1 + jitter]``, and capped again so the cap is a real upper bound. When the
    platform ``asked`` for a wait (seconds, RFC 9110 §10.2.3 Retry-After), the delay is at least
    that, held to :data:`MAX_ASKED_WAIT`, and never shorter than the backoff.
    """
    base = doubling(initial, attempts - 1, maximum)
    factor = (rng or random).uniform(1 - jitter, 1 + jitter)
    delay = min(base * factor, maximum)
    if asked is not None and not math.isnan(asked):
        delay = max(delay, min(max(asked, 0.0), MAX_ASKED_WAIT))
    return delay
