"""Compiled rules and the decision they reach for one event.

Rules compile once at start. Evaluating an event first asks the text gate (rules/texts.py) which
rules can match its text at all, then, per remaining rule, the cheap field filters, the text test
(keywords: case-folded substrings; regexes as written) and the block list.

Decision semantics: a ``notify`` hit creates an alert unless a matching ``suppress`` rule has an
equal or higher priority (a tie goes to suppress). ``tag`` rules only add tags. Every hit is
kept, with its reason, whether or not it led to an alert.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from mrt_engine.ai.similarity import LEXICAL, Similarity
from mrt_engine.ai.triage import Triage
from mrt_engine.events import TrackerEvent
from mrt_engine.rules.model import RuleConfig, watch_keywords_rule
from mrt_engine.rules.texts import FieldTexts, RegexTest, TextGate


class RuleHit(NamedTuple):
    """One rule that matched one event, and why (a tuple: made for every hit, so cheap)."""

    rule: str
    action: str
    priority: int
    reason: str
    suppressed: bool = False


class Decision(NamedTuple):
    """What the rules say about one event (a tuple: made for most events, so cheap)."""

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
_PLANS_MAX = 4096
_ANSWERS_MAX = 4096


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
        self.group_by = tuple(config.group_by)
        self.fields = tuple(config.fields)
        # Semantic matching (AI2): the engine may swap the similarity for embeddings.
        self.topic = config.topic.strip()
        self.similarity: Similarity = LEXICAL
        self._folded_keywords = tuple({w.strip().casefold() for w in config.keywords})
        self._regex_tests = [RegexTest(p) for p in config.regex]
        self._regexes = [t.regex for t in self._regex_tests]
        # (label for the reason, attribute getter, matcher)
        filters: list[tuple[str, Callable[[TrackerEvent], str], Callable[[str], bool]]] = []
        read: set[str] = set()  # the event attributes the filters read
        for label, getter, patterns, attribute in (
            ("source", lambda e: e.source, config.source, "source"),
            ("source_key", lambda e: e.source_key, config.source_key, "source_key"),
            ("resource_type", lambda e: e.resource_type, config.resource_type, "resource_type"),
            ("event_type", lambda e: e.event_type, config.event_type, "event_type"),
            ("repo", lambda e: e.resource_id, config.repo, "resource_id"),
            ("org", lambda e: e.org, config.org, "resource_id"),
            ("author", lambda e: e.author, config.author, "author"),
        ):
            matcher = _glob_matcher(patterns)
            if matcher:
                filters.append((label, getter, matcher))
                read.add(attribute)
        self._filters = filters
        self._labels = _glob_matcher(config.label)
        block = config.block
        self._block_words = tuple({w.strip().casefold() for w in block.keywords if w.strip()})
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
        self._has_block = bool(
            self._block_filters or self._block_labels or self._block_words or self._block_regexes
        )
        # Keywords and nothing else: once a keyword is known to be there, the reason is all.
        self._keywords_alone = (
            self.keyword_only and not filters and self._labels is None and not self._has_block
        )
        # A rule that reads no text (field filters and labels only, its block list too) gives
        # the same answer for every event with the same values of what it reads: an author, a
        # label set, a repo come back event after event, so each answer is worked out once.
        # (A topic reads the text too: its answer is each event's own.)
        self._answers: dict[object, RuleHit | None] | None = None
        # (A topic is text: a topic rule is judged event by event.)
        reads_text = self._folded_keywords or self._regexes or self.topic
        if not (reads_text or self._block_words or block.regex):
            if block.author:
                read.add("author")
            if block.repo or block.org:
                read.add("resource_id")
            if block.event_type:
                read.add("event_type")
            if config.label or block.label:
                read.add("labels")
            self._answers = {}
            self._read = operator.attrgetter(*sorted(read)) if read else None

    @property
    def keyword_only(self) -> bool:
        """Whether the rule's text test is keywords alone."""
        return bool(self._folded_keywords) and not self._regexes and not self.topic

    @property
    def gate_words(self) -> list[tuple[str, bool]]:
        """Words one of which the rule's fields must hold for it to match; [] for no gate."""
        if (not self._folded_keywords and not self._regexes) or self.topic:
            return []
        words = [(w, True) for w in self._folded_keywords]
        for test in self._regex_tests:
            word = test.gate_word
            if word is None:
                return []
            words.append(word)
        return words

    def match(
        self,
        event: TrackerEvent,
        texts: FieldTexts | None = None,
        keyword_seen: bool | None = None,
    ) -> RuleHit | None:
        """A hit with its reason, or ``None`` when the rule does not match ``event``.

        ``keyword_seen`` is what a :class:`KeywordIndex` scan found for this rule (``None``:
        look for the keywords here).
        """
        return self.step(keyword_seen)(
            event, FieldTexts(event) if texts is None else texts, keyword_seen
        )

    def step(self, keyword_seen: bool | None) -> Callable[..., RuleHit | None]:
        """What :meth:`match` calls for an event (with its texts and ``keyword_seen``): the
        shortest way to the same answer, chosen once per rule set (RuleSet._plan)."""
        if self._answers is not None:
            return self._text_free_match
        if keyword_seen and self._keywords_alone:
            return self._keyword_hit
        return self._match

    def _keyword_hit(
        self, event: TrackerEvent, texts: FieldTexts, keyword_seen: bool | None
    ) -> RuleHit | None:
        """:meth:`match` of a rule of keywords alone, one of which is known to be there."""
        fields = self.fields
        reason = self._keyword_reason(texts.joined(fields), texts.folded(fields))
        return None if reason is None else RuleHit(self.name, self.action, self.priority, reason)

    def _match(
        self, event: TrackerEvent, texts: FieldTexts, keyword_seen: bool | None
    ) -> RuleHit | None:
        """:meth:`match`, worked out."""
        reasons: list[str] = []
        for label, getter, matcher in self._filters:
            value = getter(event)
            if not matcher(value):
                return None
            reasons.append(f"{label}={value}")
        if self._labels is not None:
            # A loop, not next() over a generator: it runs for every event (the generator's
            # setup cost more than the test of an event's few labels).
            matches = self._labels
            for label in event.labels:
                if matches(label):
                    reasons.append(f"label={label}")
                    break
            else:
                return None
        if not self._may_match_text(texts, keyword_seen):
            return None
        if self._has_block and self._blocked(event, texts):
            return None
        if self._folded_keywords or self._regexes or self.topic:
            text_reason = None
            if self._folded_keywords or self._regexes:
                text_reason = self._text_reason(texts)
            if text_reason is None and self.topic:  # only events the filters let through
                text_reason = self._topic_reason(texts)
            if text_reason is None:
                return None
            reasons.insert(0, text_reason)
        reason = "; ".join(reasons) if reasons else "matches every event"
        return RuleHit(self.name, self.action, self.priority, reason)

    def _text_free_match(
        self, event: TrackerEvent, texts: FieldTexts | None = None, _seen: bool | None = None
    ) -> RuleHit | None:
        """:meth:`match` of a rule that reads no text, worked out once per distinct value of
        what it reads (kept while there are fewer than _ANSWERS_MAX)."""
        answers = self._answers
        assert answers is not None
        try:
            key = self._read(event) if self._read is not None else None
            return answers[key]
        except KeyError:
            pass
        except TypeError:  # a value that cannot be a key (a source's bug): worked out as is
            return self._match(event, FieldTexts(event), None)
        answer = self._match(event, FieldTexts(event), None)
        if len(answers) >= _ANSWERS_MAX:
            answers.clear()
        answers[key] = answer
        return answer

    def _may_match_text(self, texts: FieldTexts, keyword_seen: bool | None) -> bool:
        """False when no keyword or regex of the rule can match: the common, cheap case.

        Keywords match case-insensitively (Unicode case folding) as substrings.
        """
        if (not self._folded_keywords and not self._regexes) or self.topic:
            return True
        if self._folded_keywords:
            if keyword_seen is None:
                folded = texts.folded(self.fields)
                keyword_seen = any(word in folded for word in self._folded_keywords)
            if keyword_seen:
                return True
        return any(test.may_match(texts, self.fields) for test in self._regex_tests)

    def _text_reason(self, texts: FieldTexts) -> str | None:
        """Why the rule's text test passed: the first field (in rule order) with a keyword,
        else with a regex match; ``None`` if nothing matches."""
        if not self._regexes:  # keywords alone: one look at the joined fields
            return self._keyword_reason(texts.joined(self.fields), texts.folded(self.fields))
        for name in self.fields:
            text = texts.field(name)
            if not text:
                continue
            if self._folded_keywords:
                reason = self._keyword_reason(text, text.casefold(), name)
                if reason is not None:
                    return reason
            for regex in self._regexes:
                found = regex.search(text)
                if found:
                    return f"regex /{regex.pattern}/ matched {_quote(found.group(0))} in {name}"
        return None

    def _topic_reason(self, texts: FieldTexts) -> str | None:
        """``topic "..." 0.42 alike (lexical)`` when the fields are alike enough to the topic."""
        text = texts.joined(self.fields).replace("\x00", "\n")
        score, kind = self.similarity.score(self.topic, text)
        if score < self.config.similarity:
            return None
        return f"topic {_quote(self.topic)} {score:.2f} alike ({kind})"

    def _keyword_reason(self, text: str, folded: str, name: str | None = None) -> str | None:
        """The leftmost (then longest) keyword in ``folded``, quoted as ``text`` writes it.

        ``text`` is one field (``name``) or the rule's fields joined by NUL.
        """
        best_at, best_size = -1, 0
        for word in self._folded_keywords:
            at = folded.find(word)
            if at >= 0 and (
                best_at < 0 or at < best_at or (at == best_at and len(word) > best_size)
            ):
                best_at, best_size = at, len(word)
        if best_at < 0:
            return None
        if len(folded) == len(text):  # folding kept every length: positions agree
            if name is None:
                name = self.fields[text.count("\x00", 0, best_at)]
            quoted = text[best_at : best_at + best_size]
        else:  # folding changed lengths (ß -> ss): quote the keyword as configured
            if name is None:
                name = self.fields[folded.count("\x00", 0, best_at)]
            quoted = folded[best_at : best_at + best_size]
        return f"keyword {_quote(quoted)} in {name}"

    def _blocked(self, event: TrackerEvent, texts: FieldTexts) -> bool:
        for _label, getter, matcher in self._block_filters:
            if matcher(getter(event)):
                return True
        if self._block_labels is not None and any(self._block_labels(lb) for lb in event.labels):
            return True
        if self._block_words:
            folded = texts.folded(self.fields)
            if any(word in folded for word in self._block_words):
                return True
        if self._block_regexes:
            for name in self.fields:
                text = texts.field(name)
                if any(r.search(text) for r in self._block_regexes):
                    return True
        return False


@dataclass
class RuleSet:
    """Every enabled rule, compiled, in priority order."""

    rules: list[CompiledRule] = field(default_factory=list)
    _gate: TextGate = field(init=False, repr=False)
    # Positions of the rules whose text test is keywords alone: passing the gate is a match.
    _keyword_only: frozenset[int] = field(init=False, repr=False)
    # The rules (as bits, see TextGate) the gate does not judge: every event is evaluated by them.
    _ungated: int = field(init=False, repr=False)
    # What to evaluate for each set of rules (as bits) an event's gate let through: the rules in
    # priority order, each with what the gate found for it. Few sets come back event after
    # event, so each is worked out once. Bounded: emptied when full.
    _plans: dict[int, tuple[tuple[CompiledRule, Callable, bool | None], ...]] = field(
        init=False, repr=False
    )
    # A channel's ``min_priority``: an alert below it is not routed there.
    min_priority: dict[str, int] = field(default_factory=dict)
    # AI4 (mrt_engine/ai/triage.py): moves a notifying decision's priority; None: off.
    triage: Triage | None = None
    _by_name: dict[str, CompiledRule] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name = {r.name: r for r in self.rules}
        self._gate = TextGate([(r.fields, r.gate_words) for r in self.rules])
        self._keyword_only = frozenset(i for i, r in enumerate(self.rules) if r.keyword_only)
        self._ungated = ((1 << len(self.rules)) - 1) & ~self._gate.gated
        self._plans = {}

    def _plan(self, rules: int) -> tuple[tuple[CompiledRule, Callable, bool | None], ...]:
        """The rules of the bits ``rules``, in priority order, each with its step
        (:meth:`CompiledRule.step`) and ``keyword_seen`` for it: ``True`` for a rule whose text
        test is keywords alone (it passed the gate, so a keyword is there), else ``None`` (it
        looks for itself)."""
        steps = []
        for position, rule in enumerate(self.rules):
            if rules >> position & 1:
                seen = True if position in self._keyword_only else None
                steps.append((rule, rule.step(seen), seen))
        plan = tuple(steps)
        if len(self._plans) >= _PLANS_MAX:
            self._plans.clear()
        self._plans[rules] = plan
        return plan

    @classmethod
    def compile(
        cls,
        configs: Iterable[RuleConfig],
        channels: Sequence[str],
        watch_keywords: Sequence[str] = (),
        min_priority: dict[str, int] | None = None,
    ) -> RuleSet:
        """Compile rule configs (plus the v0 ``watch_keywords``) for the given channel names;
        ``min_priority``: per channel, the lowest alert priority routed to it."""
        all_configs = list(configs)
        if watch_keywords:
            all_configs.append(watch_keywords_rule(list(watch_keywords)))
        compiled = [CompiledRule(c, channels) for c in all_configs if c.enabled]
        compiled.sort(key=lambda r: -r.priority)
        return cls(compiled, dict(min_priority or {}))

    def group_by(self, decision: Decision) -> tuple[str, ...]:
        """What the group key of ``decision``'s alert is made of: its first (highest
        priority) notify rule's ``group_by``."""
        return self.group_by_of(decision.notify_rules)

    def group_by_of(self, notify_rules: Sequence[str]) -> tuple[str, ...]:
        """:meth:`group_by` of a decision whose notify rules are ``notify_rules``."""
        for name in notify_rules:
            rule = self._by_name.get(name)
            if rule is not None:
                return rule.group_by
        return ()

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rules]

    @property
    def topic_rules(self) -> list[CompiledRule]:
        """The rules with a ``topic`` (semantic matching)."""
        return [r for r in self.rules if r.topic]

    def use_similarity(self, similarity: Similarity) -> None:
        """Judge every topic rule by ``similarity`` (the engine's embeddings)."""
        for rule in self.topic_rules:
            rule.similarity = similarity

    def evaluate(
        self,
        event: TrackerEvent,
        *,
        triage: bool = True,
        score: tuple[int, str] | None = None,
    ) -> Decision:
        """Every hit for ``event`` and whether it should notify, where, and how urgently
        (``triage``: let :attr:`triage` move the priority, when it is set, by ``score``: the
        model's, else the local one; evaluation never asks the model itself)."""
        hits: list[tuple[CompiledRule, RuleHit]] = []
        texts = FieldTexts(event)
        # The rules the gate let through and those it does not judge, in priority order.
        rules = self._gate.open(texts) | self._ungated
        plan = self._plans.get(rules)
        if plan is None:
            plan = self._plan(rules)
        for rule, step, keyword_seen in plan:
            hit = step(event, texts, keyword_seen)
            if hit is not None:
                hits.append((rule, hit))
        if not hits:
            return NO_DECISION
        suppress_at = -(2**63)  # rules run in priority order, but a tie goes to suppress
        for _rule, hit in hits:
            if hit.action == "suppress" and hit.priority > suppress_at:
                suppress_at = hit.priority
        final: list[RuleHit] = []
        channels: list[str] = []
        tags: list[str] = []
        priority: int | None = None
        for rule, hit in hits:
            action = hit.action
            if action == "notify":
                if hit.priority <= suppress_at:
                    # RuleHit(...) rather than _replace, which costs several times more
                    final.append(RuleHit(hit.rule, action, hit.priority, hit.reason, True))
                    continue
                if priority is None or hit.priority > priority:
                    priority = hit.priority
                for channel in rule.channels:
                    if channel not in channels:
                        channels.append(channel)
            if action != "suppress":
                for tag in rule.tags:
                    if tag not in tags:
                        tags.append(tag)
            final.append(hit)
        routed = priority
        if triage and self.triage is not None and priority is not None:
            notifying = [h.rule for h in final if h.action == "notify" and not h.suppressed]
            priority, mark = self.triage.priority(event, notifying, priority, score)
            tags.append(mark)
            routed = max(priority, routed)  # a lowered alert waits for a digest, never dropped
        if self.min_priority and routed is not None:
            floor = self.min_priority
            channels = [c for c in channels if routed >= floor.get(c, routed)]
        return Decision(
            hits=tuple(final),
            notify=priority is not None,
            channels=tuple(channels),
            priority=priority or 0,
            tags=tuple(tags),
        )
