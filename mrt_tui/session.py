"""What the console works on: a store, maybe an engine in this process, and who acts.

Three modes: ``embedded`` (the engine runs in this process), ``attach`` (a separate
``mrt-engine run`` owns the engine; the console only opens the store, and its actions are rows
that engine picks up) and ``demo`` (embedded, against simulated upstreams on 127.0.0.1).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from mrt_engine import operations
from mrt_engine.config import Config, load_config
from mrt_engine.store.db import Store, open_store
from mrt_engine.store.views import SourceView
from mrt_engine.store.watch import watch_store
from mrt_engine.timeutil import utcnow

log = logging.getLogger(__name__)


class ConsoleSession:
    """The store (and engine) behind one console."""

    def __init__(
        self,
        store: Store,
        *,
        mode: str,
        engine: Any | None = None,
        config: Config | None = None,
        clock: Callable[[], datetime] = utcnow,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.mode = mode
        self.engine = engine
        self.config = config
        self.clock = clock
        self.actor = operations.actor_name("tui")
        self._on_close = on_close
        self._closed = False
        self._watch = watch_store(store)

    def store_version(self) -> tuple[int, int] | None:
        """Changes whenever anything is committed to the store (None: cannot tell now); views
        read again only when it did."""
        return self._watch.version()

    def idle_revision(self) -> int:
        """Changes with every idle poll of the engine in this process, which commits nothing
        until its flush (0 when attached: the store is all there is to show)."""
        pipeline = getattr(self.engine, "pipeline", None)
        return pipeline.idle.revision if pipeline is not None else 0

    @cached_property
    def channels(self) -> list[str]:
        """Channel names from the config (or, attached by path only, from the outbox's rows
        when the console opens). Read once: key bindings ask on every refresh."""
        if self.config is not None:
            return list(self.config.channel_sections())
        from mrt_engine.store import feed

        with self.store.read():
            return feed.channel_names()

    @cached_property
    def rules(self):
        """The compiled rules, when a config is known (compiled once, not per key binding)."""
        if self.engine is not None:
            return self.engine.rules
        if self.config is not None:
            from mrt_engine.components import compile_rules

            return compile_rules(self.config)
        return None

    def source_states(self) -> list[SourceView]:
        """Every source's state. With the engine in this process, the times of its idle polls
        are live; attached, they are as the engine last wrote them (at most a minute late:
        ``scheduler.idle_flush_seconds``)."""
        from mrt_engine.store import queries

        rows = queries.source_states()
        pipeline = getattr(self.engine, "pipeline", None)
        return pipeline.idle.live(rows) if pipeline is not None else rows

    def describe(self) -> str:
        where = self.store
        return {
            "embedded": f"embedded engine · {where}",
            "attach": f"attached to {where}",
            "demo": "demo · simulated upstreams on 127.0.0.1",
        }.get(self.mode, str(where))

    def close(self) -> None:
        """Stop the engine cleanly (embedded and demo modes) and close the store."""
        if self._closed:
            return
        self._closed = True
        self._watch.close()
        if self.engine is not None:
            self.engine.stop()  # closes the store it opened
        else:
            self.store.close()
        if self._on_close is not None:
            self._on_close()


def embedded(
    config_path: str | Path,
    *,
    mode: str = "embedded",
    environ: dict[str, str] | None = None,
    on_close: Callable[[], None] | None = None,
) -> ConsoleSession:
    """Start the engine of ``config_path`` in background threads and return its session."""
    from mrt_engine.engine import Engine

    config = load_config(config_path)
    engine = Engine(config, environ=environ)
    engine.start()
    assert engine.store is not None
    return ConsoleSession(engine.store, mode=mode, engine=engine, config=config, on_close=on_close)


def attached(
    *, config_path: str | Path | None = None, db: str | Path | None = None
) -> ConsoleSession:
    """Open the store that a separate ``mrt-engine run`` writes."""
    config = load_config(config_path) if config_path else None
    if db:
        where: Any = db
        if "://" in str(db) and config is not None:
            from mrt_engine.store.location import parse_location

            where = parse_location(str(db), password_env=config.state.password_env)
        elif "://" not in str(db):
            where = Path(db)
    else:
        where = config.store_location  # type: ignore[union-attr]
    return ConsoleSession(open_store(where, create=False), mode="attach", config=config)
