"""What the group-robot channel tests (Feishu, DingTalk, WeCom) share: building a channel the
way the engine does (settings from a config dict, secrets from an environment), the messages
they send, and a hostile one."""

from __future__ import annotations

from typing import Any

from mrt_engine.notify import ChannelContext, Outgoing
from mrt_engine.notify.message import MessageContext
from mrt_engine.secrets import SecretResolver

LINK = "https://huggingface.co/deepseek-ai/DeepSeek_V4~beta"
HOSTILE_TITLE = (
    '[click me](http://evil.example/x) ![img](http://evil.example/i.png) <at user_id="all"></at>'
    " <@all> {{ 7*7 }} \x1b[31mred\x1b[0m **bold** `code` # not a heading"
)
# 30,000 characters of Chinese (90,000 bytes), with markup at the starts of its lines.
HOSTILE_BODY = "\n".join(["# 标题 > 引用 - 列表 [链接](http://evil.example)", "深度求索" * 7500])


def build(module: Any, settings: dict[str, Any], env: dict[str, str]) -> tuple[Any, list[str]]:
    """``module.KIND``'s channel from a ``notify.<name>`` section, and the config errors."""
    resolver = SecretResolver(env)
    parsed = module.KIND.settings.model_validate(settings)
    channel = module.KIND.build(parsed, ChannelContext(resolver, 5.0))
    return channel, resolver.errors


def context(**overrides: Any) -> MessageContext:
    values: dict[str, Any] = {
        "event_type": "model_added",
        "source_key": "huggingface:deepseek-ai:models",
        "resource_id": "deepseek-ai/DeepSeek_V4~beta",
        "title": "deepseek-ai/DeepSeek_V4~beta",
        "url": LINK,
        "fingerprint": "f" * 64,
        "summary": "a new model",
        "rules": ("watch_deepseek",),
        "reasons": ('keyword "deepseek" in title',),
    }
    values.update(overrides)
    return MessageContext(**values)


def hostile() -> MessageContext:
    return context(title=HOSTILE_TITLE, summary=HOSTILE_BODY, author="[x](http://evil.example)")


def outgoing(ctx: MessageContext | None = None, delivery_id: int = 7) -> Outgoing:
    return Outgoing(delivery_id, 1, ctx or context())


def rule_routed_config(channel: str, section: dict[str, Any]) -> dict[str, Any]:
    """A gh_tracker config whose only channel is ``channel``, with a rule that routes to it."""
    return {
        "watch_keywords": [],
        "notify": {"welink": None, channel: section},
        "rules": [{"name": f"to_{channel}", "keywords": ["deepseek"], "channels": [channel]}],
    }
