"""``mrt-engine rules suggest``: keywords a rule might add, learnt from its past hits (AI2).

Local and deterministic: words (and, for Chinese, character pairs) of the titles of the events a
rule hit, ranked by how many of its hits hold them against how common they are in all stored
events (TF-IDF over documents). Words the rule already has, or that one of its keywords
contains, are left out. It proposes; an operator decides.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mrt_engine.store.db import Store

_WORD = re.compile(r"[a-z0-9][a-z0-9.+_-]*[a-z0-9]|[\u3400-\u9fff]+", re.IGNORECASE)
STOP = frozenset(
    [
        "the",
        "and",
        "for",
        "with",
        "from",
        "into",
        "this",
        "that",
        "are",
        "was",
        "were",
        "not",
        "but",
        "you",
        "your",
        "our",
        "add",
        "adds",
        "added",
        "fix",
        "fixes",
        "fixed",
        "support",
        "supports",
        "use",
        "using",
        "update",
        "updates",
        "updated",
        "new",
        "via",
        "when",
        "more",
        "bump",
        "release",
        "version",
        "model",
        "models",
        "issue",
        "pr",
    ]
)
HITS_READ = 1000  # a rule's latest hits read
BACKGROUND_READ = 5000  # latest events read for how common a word is


@dataclass(frozen=True)
class Suggestion:
    """A candidate keyword: in ``hits`` of the rule's ``of`` hits; ``score`` ranks them."""

    rule: str
    keyword: str
    hits: int
    of: int
    score: float


def terms(text: str) -> set[str]:
    """A title's candidate terms: words of 3+ characters (not stop words), Chinese pairs."""
    found: set[str] = set()
    for word in _WORD.findall(text.casefold()):
        if "\u3400" <= word[0] <= "\u9fff":
            found.update(word[i : i + 2] for i in range(len(word) - 1))
        elif len(word) >= 3 and word not in STOP and not word.isdigit():
            found.add(word)
    return found


def rank(
    rule: str,
    hit_titles: Sequence[str],
    background: Iterable[str],
    known: Iterable[str] = (),
    limit: int = 10,
) -> list[Suggestion]:
    """The best ``limit`` terms of ``hit_titles`` (in 2+ hits), rarest in ``background`` first."""
    known_words = [k.casefold() for k in known]
    in_hits = Counter(t for title in hit_titles for t in terms(title))
    docs = 0
    in_all: Counter[str] = Counter()
    for title in background:
        docs += 1
        in_all.update(terms(title))
    out = []
    for term, count in in_hits.items():
        if count < 2 or any(term in k or k in term for k in known_words):
            continue
        idf = math.log((1 + docs) / (1 + in_all.get(term, 0))) + 1.0
        out.append(Suggestion(rule, term, count, len(hit_titles), round(count * idf, 3)))
    out.sort(key=lambda s: (-s.score, s.keyword))
    return out[:limit]


def suggest(
    store: Store, rules: dict[str, Sequence[str]], limit: int = 10
) -> dict[str, list[Suggestion]]:
    """Suggestions for each rule of ``rules`` (name -> its keywords), from its stored hits."""
    cursor = store.db.execute_sql(
        f"SELECT title FROM event ORDER BY id DESC LIMIT {BACKGROUND_READ}"
    )
    background = [row[0] for row in cursor.fetchall()]
    found: dict[str, list[Suggestion]] = {}
    for name, keywords in rules.items():
        cursor = store.db.execute_sql(
            "SELECT e.title FROM rule_hit h JOIN event e ON e.id = h.event_id"
            f" WHERE h.rule = ? AND h.suppressed = 0 ORDER BY h.evaluated_at DESC LIMIT {HITS_READ}",
            (name,),
        )
        titles = [row[0] for row in cursor.fetchall()]
        found[name] = rank(name, titles, background, keywords, limit)
    return found
