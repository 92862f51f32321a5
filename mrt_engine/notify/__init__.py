"""Channels: one module per channel, each exposing ``KIND`` (a :class:`ChannelKind`)."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from mrt_engine.notify.base import (
    Channel,
    ChannelContext,
    ChannelKind,
    ChannelSettings,
    Outgoing,
    SendResult,
)

__all__ = [
    "Channel",
    "ChannelContext",
    "ChannelKind",
    "ChannelSettings",
    "Outgoing",
    "SendResult",
    "kinds",
]

_NOT_CHANNELS = {"base", "message"}


@cache
def kinds() -> dict[str, ChannelKind]:
    """Every channel module in this package, by config section name."""
    found: dict[str, ChannelKind] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name in _NOT_CHANNELS:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        kind = getattr(module, "KIND", None)
        if isinstance(kind, ChannelKind):
            found[kind.name] = kind
    return dict(sorted(found.items()))
