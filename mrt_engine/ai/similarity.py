"""AI2: how alike an event's text is to a rule's ``topic`` (0 to 1).

Two ways, one interface (:class:`Similarity`): local lexical similarity — character 2- and
3-gram TF-IDF vectors and their cosine, pure Python, working for Chinese as for English, no
network — and, when ``ai.embedding_model`` is set, the cosine of the endpoint's embeddings.

The engine (and ``replay``) fit the lexical way's IDF on the titles of the store's latest
events when they start (:func:`fit_topics`): grams every title has ("fix", "the") weigh less than
the ones that say what an event is about. Topic rules work with the AI off, by the lexical way.

Cost in a poll: the matcher asks only for events that a topic rule's cheap filters (source,
source key, type, repo, org, author, labels, block list) let through, and rules are evaluated
before a poll's transaction opens, so an embedding request never holds the store. Each text is
embedded once (the store's cache); a request waits at most ``ai.embedding_timeout_seconds``;
after any failure the embeddings rest for :data:`REST_SECONDS` and the lexical way answers
meanwhile, so a dead endpoint costs a poll one timeout a minute at most.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mrt_engine.ai.client import AiClient

log = logging.getLogger(__name__)

REST_SECONDS = 60.0
MAX_TEXT_CHARS = 2000  # of an event's fields: the start says what it is about
_NOT_WORD = re.compile(r"[\W_]+")


def _normal(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return " " + " ".join(_NOT_WORD.sub(" ", text).split()) + " "


def grams(text: str) -> Counter[str]:
    """Character 2- and 3-grams of the normalised text (case, width and punctuation folded);
    grams that are only spaces are left out."""
    norm = _normal(text[:MAX_TEXT_CHARS])
    found: Counter[str] = Counter()
    for size in (2, 3):
        for i in range(len(norm) - size + 1):
            gram = norm[i : i + size]
            if gram.strip():
                found[gram] += 1
    return found


class Similarity(Protocol):
    """How alike ``text`` is to ``topic`` (0 to 1), and by which way (for a hit's reason)."""

    def score(self, topic: str, text: str) -> tuple[float, str]: ...


class Lexical:
    """TF-IDF over character n-grams. Document frequencies come from :meth:`fit` (texts seen
    before, e.g. stored event titles); unfitted, every gram weighs the same (plain n-gram
    cosine), which is deterministic and still ranks texts by shared words and characters."""

    def __init__(self) -> None:
        self._df: Counter[str] = Counter()
        self._docs = 0
        self._topics: dict[str, dict[str, float]] = {}

    def fit(self, texts: Iterable[str]) -> Lexical:
        """Learn document frequencies from ``texts`` (rare grams then weigh more)."""
        for text in texts:
            self._df.update(set(grams(text)))
            self._docs += 1
        self._topics.clear()
        return self

    def vector(self, text: str) -> dict[str, float]:
        """The text's unit TF-IDF vector (sublinear term frequency)."""
        docs = self._docs
        weights = {}
        for gram, count in grams(text).items():
            idf = math.log((1 + docs) / (1 + self._df.get(gram, 0))) + 1.0 if docs else 1.0
            weights[gram] = (1.0 + math.log(count)) * idf
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        return {g: w / norm for g, w in weights.items()}

    def score(self, topic: str, text: str) -> tuple[float, str]:
        wanted = self._topics.get(topic)
        if wanted is None:
            wanted = self._topics[topic] = self.vector(topic)
        have = self.vector(text)
        small, large = (have, wanted) if len(have) < len(wanted) else (wanted, have)
        return sum(w * large.get(g, 0.0) for g, w in small.items()), "lexical"


def cosine(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


class Embeddings:
    """Cosine of the endpoint's embeddings; the lexical way while they fail (see the module)."""

    def __init__(self, client: AiClient, fallback: Similarity | None = None) -> None:
        self.client = client
        self.fallback = fallback or Lexical()
        self._rest_until = 0.0
        self._lock = threading.Lock()

    def score(self, topic: str, text: str) -> tuple[float, str]:
        if time.monotonic() < self._rest_until:
            return self.fallback.score(topic, text)
        answer = self.client.embed(
            "topic",
            [topic, text[:MAX_TEXT_CHARS]],
            timeout=self.client.config.embedding_timeout_seconds,
        )
        if answer is None:  # the client logged and recorded why
            with self._lock:
                self._rest_until = time.monotonic() + REST_SECONDS
            return self.fallback.score(topic, text)
        return max(0.0, cosine(answer.vectors[0], answer.vectors[1])), "embedding"


LEXICAL = Lexical()
"""The similarity of every topic rule unless the engine gives embeddings."""


FIT_EVENTS = 2000  # the latest stored events' titles that give the lexical way its IDF


def fit_topics(rules, store) -> Lexical | None:
    """Give ``rules``' topic rules a lexical similarity fitted on the titles of the store's
    latest events (rare grams weigh more), as the engine and ``replay`` both judge them;
    ``None`` (nothing read) when no rule has a topic."""
    if not rules.topic_rules:
        return None
    cursor = store.db.execute_sql(f"SELECT title FROM event ORDER BY id DESC LIMIT {FIT_EVENTS}")
    lexical = Lexical().fit(row[0] for row in cursor.fetchall())
    rules.use_similarity(lexical)
    return lexical
