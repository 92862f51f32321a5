"""Model Release Tracker engine: polls upstreams, matches rules, delivers alerts, crash-safe."""

__version__ = "1.0.0"
