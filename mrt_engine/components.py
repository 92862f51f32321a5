"""What an engine is made of: sources, channels and rules built from a config and the
environment, with every missing secret reported at once (``mrt-engine check`` builds the same)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mrt_engine import notify, sources
from mrt_engine.config import Config, ConfigError
from mrt_engine.notify.base import Channel, ChannelContext
from mrt_engine.rules.matcher import RuleSet
from mrt_engine.secrets import SecretResolver
from mrt_engine.sources.base import BuildContext, Source
from mrt_engine.timeutil import Clock, utcnow


def compile_rules(config: Config) -> RuleSet:
    """The config's rules (and v0 ``watch_keywords``), routed to the configured channel names,
    plus the built-in rules of configured sources that a user rule of the same name replaces."""
    rules = list(config.rules)
    names = {r.name for r in rules}
    if "osv" in config.source_sections():
        from mrt_engine.sources.osv import default_rules

        rules += [r for r in default_rules() if r.name not in names]
    sections = config.channel_sections()
    floors = {
        n: s.min_priority
        for n, s in sections.items()
        if getattr(s, "min_priority", None) is not None
    }
    return RuleSet.compile(rules, list(sections), config.watch_keywords, floors)


@dataclass
class Components:
    """What the engine is made of, built from a config and the environment."""

    sources: list[Source]
    channels: dict[str, Channel]
    rules: RuleSet
    warnings: list[str] = field(default_factory=list)


def build_components(
    config: Config,
    environ: Mapping[str, str],
    clock: Clock = utcnow,
    resolver: SecretResolver | None = None,
) -> Components:
    """Build sources, channels and rules; every missing required secret is reported at once
    (``resolver``, when given, reads the secrets: the caller sees which variables were named)."""
    resolver = SecretResolver(environ) if resolver is None else resolver
    ctx = BuildContext(
        default_interval=config.poll_interval_seconds,
        secrets=resolver,
        clock=clock,
        environ=environ,
    )
    built_sources: list[Source] = []
    kinds = sources.kinds()
    for name, settings in config.source_sections().items():
        built_sources.extend(kinds[name].build(settings, ctx))
    channel_ctx = ChannelContext(
        secrets=resolver, request_timeout=config.delivery.request_timeout_seconds
    )
    channels: dict[str, Channel] = {}
    channel_kinds = notify.kinds()
    for name, settings in config.channel_sections().items():
        channel = channel_kinds[name].build(settings, channel_ctx)
        if channel is not None:
            channels[name] = channel
    if resolver.errors:
        raise ConfigError(resolver.errors, config.path)
    keys = [s.key for s in built_sources]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ConfigError(
            [f"sources: the same source key is configured twice: {', '.join(duplicates)}"],
            config.path,
        )
    warnings = list(resolver.warnings)
    rules = compile_rules(config)
    if not built_sources:
        warnings.append("no sources are configured: nothing will be polled")
    if not rules.rules:
        warnings.append(
            "no rules and no watch_keywords: events are recorded but nothing is notified"
        )
    if not channels:
        warnings.append("no channels under notify: alerts are recorded but not sent")
    return Components(built_sources, channels, rules, warnings)
