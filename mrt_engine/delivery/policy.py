"""Per-channel delivery policy: grouping windows, the rate limit and the digest (issue 11).

Built from the config: a rule's own group times for the groups its hits open, else a channel's
own ``notify.<channel>`` settings, else the ``delivery`` section's group defaults, else the platform's default rate (``DEFAULT_RATE_PER_MINUTE`` in the
channel's module). Protected hits ignore all of it (:func:`mrt_engine.health.is_protected`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from mrt_engine.notify.base import DigestSettings


@dataclass(frozen=True)
class ChannelPolicy:
    """How one channel's queue is sent. The default sends every row alone, at once."""

    group_wait: float = 0.0
    group_interval: float = 0.0
    rate_per_minute: int = 0  # 0: no limit
    digest: DigestSettings | None = None
    # Rules with their own group times (``group_wait_seconds`` / ``group_interval_seconds``):
    # name -> (wait, interval), None where the rule keeps the channel's.
    rule_times: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)

    @property
    def grouping(self) -> bool:
        """Whether rows with a group key wait for their group (every time 0: no grouping)."""
        return (
            self.group_wait > 0
            or self.group_interval > 0
            or any((w or 0) > 0 or (i or 0) > 0 for w, i in self.rule_times.values())
        )

    def group_times(self, rule: str | None) -> tuple[float, float]:
        """(wait, interval) of a group opened by a hit of ``rule``: the rule's own, else the
        channel's."""
        wait, interval = self.rule_times.get(rule or "", (None, None))
        return (
            self.group_wait if wait is None else wait,
            self.group_interval if interval is None else interval,
        )

    @property
    def plain(self) -> bool:
        """Nothing to decide at claim time: every due row is a message of its own."""
        return not self.grouping and not self.rate_per_minute and self.digest is None

    def holds_for_digest(self, priority: int) -> bool:
        return self.digest is not None and priority < self.digest.below_priority


PLAIN = ChannelPolicy()


def default_rate(settings: Any) -> int | None:
    """The platform's messages-a-minute limit its channel module declares, if any."""
    module = sys.modules.get(type(settings).__module__)
    rate = getattr(module, "DEFAULT_RATE_PER_MINUTE", None)
    return rate if isinstance(rate, int) and rate > 0 else None


def channel_policies(config: Any) -> dict[str, ChannelPolicy]:
    """The policy of every configured channel."""
    delivery = config.delivery
    rule_times = {
        rule.name: (rule.group_wait_seconds, rule.group_interval_seconds)
        for rule in getattr(config, "rules", None) or ()
        if rule.group_wait_seconds is not None or rule.group_interval_seconds is not None
    }
    policies: dict[str, ChannelPolicy] = {}
    for name, settings in config.channel_sections().items():
        wait = getattr(settings, "group_wait_seconds", None)
        interval = getattr(settings, "group_interval_seconds", None)
        rate = getattr(settings, "rate_limit_per_minute", None)
        policies[name] = ChannelPolicy(
            group_wait=delivery.group_wait_seconds if wait is None else wait,
            group_interval=delivery.group_interval_seconds if interval is None else interval,
            rate_per_minute=(default_rate(settings) or 0) if rate is None else rate,
            digest=getattr(settings, "digest", None),
            rule_times=rule_times,
        )
    return policies


# ---------------------------------------------------------------------- digest slots
def _wall(settings: DigestSettings) -> tuple[ZoneInfo, int, int]:
    hours, _, minutes = settings.at.partition(":")
    return ZoneInfo(settings.timezone), int(hours), int(minutes)


def _candidates(settings: DigestSettings, near: datetime) -> list[datetime]:
    """Slots around ``near`` (a day or an hour either side), in UTC, sorted."""
    zone, hours, minutes = _wall(settings)
    local = near.astimezone(zone)
    out = []
    if settings.every == "daily":
        for days in (-1, 0, 1, 2):
            day = local.date() + timedelta(days=days)
            out.append(datetime.combine(day, time(hours, minutes), tzinfo=zone))
    else:
        base = local.replace(minute=minutes, second=0, microsecond=0)
        out = [base + timedelta(hours=h) for h in (-1, 0, 1, 2)]
    return sorted(slot.astimezone(near.tzinfo) for slot in out)


def next_slot(settings: DigestSettings, after: datetime) -> datetime:
    """The first digest time at or after ``after``."""
    return next(slot for slot in _candidates(settings, after) if slot >= after)


def latest_slot(settings: DigestSettings, now: datetime) -> datetime:
    """The last digest time at or before ``now``."""
    return [slot for slot in _candidates(settings, now) if slot <= now][-1]
