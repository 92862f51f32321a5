"""Retry delays: exponential, capped, with jitter so a burst of failures does not retry in step."""

from __future__ import annotations

import random

from mrt_engine.timeutil import doubling


def retry_delay(
    attempts: int,
    *,
    initial: float,
    maximum: float,
    jitter: float = 0.2,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (1-based).

    ``initial * 2**(attempts-1)`` capped at ``maximum``, then scaled by a random factor in
    ``[1 - jitter, 1 + jitter]``, and capped again so the cap is a real upper bound.
    """
    base = doubling(initial, attempts - 1, maximum)
    factor = (rng or random).uniform(1 - jitter, 1 + jitter)
    return min(base * factor, maximum)
