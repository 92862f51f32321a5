"""AI3 by embeddings: the titles of a poll's alerts, embedded before its transaction opens.

Incident clusters (:mod:`mrt_engine.incident_clusters`) compare an alert's title with the titles
of its incident's earlier alerts inside the poll's transaction, where nothing may wait for the
network. So the pipeline asks for the poll's titles first (:meth:`TitleEmbeddings.ask`: one
request, at most ``ai.embedding_timeout_seconds``), the client keeps each vector in the store's
cache (``ai_cache``, task ``cluster``), and the transaction only reads that cache
(:meth:`TitleEmbeddings.cached`): an earlier alert's title was embedded before its own poll
committed. A failure (timeout, error answer, spent budget) is logged and counted by the client
(``ai_usage``); the embeddings then rest for :data:`~mrt_engine.ai.similarity.REST_SECONDS`, and an
alert whose title has no vector is compared the lexical way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mrt_engine.ai import ledger
from mrt_engine.ai.client import unpack
from mrt_engine.ai.similarity import MAX_TEXT_CHARS, REST_SECONDS
from mrt_engine.text import storable

if TYPE_CHECKING:
    from mrt_engine.ai.client import AiClient

log = logging.getLogger(__name__)

TASK = "cluster"


def _text(title: str) -> str:
    """What is embedded of a title (the client's cache key is this text's hash)."""
    return storable(title[:MAX_TEXT_CHARS])


class TitleEmbeddings:
    """The endpoint's embeddings of alert titles, asked for outside transactions and read from
    the store's cache inside them (thread-safe: polls of several lanes share one)."""

    def __init__(self, client: AiClient) -> None:
        self.client = client
        self._rest_until = 0.0
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return self.client.config.embedding_model

    def ask(self, titles: Sequence[str]) -> bool:
        """Embed ``titles`` (the cached ones cost nothing) within the embedding timeout; False
        when they could not be (the lexical way then answers). Never inside a transaction."""
        texts = list(dict.fromkeys(_text(t) for t in titles if t))
        if not texts:
            return True
        if time.monotonic() < self._rest_until:
            log.debug("cluster embeddings resting after a failure: %d title(s) lexical", len(texts))
            return False
        answer = self.client.embed(
            TASK, texts, timeout=self.client.config.embedding_timeout_seconds
        )
        if answer is None:  # the client logged and recorded why
            with self._lock:
                self._rest_until = time.monotonic() + REST_SECONDS
            return False
        return True

    def cached(self, title: str) -> tuple[float, ...] | None:
        """The stored vector of ``title``, or ``None``: a read of the store, no request, no
        write (safe inside the poll's transaction)."""
        model = self.model
        if not model or not title:
            return None
        found = ledger.cached(self.client.store, TASK, model, ledger.content_hash(_text(title)))
        return None if found is None else unpack(found)
