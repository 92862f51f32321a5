"""Silences (S3): time-bounded matchers that stop deliveries, like Alertmanager's.

A silence has matchers, a time window (``starts_at`` to ``ends_at``), an author and a comment.
A hit is silenced when a silence is active and *every* one of its matchers matches the hit
(Alertmanager's rule: matchers are ANDed, two on one field must both match). What a matcher
reads of a hit:

``source``  the source key (``github:vllm-project/vllm:issues``). A value without wildcards is
            a prefix (``github`` is all of GitHub; ``github:vllm`` that repo's keys).
``repo``    the resource id (``vllm-project/vllm``, ``deepseek-ai/DeepSeek-V3``), whole.
``org``     the resource id's owner, the part before its first ``/`` (``deepseek-ai``).
``rule``    the rules that notified: every one must match (an alert that another rule also
            wants is not silenced by a silence of one rule: never miss what someone asked for).
``type``    the event type (``model_updated``).
``text``    the title and summary: a case-insensitive substring.

``field=VALUE`` compares with a glob (``*``, ``?``, ``[...]``); ``field=~REGEX`` with a regular
expression, anchored for every field (as Alertmanager's) except ``text``, where it is searched.
``field!=VALUE`` and ``field!~REGEX`` are their negations (Alertmanager's ``!=`` / ``!~``): a
field the hit lacks (no owner, no rule) is empty, so it matches them; for ``rule`` every rule
that notified must match, as for ``=`` (``rule!=x`` keeps an alert that x also wants).
Everything compares case-insensitively. A silence whose matchers would all match an empty hit
(``text=``, ``org=*``) is refused: it would silence everything.

Protected hits (source health, the checksum alarm: :data:`mrt_engine.health.PROTECTED_TYPES`)
are never silenced. This module is pure: the store side is :mod:`mrt_engine.silences`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import translate
from typing import Any

from mrt_engine.health import PROTECTED_TYPES

# The fields a matcher may name, with what the help says of each.
FIELDS: dict[str, str] = {
    "source": "source key (a value without wildcards is a prefix)",
    "org": "owner of the resource (the part of its id before the first /)",
    "repo": "resource id (repo or model, whole)",
    "rule": "every rule that notified",
    "type": "event type",
    "text": "title and summary (substring)",
}
OPERATORS = ("=~", "!~", "!=", "=")
NEGATIONS = {"!=": "=", "!~": "=~"}  # a negative operator and the positive one it negates
# FIELD, then the operator: "=~" before "=" so that "=~..." is not read as "=" and "~...".
_MATCHER = re.compile(r"\s*([A-Za-z_]+)\s*(=~|!~|!=|=)(.*)\Z", re.DOTALL)
_WILDCARDS = re.compile(r"[*?\[]")


class SilenceError(ValueError):
    """A matcher, a duration or a silence that cannot be used: one clear line."""


@dataclass(frozen=True)
class SilenceTarget:
    """What a silence looks at in one hit (an alert about to be delivered)."""

    source_key: str
    resource_id: str
    event_type: str
    rules: tuple[str, ...]
    title: str
    summary: str = ""

    @property
    def protected(self) -> bool:
        """Source health and the checksum alarm: never silenced."""
        return self.event_type in PROTECTED_TYPES

    @property
    def org(self) -> str:
        return self.resource_id.split("/", 1)[0] if "/" in self.resource_id else ""


@dataclass(frozen=True)
class Matcher:
    """``field op value``, e.g. ``org=deepseek-ai`` or ``text=~v[0-9]+``."""

    field: str
    op: str
    value: str
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", _compile(self.field, self.op, self.value))

    def __str__(self) -> str:
        return f"{self.field}{self.op}{self.value}"

    @property
    def negative(self) -> bool:
        """``!=`` or ``!~``: matches what its positive form does not."""
        return self.op in NEGATIONS

    def matches(self, target: SilenceTarget) -> bool:
        """Whether this matcher matches ``target``."""
        if self.field == "rule":
            if self.negative:  # no notifying rule may be what it names
                return not any(self.pattern.match(r) for r in target.rules)
            return bool(target.rules) and all(self.pattern.match(r) for r in target.rules)
        if self.field == "text":
            found = self.pattern.search(f"{target.title}\n{target.summary}") is not None
        else:
            value = {
                "source": target.source_key,
                "org": target.org,
                "repo": target.resource_id,
                "type": target.event_type,
            }[self.field]
            found = self.pattern.match(value) is not None
        return found != self.negative

    def matches_nothing_given(self) -> bool:
        """Whether it matches a hit with every field empty (see the module's docstring)."""
        empty = SilenceTarget("", "", "", ("",), "", "")
        return self.matches(empty)

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "op": self.op, "value": self.value}


def _compile(name: str, op: str, value: str) -> re.Pattern[str]:
    if name not in FIELDS:
        raise SilenceError(f"unknown matcher field {name!r}: expected one of {', '.join(FIELDS)}")
    if op not in OPERATORS:
        raise SilenceError(f"unknown matcher operator {op!r}: expected =, =~, != or !~")
    if NEGATIONS.get(op, op) == "=~":  # the pattern of the positive form: matches() negates
        try:
            compiled = re.compile(value, re.IGNORECASE)
        except re.error as exc:
            raise SilenceError(f"{name}{op}{value}: not a regular expression: {exc}") from None
        if name == "text":
            return compiled
        return re.compile(rf"(?:{value})\Z", re.IGNORECASE)  # anchored (used with .match)
    if name == "text":
        return re.compile(re.escape(value), re.IGNORECASE)
    if name == "source" and not _WILDCARDS.search(value):
        return re.compile(re.escape(value), re.IGNORECASE)  # a prefix
    return re.compile(translate(value), re.IGNORECASE)


def parse_matcher(text: str) -> Matcher:
    """``org=deepseek-ai`` (glob), ``text=~regex``, ``source!=github`` or ``text!~regex`` as a
    :class:`Matcher`."""
    found = _MATCHER.match(text)
    if found is None:
        raise SilenceError(
            f"matcher {text!r}: expected FIELD=VALUE, FIELD=~REGEX, FIELD!=VALUE or"
            f" FIELD!~REGEX (fields: {', '.join(FIELDS)})"
        )
    name, op, value = found.groups()
    return Matcher(name.lower(), op, value)


def check_matchers(matchers: Sequence[Matcher]) -> None:
    """Refuse a silence without matchers, or one whose matchers would silence everything."""
    if not matchers:
        raise SilenceError("a silence needs at least one --match FIELD=VALUE")
    # A negative matcher narrows on purpose ("everything but GitHub"): only a silence of
    # positive matchers that would all match an empty hit is refused.
    if all(not m.negative and m.matches_nothing_given() for m in matchers):
        shown = " ".join(str(m) for m in matchers)
        raise SilenceError(f"{shown} matches every hit: give a matcher that narrows it")


def matchers_to_json(matchers: Iterable[Matcher]) -> list[dict[str, str]]:
    return [m.as_dict() for m in matchers]


def matchers_from_json(data: Any) -> tuple[Matcher, ...]:
    """The matchers of a stored silence (text from the store: ``json.loads`` if needed)."""
    if isinstance(data, str):
        data = json.loads(data)
    return tuple(Matcher(d["field"], d["op"], d["value"]) for d in data or ())


@dataclass(frozen=True)
class Silence:
    """One stored silence."""

    id: int
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    author: str
    comment: str
    created_at: datetime | None = None
    created_by: str = ""
    expired_at: datetime | None = None
    expired_by: str | None = None

    def active(self, now: datetime) -> bool:
        """In its window and not expired by hand."""
        return self.expired_at is None and self.starts_at <= now < self.ends_at

    def state(self, now: datetime) -> str:
        """``active``, ``pending`` (starts later) or ``expired``."""
        if self.expired_at is not None or now >= self.ends_at:
            return "expired"
        return "pending" if now < self.starts_at else "active"

    def matches(self, target: SilenceTarget) -> bool:
        return all(m.matches(target) for m in self.matchers)

    def describe(self) -> str:
        """``org=deepseek-ai type=model_updated``."""
        return " ".join(str(m) for m in self.matchers)


def silencing(silences: Iterable[Silence], target: SilenceTarget, now: datetime) -> Silence | None:
    """The first active silence (lowest id) that matches ``target``; never one for a
    protected hit."""
    if target.protected:
        return None
    for silence in silences:
        if silence.active(now) and silence.matches(target):
            return silence
    return None
