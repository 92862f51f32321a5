"""Dry runs: what a rule, or a draft pattern, would match among stored events. Sends nothing."""

from __future__ import annotations

from collections.abc import Iterable

from mrt_engine.events import TrackerEvent
from mrt_engine.rules.matcher import CompiledRule, RuleHit
from mrt_engine.rules.model import RuleConfig


def draft_rule(pattern: str, fields: list[str] | None = None) -> RuleConfig:
    """A throwaway rule from what an operator typed: ``/regex/`` or comma-separated keywords.

    Raises ``ValueError`` (pydantic's, naming the problem) for a bad regex or an empty pattern.
    """
    pattern = pattern.strip()
    options = {"name": "draft", "fields": fields or ["title", "summary"]}
    if len(pattern) >= 2 and pattern.startswith("/") and pattern.endswith("/"):
        return RuleConfig(**options, regex=[pattern[1:-1]])
    words = [w.strip() for w in pattern.split(",") if w.strip()]
    return RuleConfig(**options, keywords=words or [""])


def dry_run(
    rule: CompiledRule, events: Iterable[tuple[int, TrackerEvent]]
) -> list[tuple[int, TrackerEvent, RuleHit]]:
    """The (id, event, hit) of every event ``rule`` matches, in the order given."""
    out = []
    for event_id, event in events:
        hit = rule.match(event)
        if hit is not None:
            out.append((event_id, event, hit))
    return out
