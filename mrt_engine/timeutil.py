"""Time: aware UTC inside, a fixed sortable text form in the store, friendly input at the edge."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]

_STORE_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_STORE_TEXT = "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ"  # the same text, written by to_store
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def to_store(value: datetime | None) -> str | None:
    """Fixed-width ISO text that sorts like the time it denotes."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given where an aware UTC one is required")
    # %-formatting of the fields: twice as fast as isoformat(timespec=...) (whose keyword
    # costs more than the formatting) and several times faster than strftime; four year
    # digits, as both write. It runs for every stored time, several times an event.
    value = value.astimezone(UTC)
    return _STORE_TEXT % (
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


def from_store(value: str | None) -> datetime | None:
    """Inverse of :func:`to_store`; tolerant of the other ISO forms SQLite users may write."""
    if value is None or value == "":
        return None
    # to_store's text is what fromisoformat reads as UTC (since Python 3.11): a twentieth of
    # strptime's cost, for the same time. Every state row read takes a dozen of these.
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        pass
    else:
        if parsed.tzinfo is UTC:
            return parsed
    try:
        return datetime.strptime(value, _STORE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return parse_iso(value)


def parse_iso(value: str) -> datetime:
    """Parse an ISO-8601 timestamp (``Z`` allowed); a missing zone means UTC."""
    # Most upstream times are already what fromisoformat reads as UTC ("...Z" since Python
    # 3.11): a quarter of the cost of the general way below, which gives the same for them.
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        pass
    else:
        if parsed.tzinfo is UTC:
            return parsed
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59-01:00 is after the last datetime in UTC
        raise ValueError(f"{value!r} is out of the range of dates") from None


def parse_upstream(value: object) -> datetime | None:
    """Parse a timestamp from an upstream answer; ``None`` when absent or unparseable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        return None


def parse_duration(value: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``3d``, ``1w``."""
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"expected a duration like 30m, 2h or 3d, got {value!r}")
    try:
        return timedelta(seconds=float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()])
    except OverflowError:  # also inf: float() of 400 digits
        raise ValueError(f"{value!r} is longer than any date range") from None


def parse_when(value: str, now: datetime | None = None) -> datetime:
    """An operator's time: ISO-8601 (``2026-11-01``, ``2026-11-01T08:00Z``) or an age (``2h``)."""
    if _DURATION.match(value):
        try:
            return (now or utcnow()) - parse_duration(value)
        except OverflowError:
            raise ValueError(f"{value!r} ago is before the first date") from None
    try:
        return parse_iso(value)
    except ValueError:
        raise ValueError(
            f"expected a time like 2026-11-01, 2026-11-01T08:00Z or an age like 2h, got {value!r}"
        ) from None


def doubling(first: float, times: int, cap: float) -> float:
    """``first * 2**times``, at most ``cap``, for any ``times``: a count of failures or strikes
    grows without bound, and ``2**1024`` no longer converts to a float."""
    # 2.0**1000 times any duration the config allows (<= 30 days) is still a finite float.
    return min(first * 2.0 ** min(max(times, 0), 1000), cap)


def github_time(value: datetime) -> str:
    """The second-resolution UTC form that GitHub's ``since`` parameter documents."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def humanize_age(then: datetime | None, now: datetime) -> str:
    """``12s ago``, ``5m ago``, ``3h ago``, ``2d ago``; ``in 4m`` for the future; ``-`` if none.

    A past age is rounded down and a time to come up (a silence of 2 h made a minute ago ends
    ``in 2h``, not ``in 1h``): neither says less time than there is."""
    if then is None:
        return "-"
    seconds = (now - then).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if future:
        for unit in (60, 3600, 86400):
            if seconds >= unit:  # shown in this unit or a larger one: round up within it
                seconds = -(-seconds // unit) * unit
    if seconds < 60:
        text = f"{int(seconds)}s"
    elif seconds < 3600:
        text = f"{int(seconds // 60)}m"
    elif seconds < 86400:
        text = f"{int(seconds // 3600)}h"
    else:
        text = f"{int(seconds // 86400)}d"
    return f"in {text}" if future else f"{text} ago"
