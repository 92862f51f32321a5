"""Sources: one module per platform, each exposing ``KIND`` (a :class:`SourceKind`)."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from mrt_engine.sources.base import BuildContext, PollResult, Source, SourceKind, SourceState

__all__ = ["BuildContext", "PollResult", "Source", "SourceKind", "SourceState", "kinds"]


@cache
def kinds() -> dict[str, SourceKind]:
    """Every platform module in this package, by config section name."""
    found: dict[str, SourceKind] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        kind = getattr(module, "KIND", None)
        if isinstance(kind, SourceKind):
            found[kind.name] = kind
    return dict(sorted(found.items()))
