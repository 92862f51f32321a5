"""Message text: the title, why it matched, and the link, cut to fit a channel without losing the link.

Templates (built in, or an operator's under ``notify.<channel>.template``) render in Jinja2's
sandbox with autoescaping off (the output is plain text). Event text is only ever passed as
variables, never as template source, so a title like ``{{ 7*7 }}`` stays literally that.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache

from jinja2 import StrictUndefined, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from mrt_engine.text import clean, clean_line, excerpt

HEADLINES = {
    "issue_opened": "New issue",
    "issue_closed": "Issue closed",
    "pr_opened": "New PR",
    "pr_merged": "PR merged",
    "pr_closed": "PR closed",
    "release_published": "Release published",
    "tag_created": "New tag",
    "model_added": "New model",
    "model_updated": "Model updated",
    "model_removed": "Model removed",
    "version_released": "New version",
    "image_tag_pushed": "Image pushed",
    "advisory_published": "Security advisory",
    "service_version_published": "Service version published",
    "service_version_stable": "Service version stable",
    "service_checksum_changed": "CHECKSUM CHANGED",
    "feed_entry": "New entry",
    "source_unhealthy": "Source unhealthy",
    "source_recovered": "Source recovered",
}

DEFAULT_TEMPLATE = """\
[MRT] {{ headline }} · {{ resource_id }}
{{ title }}
Matched: {{ matched }}
{% if author or labels %}{% if author %}By {{ author }}{% endif %}\
{% if author and labels %} · {% endif %}\
{% if labels %}Labels: {{ labels | join(", ") }}{% endif %}
{% endif %}\
{% if summary %}{{ summary }}
{% endif %}\
{{ url }}"""

_env = SandboxedEnvironment(
    autoescape=False,
    undefined=StrictUndefined,
    keep_trailing_newline=False,
    trim_blocks=False,
)


@dataclass(frozen=True)
class MessageContext:
    """Everything a message may say about one alert. All of it is untrusted except rules/source."""

    event_type: str
    source_key: str
    resource_id: str
    title: str
    url: str
    fingerprint: str
    summary: str = ""
    author: str = ""
    labels: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    priority: int = 0
    occurred_at: datetime | None = None
    extra: dict[str, str] = field(default_factory=dict)
    # A bundle (mrt_engine/delivery/bundles.py): "group", "digest" or "fold", and every alert
    # it carries (this one first). Empty for a message about one alert.
    bundle: str = ""
    items: tuple[MessageContext, ...] = ()

    @property
    def headline(self) -> str:
        return HEADLINES.get(self.event_type, self.event_type.replace("_", " "))

    @property
    def matched(self) -> str:
        """``deepseek (keyword "deepseek" in title)``; what the reader needs to trust the alert."""
        if not self.rules:
            return "sent by an operator"
        parts = []
        for i, rule in enumerate(self.rules):
            reason = self.reasons[i] if i < len(self.reasons) else ""
            parts.append(f"{rule} ({reason})" if reason else rule)
        return "; ".join(parts)

    def subject(self) -> str:
        """A subject built only from trusted parts (config names and fixed words)."""
        if self.items:
            return f"[MRT] {bundle_summary(self)}"
        return f"[MRT] {self.headline} · {self.source_key}"


class TemplateError(ValueError):
    """An operator template that does not compile."""


@lru_cache(maxsize=64)
def compile_template(source: str):
    """Compile (and cache) a template; raises :class:`TemplateError` with the line."""
    try:
        return _env.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error at line {exc.lineno}: {exc.message}") from None


def render(
    context: MessageContext,
    limit: int | None,
    template: str | None = None,
    *,
    limit_bytes: int | None = None,
) -> str:
    """The message text, at most ``limit`` characters and ``limit_bytes`` UTF-8 bytes (the
    platforms that count bytes: WeCom, DingTalk), always ending with the link if cut."""
    render_chars = render_bundle if context.items else _render_chars
    text = render_chars(context, limit, template)
    if limit_bytes is None:
        return text
    # Fewer characters until the bytes fit: a CJK character is 3 bytes, so each step asks for
    # at least the excess over 3 fewer characters (a few renders at most).
    while len(text.encode("utf-8")) > limit_bytes:
        excess = len(text.encode("utf-8")) - limit_bytes
        chars = len(text) - max(excess // 4, 1)
        if chars <= 0:
            return text.encode("utf-8")[:limit_bytes].decode("utf-8", "ignore")
        text = render_chars(context, chars, template)
    return text


def _render_chars(context: MessageContext, limit: int | None, template: str | None) -> str:
    """:func:`render` by characters only."""
    tpl = compile_template(template or DEFAULT_TEMPLATE)

    def _render(ctx: MessageContext) -> str:
        values = {
            "headline": ctx.headline,
            "matched": clean_line(ctx.matched),
            "title": clean_line(ctx.title),
            "summary": clean(ctx.summary).strip(),
            "url": clean_line(ctx.url),
            "author": clean_line(ctx.author),
            "labels": [clean_line(lb) for lb in ctx.labels],
            "resource_id": clean_line(ctx.resource_id),
            "source_key": ctx.source_key,
            "event_type": ctx.event_type,
            "rules": list(ctx.rules),
            "tags": list(ctx.tags),
            "priority": ctx.priority,
            "fingerprint": ctx.fingerprint,
            "occurred_at": ctx.occurred_at.strftime("%Y-%m-%d %H:%M UTC")
            if ctx.occurred_at
            else "",
            **{k: clean_line(v) for k, v in ctx.extra.items()},
        }
        try:
            return tpl.render(**values).strip()
        except Exception as exc:  # a bad operator template must not lose the alert
            fallback = compile_template(DEFAULT_TEMPLATE).render(**values).strip()
            return f"{fallback}\n(template error: {type(exc).__name__}: {exc})"

    text = _render(context)
    if limit is None or len(text) <= limit:
        return text
    # Shorten in order of least value: the excerpt, then the title, then the reasons.
    over = len(text) - limit
    if context.summary:
        keep = max(len(clean_line(context.summary)) - over - 1, 0)
        shorter = replace(context, summary=excerpt(context.summary, keep) if keep > 8 else "")
        text = _render(shorter)
        context = shorter
    if len(text) > limit:
        over = len(text) - limit
        keep = max(len(clean_line(context.title)) - over - 1, 20)
        context = replace(context, title=excerpt(context.title, keep))
        text = _render(context)
    if len(text) > limit:
        over = len(text) - limit
        keep = max(len(context.matched) - over - 1, 0)
        reasons = tuple(
            excerpt(r, max(keep // max(len(context.reasons), 1), 8)) for r in context.reasons
        )
        context = replace(context, reasons=reasons)
        text = _render(context)
    if len(text) > limit:
        url = clean_line(context.url)
        body = text.replace(url, "").rstrip() if url else text
        room = limit - len(url) - 2
        text = (body[:room].rstrip() + "…\n" + url) if room > 0 else url[:limit]
    return text


# ---------------------------------------------------------------------- bundles
def _count_by(values: list[str]) -> str:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def bundle_summary(context: MessageContext) -> str:
    """A bundle's heading, from trusted parts and counts only (it is also an e-mail subject):
    ``12 alerts · New model · huggingface``, ``Digest · 34 alerts (github 20, pypi 14)``."""
    items = context.items
    sources = [item.source_key.split(":", 1)[0] for item in items]
    count = f"{len(items)} alert{'s' if len(items) != 1 else ''}"
    if context.bundle == "digest":
        return f"Digest · {count} ({_count_by(sources)})"
    if context.bundle == "fold":
        return f"{count} at once ({_count_by(sources)})"
    headlines = {item.headline for item in items}
    headline = headlines.pop() if len(headlines) == 1 else "alerts"
    return f"{count} · {headline} · {', '.join(sorted(set(sources)))}"


def render_bundle(context: MessageContext, limit: int | None, template: str | None = None) -> str:
    """A bundle's text: its heading, then one line per alert with its link, highest priority
    first, cut at ``limit`` characters with "… and N more" (never a link cut in half)."""
    del template  # an operator's template describes one alert
    items = context.items
    mixed = len({item.event_type for item in items}) > 1
    head = f"[MRT] {bundle_summary(context)}"
    common = {clean_line(item.resource_id).split("/", 1)[0] for item in items}
    if len(common) == 1 and context.bundle == "group":
        head += f" · {common.pop()}"
    rules = list(dict.fromkeys(rule for item in items for rule in item.rules))
    lines = [head, f"Matched: {', '.join(rules) if rules else 'sent by an operator'}"]
    used = len(lines[0]) + 1 + len(lines[1])
    for shown, item in enumerate(items):
        title = excerpt(clean_line(item.title), 100)
        what = f"{item.headline}: {title}" if mixed else title
        line = f"- {what} {clean_line(item.url)}".rstrip()
        left = len(items) - shown - 1
        more = f"\n… and {left} more" if left else ""
        if limit is not None and used + 1 + len(line) + len(more) > limit:
            tail = f"… and {len(items) - shown} more"
            if limit is not None and used + 1 + len(tail) > limit:
                return "\n".join(lines)[: max(limit, 0)]
            lines.append(tail)
            return "\n".join(lines)
        lines.append(line)
        used += 1 + len(line)
    return "\n".join(lines)
