"""Compiled rules and the decision they reach for one event.

Rules compile once at start. Evaluating an event runs the cheap field filters first, then the
block list, then one combined regular expression per rule for its keywords.

Decision semantics: a ``notify`` hit creates an alert unless a matching ``suppress`` rule has an
equal or higher priority (a tie goes to suppress). ``tag`` rules only add tags. Every hit is
kept, with its reason, whether or not it led to an alert.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from mrt_engine.events import TrackerEvent
from mrt_engine.rules.model import RuleConfig, watch_keywords_rule


@dataclass(frozen=True, slots=True)
class RuleHit:
    """One rule that matched one event, and why."""

    rule: str
    action: str
    priority: int
    reason: str
    suppressed: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """What the rules say about one event."""

    hits: tuple[RuleHit, ...] = ()
    notify: bool = False
    channels: tuple[str, ...] = ()
    priority: int = 0
    tags: tuple[str, ...] = ()

    @property
    def notify_rules(self) -> tuple[str, ...]:
        """Names of the notify rules that led to the alert."""
        return tuple(h.rule for h in self.hits if h.action == "notify" and not h.suppressed)


NO_DECISION = Decision()


def _glob_matcher(patterns: Sequence[str]) -> Callable[[str], bool] | None:
    """Case-insensitive matcher for ``*``/``?`` globs; ``None`` when there are no patterns.

    Only ``*`` and ``?`` are special, so names like ``dependabot[bot]`` match literally.
    """
    if not patterns:
        return None
    exact = {p.casefold() for p in patterns if "*" not in p and "?" not in p}
    wild = [p for p in patterns if "*" in p or "?" in p]
    if not wild:
        return lambda value: value.casefold() in exact
    parts = []
    for p in wild:
        parts.append("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in p))
    regex = re.compile("(?:" + "|".join(parts) + r")\Z", re.IGNORECASE | re.DOTALL)
    return lambda value: value.casefold() in exact or regex.match(value) is not None


def _keyword_regex(words: Sequence[str]) -> re.Pattern[str] | None:
    if not words:
        return None
    ordered = sorted({w.strip() for w in words}, key=len, reverse=True)
    return re.compile("|".join(re.escape(w) for w in ordered), re.IGNORECASE)


def _field_text(event: TrackerEvent, name: str) -> str:
    if name == "labels":
        return ", ".join(event.labels)
    return getattr(event, name) or ""


def _quote(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return '"' + (text if len(text) <= limit else text[: limit - 1] + "…") + '"'


class CompiledRule:
    """A rule ready to evaluate events."""

    def __init__(self, config: RuleConfig, all_channels: Sequence[str]) -> None:
        self.config = config
        self.name = config.name
        self.action = config.action
        self.priority = config.priority
        self.tags = tuple(config.tags)
        self.channels = tuple(all_channels if config.channels is None else config.channels)
        self.fields = tuple(config.fields)
        self._keywords = _keyword_regex(config.keywords)
        self._regexes = [re.compile(p) for p in config.regex]
        # (label for the reason, attribute getter, matcher)
        filters: list[tuple[str, Callable[[TrackerEvent], str], Callable[[str], bool]]] = []
        for label, getter, patterns in (
            ("source", lambda e: e.source, config.source),
            ("source_key", lambda e: e.source_key, config.source_key),
            ("resource_type", lambda e: e.resource_type, config.resource_type),
            ("event_type", lambda e: e.event_type, config.event_type),
            ("repo", lambda e: e.resource_id, config.repo),
            ("org", lambda e: e.org, config.org),
            ("author", lambda e: e.author, config.author),
        ):
            matcher = _glob_matcher(patterns)
            if matcher:
                filters.append((label, getter, matcher))
        self._filters = filters
        self._labels = _glob_matcher(config.label)
        block = config.block
        self._block_keywords = _keyword_regex(block.keywords)
        self._block_regexes = [re.compile(p) for p in block.regex]
        self._block_filters = [
            (label, getter, m)
            for label, getter, m in (
                ("author", lambda e: e.author, _glob_matcher(block.author)),
                ("repo", lambda e: e.resource_id, _glob_matcher(block.repo)),
                ("org", lambda e: e.org, _glob_matcher(block.org)),
                ("event_type", lambda e: e.event_type, _glob_matcher(block.event_type)),
            )
            if m
        ]
        self._block_labels = _glob_matcher(block.label)

    def match(self, event: TrackerEvent) -> RuleHit | None:
        """A hit with its reason, or ``None`` when the rule does not match ``event``."""
        reasons: list[str] = []
        for label, getter, matcher in self._filters:
            value = getter(event)
            if not matcher(value):
                return None
            reasons.append(f"{label}={value}")
        if self._labels is not None:
            hit_label = next((lb for lb in event.labels if self._labels(lb)), None)
            if hit_label is None:
                return None
            reasons.append(f"label={hit_label}")
        if self._blocked(event):
            return None
        if self._keywords is not None or self._regexes:
            text_reason = self._text_reason(event)
            if text_reason is None:
                return None
            reasons.insert(0, text_reason)
        reason = "; ".join(reasons) if reasons else "matches every event"
        return RuleHit(self.name, self.action, self.priority, reason)

    def _text_reason(self, event: TrackerEvent) -> str | None:
        for name in self.fields:
            text = _field_text(event, name)
            if not text:
                continue
            if self._keywords is not None:
                found = self._keywords.search(text)
                if found:
                    return f"keyword {_quote(found.group(0))} in {name}"
            for regex in self._regexes:
                found = regex.search(text)
                if found:
                    return f"regex /{regex.pattern}/ matched {_quote(found.group(0))} in {name}"
        return None

    def _blocked(self, event: TrackerEvent) -> bool:
        for _label, getter, matcher in self._block_filters:
            if matcher(getter(event)):
                return True
        if self._block_labels is not None and any(self._block_labels(lb) for lb in event.labels):
            return True
        if self._block_keywords is not None or self._block_regexes:
            for name in self.fields:
                text = _field_text(event, name)
                if self._block_keywords is not None and self._block_keywords.search(text):
                    return True
                if any(r.search(text) for r in self._block_regexes):
                    return True
        return False


@dataclass
class RuleSet:
    """Every enabled rule, compiled, in priority order."""

    rules: list[CompiledRule] = field(default_factory=list)

    @classmethod
    def compile(
        cls,
        configs: Iterable[RuleConfig],
        channels: Sequence[str],
        watch_keywords: Sequence[str] = (),
    ) -> RuleSet:
        """Compile rule configs (plus the v0 ``watch_keywords``) for the given channel names."""
        all_configs = list(configs)
        if watch_keywords:
            all_configs.append(watch_keywords_rule(list(watch_keywords)))
        compiled = [CompiledRule(c, channels) for c in all_configs if c.enabled]
        compiled.sort(key=lambda r: -r.priority)
        return cls(compiled)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rules]

    def evaluate(self, event: TrackerEvent) -> Decision:
        """Every hit for ``event`` and whether it should notify, where, and how urgently."""
        hits: list[tuple[CompiledRule, RuleHit]] = []
        for rule in self.rules:
            hit = rule.match(event)
            if hit is not None:
                hits.append((rule, hit))
        if not hits:
            return NO_DECISION
        suppress_at = max((h.priority for _, h in hits if h.action == "suppress"), default=None)
        final: list[RuleHit] = []
        channels: list[str] = []
        tags: list[str] = []
        priority: int | None = None
        for rule, hit in hits:
            if hit.action == "notify":
                if suppress_at is not None and hit.priority <= suppress_at:
                    final.append(RuleHit(hit.rule, hit.action, hit.priority, hit.reason, True))
                    continue
                priority = hit.priority if priority is None else max(priority, hit.priority)
                channels.extend(c for c in rule.channels if c not in channels)
                tags.extend(t for t in rule.tags if t not in tags)
            elif hit.action == "tag":
                tags.extend(t for t in rule.tags if t not in tags)
            final.append(hit)
        return Decision(
            hits=tuple(final),
            notify=priority is not None,
            channels=tuple(channels),
            priority=priority or 0,
            tags=tuple(tags),
        )
