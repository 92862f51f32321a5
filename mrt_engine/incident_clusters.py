"""AI3: alike alerts of one incident go out as one message with a summary.

Five users open "DeepSeek-V4 fails to load with FP8" in three repos within minutes: one
incident (:mod:`mrt_engine.incidents`), and, without this, three or five messages. An alert that
joins an incident and whose title is alike (at least ``incidents.cluster_similarity``) to an
earlier alert of the same incident seen within the grouping window (the ``delivery`` section's
longer group time) joins that alert's *cluster*: its outbox rows take the cluster's group key
``incident:<incident id>:cluster:<first event id>``, and so do the earlier alert's rows while they
are still queued and untried. The grouping every alert already has
(:mod:`mrt_engine.delivery.bundles`: ``group_wait`` / ``group_interval``) then sends them as one
message, whose summary says what they share (:func:`shared_words`, or the AI's lines when it is
on: :mod:`mrt_engine.ai.summary`).

Decided in the poll's transaction, right after the incidents are linked, by the local lexical
similarity (character n-gram TF-IDF of :mod:`mrt_engine.ai.similarity`, fitted on the titles
compared): pure Python on a handful of titles, no network, so nothing waits for an endpoint while
the store is held. With ``ai.embedding_model`` set, two titles that both have the endpoint's
embedding are compared by their cosine instead (``incidents.cluster_embedding_similarity``, a
scale of its own): the poll's titles are embedded before its transaction opens
(:mod:`mrt_engine.ai.title_embeddings`), and the transaction only reads them from the store's
cache; a title without one (the endpoint failed, its budget is spent, the poll holds a critical
or protected alert that must not wait) is compared the lexical way. An alert that is never grouped (a protected one, a rule's ``group_by = []``)
or a hit of a rule marked ``critical`` is never put into a cluster nor held for one.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from mrt_engine.ai.similarity import Lexical, cosine
from mrt_engine.text import clean_line
from mrt_engine.timeutil import to_store

if TYPE_CHECKING:
    from mrt_engine.ai.title_embeddings import TitleEmbeddings
    from mrt_engine.incidents import Placed
    from mrt_engine.notify.message import MessageContext

log = logging.getLogger(__name__)

DEFAULT_SIMILARITY = 0.5
DEFAULT_EMBEDDING_SIMILARITY = 0.85
PREFIX = "incident:"
_CLUSTER = ":cluster:"
MAX_CANDIDATES = 200  # earlier alerts of an incident compared, the latest first
# Rows that may still join a cluster: queued, never tried, carrying nothing (bundles.FRESH).
_FRESH = (
    "status IN ('pending', 'retrying') AND kind = 'single' AND attempts = 0"
    " AND lease_owner IS NULL AND group_key IS NOT NULL"
)


@dataclass(frozen=True)
class ClusterSettings:
    """``incidents.cluster_similarity`` (0: off), the window within which an earlier alert may
    be joined, the rules marked ``critical`` (never clustered), and, with an embedding model,
    its titles' embeddings and ``incidents.cluster_embedding_similarity``."""

    similarity: float = DEFAULT_SIMILARITY
    window: timedelta = timedelta(minutes=5)
    critical: frozenset[str] = field(default_factory=frozenset)
    embedding_similarity: float = DEFAULT_EMBEDDING_SIMILARITY
    embeddings: TitleEmbeddings | None = None

    @property
    def on(self) -> bool:
        return self.similarity > 0


def cluster_settings(config, embeddings: TitleEmbeddings | None = None) -> ClusterSettings:
    """The clusters of ``config`` (a :class:`~mrt_engine.config.Config`), as the engine and
    ``replay`` both make them: an earlier alert joined within the ``delivery`` section's longer
    group time; compared by ``embeddings`` when given (the engine's AI)."""
    delivery = config.delivery
    return ClusterSettings(
        config.incidents.cluster_similarity,
        timedelta(seconds=max(delivery.group_wait_seconds, delivery.group_interval_seconds)),
        frozenset(rule.name for rule in config.rules if rule.critical),
        config.incidents.cluster_embedding_similarity,
        embeddings,
    )


def cluster_key(incident_id: int, first_event_id: int) -> str:
    """The group key of an incident's cluster, named by its first event."""
    return f"{PREFIX}{incident_id}{_CLUSTER}{first_event_id}"


def is_cluster_key(key: str | None) -> bool:
    """Whether ``key`` (a delivery's group key) is an incident cluster's."""
    return bool(key) and key.startswith(PREFIX) and _CLUSTER in key


def cluster(cursor, placed: Sequence[Placed], now: datetime, settings: ClusterSettings) -> int:
    """Put each of ``placed`` (events just linked to their incidents, in this transaction)
    into the cluster of its most alike earlier alert, if alike enough; the number clustered."""
    if not settings.on or not placed:
        return 0
    since = to_store(now - settings.window)
    clustered = 0
    for place in placed:
        try:
            clustered += _join(cursor, place, since, settings)
        except Exception:  # clusters only make less noise: never cost the poll its alerts
            log.warning(
                "event %d not clustered: its incident's alerts could not be compared",
                place.event_id,
            )
            log.debug("clustering failed", exc_info=True)
    return clustered


def _join(cursor, place: Placed, since: str, settings: ClusterSettings) -> int:
    mine = _alert(cursor, place.event_id)
    if mine is None or not _clusterable(mine, settings):
        return 0
    title = mine[1]
    # The latest first, by the timeline's index (positions follow the order of linking, so
    # the window's alerts are the first ones read: at most MAX_CANDIDATES rows, whatever the
    # incident's size).
    cursor.execute(
        "SELECT ie.event_id, ie.seen_at FROM incident_event ie WHERE ie.incident_id = ?"
        " AND ie.position < ? ORDER BY ie.position DESC LIMIT ?",
        (place.incident_id, place.position, MAX_CANDIDATES),
    )
    earlier = []
    for event_id, seen_at in cursor.fetchall():
        if seen_at < since:
            break
        earlier.append(event_id)
    candidates = []
    for event_id in earlier:
        found = _alert(cursor, event_id)
        if found is not None and _clusterable(found, settings):
            candidates.append((event_id, found))
    if not candidates:
        return 0
    embeddings = settings.embeddings
    mine_vector = embeddings.cached(title) if embeddings is not None else None
    if embeddings is not None and mine_vector is None:
        log.debug("event %d compared the lexical way: its title has no embedding", place.event_id)
    lexical: Lexical | None = None
    # The most alike of those alike enough, each by its way's threshold (embeddings' cosines
    # and lexical scores are on different scales): the highest score over its threshold.
    best, best_margin = None, 0.0
    for event_id, found in candidates:
        vector = None
        if embeddings is not None and mine_vector is not None:
            vector = embeddings.cached(found[1])
        if vector is not None and mine_vector is not None:
            score = max(0.0, cosine(mine_vector, vector))
            need = settings.embedding_similarity
        else:
            if lexical is None:
                lexical = Lexical().fit([title, *(c[1][1] for c in candidates)])
            score, need = lexical.score(found[1], title)[0], settings.similarity
        if score >= need and score / need > best_margin:
            best, best_margin = (event_id, found), score / need
    if best is None:
        return 0
    event_id, (_alert_id, _title, keys, _rules) = best
    key = next((k for k in keys if is_cluster_key(k)), None)
    if key is None:  # the first alike pair: the cluster is named by the earlier event
        key = cluster_key(place.incident_id, event_id)
        _rekey(cursor, best[1][0], key)
    _rekey(cursor, mine[0], key)
    return 1


def _alert(cursor, event_id: int) -> tuple | None:
    """(alert id, event title, its rows' group keys, its rules) of an alerted event."""
    cursor.execute(
        "SELECT a.id, e.title, a.rules FROM alert a JOIN event e ON e.id = a.event_id"
        " WHERE a.event_id = ? ORDER BY a.id LIMIT 1",
        (event_id,),
    )
    row = cursor.fetchone()
    if row is None:
        return None
    cursor.execute("SELECT DISTINCT group_key FROM delivery WHERE alert_id = ?", (row[0],))
    keys = [r[0] for r in cursor.fetchall()]
    try:
        rules = json.loads(row[2] or "[]")
    except ValueError:
        rules = []
    return row[0], row[1] or "", keys, rules if isinstance(rules, list) else []


def _clusterable(alert: tuple, settings: ClusterSettings) -> bool:
    """An alert whose rows are grouped at all, and no critical rule's hit."""
    _id, _title, keys, rules = alert
    if not keys or any(k is None for k in keys):
        return False
    return not any(isinstance(r, str) and r in settings.critical for r in rules)


def _rekey(cursor, alert_id: int, key: str) -> None:
    """Give ``alert_id``'s rows that may still be grouped the cluster's ``key``."""
    cursor.execute(
        f"UPDATE delivery SET group_key = ? WHERE alert_id = ? AND {_FRESH}"
        " AND NOT EXISTS (SELECT 1 FROM attempt t WHERE t.delivery_id = delivery.id)",
        (key, alert_id),
    )


# ---------------------------------------------------------------------- the summary
_WORD = re.compile(r"\w+")


def summary_of(cursor, key: str, items: Sequence[MessageContext]) -> str:
    """The extractive summary of the cluster ``key`` whose message carries ``items``: the
    :func:`shared_words` of their titles, spelt as the cluster's first event has them when it is
    one of them (the same whichever of its rows carries the message)."""
    titles = sorted(item.title for item in items)  # an order that does not depend on claims
    try:
        cursor.execute("SELECT title FROM event WHERE id = ?", (int(key.rsplit(":", 1)[1]),))
        found = cursor.fetchone()
    except ValueError:  # a key not written here
        found = None
    if found is not None and found[0] in titles:  # its spelling and word order lead
        titles.remove(found[0])
        titles.insert(0, found[0])
    return shared_words(titles)


def shared_words(titles: Collection[str]) -> str:
    """A cluster's extractive summary: the words of its first title that more than half of its
    titles have (case folded), in the first title's order and spelling; the first title when
    they share none."""
    titles = [clean_line(t) for t in titles]
    if not titles:
        return ""
    first = titles[0]
    sets = [{_fold(w) for w in _WORD.findall(t)} for t in titles]
    need = len(titles) // 2 + 1  # more than half
    out: list[str] = []
    seen: set[str] = set()
    for word in _WORD.findall(first):
        folded = _fold(word)
        if folded in seen:
            continue
        if sum(folded in s for s in sets) >= need:
            out.append(word)
            seen.add(folded)
    return " ".join(out) if len(out) >= 2 else first


def _fold(word: str) -> str:
    return unicodedata.normalize("NFKC", word).casefold()
