"""Message text: the title, why it matched, the platform's key fields and the link, cut to fit a
channel without losing the link.

Templates (built in per locale under ``templates/``, or an operator's: ``notify.<channel>.template``
or ``template_file``) render in Jinja2's sandbox with autoescaping off (the output is plain text).
Event text is only ever passed as variables, never as template source, so a title like
``{{ 7*7 }}`` stays literally that; the sandbox keeps an operator's template away from attributes
(``{{ ''.__class__ }}`` is an error, answered by the built-in message, never a lost alert).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from importlib import resources
from types import TracebackType
from typing import Protocol

from jinja2 import StrictUndefined, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from mrt_engine.notify.incident_line import IncidentNote, incident_line
from mrt_engine.notify.locales import EN, LOCALES, bundle_word, headline, label, words
from mrt_engine.text import clean, clean_line, excerpt

HEADLINES = EN.headlines  # the English headlines (locales.py has every locale's)

_TEMPLATES = resources.files("mrt_engine.notify") / "templates"
# The built-in templates by locale, package data (pyproject's package-data ships them).
BUILT_IN = {
    locale: (_TEMPLATES / f"default.{locale}.j2").read_text(encoding="utf-8") for locale in LOCALES
}
DEFAULT_TEMPLATE = BUILT_IN["en"]


class MessageSettings(Protocol):
    """What :func:`render` reads of a channel's settings (:class:`ChannelSettings`)."""

    @property
    def locale(self) -> str: ...

    @property
    def message_template(self) -> str | None: ...


_env = SandboxedEnvironment(
    autoescape=False,
    undefined=StrictUndefined,
    keep_trailing_newline=False,
    trim_blocks=False,
)


FieldValue = str | bool


@dataclass(frozen=True)
class MessageContext:
    """Everything a message may say about one alert. All of it is untrusted except rules/source."""

    event_type: str
    source_key: str
    resource_id: str
    title: str
    url: str
    fingerprint: str
    summary: str = ""  # the extractive summary of the event's text (notify/extractive.py)
    author: str = ""
    labels: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    priority: int = 0
    occurred_at: datetime | None = None
    extra: dict[str, str] = field(default_factory=dict)
    # The platform's key fields, in order: (key, value) with a key of locales.Words.labels
    # (``merged``, ``pipeline_tag``, ...); see mrt_engine/notify/fields.py.
    fields: tuple[tuple[str, FieldValue], ...] = ()
    # A bundle (mrt_engine/delivery/bundles.py): "group", "digest" or "fold", and every alert
    # it carries (this one first). Empty for a message about one alert.
    bundle: str = ""
    items: tuple[MessageContext, ...] = ()
    # Who wrote ``summary`` when the optional AI is on (mrt_engine/ai/summary.py): "ai", or
    # "extractive" (its fallback); "" : AI off (the extractive summary, too).
    summary_by: str = ""
    # The event's whole text as rules read it, when longer than its stored excerpt: what the
    # optional AI is asked to summarise. Never rendered.
    body: str = ""
    # The event's place in its model family's incident (mrt_engine/incidents.py), if any.
    incident: IncidentNote | None = None
    # A bundle of an incident's alike alerts (mrt_engine/incident_clusters.py): what they share
    # (their common title words, or the AI's lines); "" for any other message.
    cluster: str = ""

    @property
    def thread_incident(self) -> IncidentNote | None:
        """The incident this message as a whole belongs to, whose thread it goes into where the
        channel threads: a single alert's, or a bundle of one incident's alike alerts (its
        ``cluster``); other bundles carry alerts of several incidents, and none."""
        return self.incident if not self.items or self.cluster else None

    @property
    def headline(self) -> str:
        return headline(self.event_type)

    @property
    def matched(self) -> str:
        """``deepseek (keyword "deepseek" in title)``; what the reader needs to trust the alert."""
        return self.matched_in("en")

    def matched_in(self, locale: str) -> str:
        """:attr:`matched` with the fixed words of ``locale`` (reasons are the matcher's)."""
        if not self.rules:
            return words(locale).operator
        parts = []
        for i, rule in enumerate(self.rules):
            reason = self.reasons[i] if i < len(self.reasons) else ""
            parts.append(f"{rule} ({reason})" if reason else rule)
        return words(locale).separator.join(parts)

    def subject(self, locale: str = "en") -> str:
        """A subject built only from trusted parts (config names and fixed words)."""
        if self.items:
            return f"[MRT] {bundle_summary(self, locale)}"
        return f"[MRT] {headline(self.event_type, locale)} · {self.source_key}"


class TemplateError(ValueError):
    """An operator template that does not compile."""


@lru_cache(maxsize=64)
def compile_template(source: str):
    """Compile (and cache) a template; raises :class:`TemplateError` with the line."""
    try:
        return _env.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error at line {exc.lineno}: {exc.message}") from None


def check_template(source: str) -> None:
    """Compile ``source`` and render it once over a sample alert in every locale, so a name it
    does not know (``{{ titel }}``) or an attribute the sandbox refuses is a config error with
    its line, not a fallback message at the first alert. Raises :class:`TemplateError`."""
    tpl = compile_template(source)
    for locale in LOCALES:
        try:
            tpl.render(**_values(SAMPLE, locale))
        except Exception as exc:
            raise TemplateError(_runtime_error(exc)) from None


def _runtime_error(exc: Exception) -> str:
    """``template error at line 3: 'titel' is undefined`` (the line from the traceback)."""
    line = _template_line(exc.__traceback__)
    where = f" at line {line}" if line else ""
    return clean_line(f"template error{where}: {type(exc).__name__}: {exc}")


def _template_line(tb: TracebackType | None) -> int | None:
    """The template's line where rendering failed: Jinja2 puts the template's own frames (file
    ``<template>``) into the traceback at their template line."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render(
    context: MessageContext,
    limit: int | None,
    template: str | MessageSettings | None = None,
    *,
    limit_bytes: int | None = None,
) -> str:
    """The message text, at most ``limit`` characters and ``limit_bytes`` UTF-8 bytes (the
    platforms that count bytes: WeCom, DingTalk), always ending with the link if cut.

    ``template``: the channel's settings (their locale and template: pass ``self.settings``),
    or a template's source (English fixed words), or ``None`` for the English built-in one.
    A bundle (``context.items``) is rendered by :func:`render_bundle` (an operator's template
    describes one alert).
    """
    if template is None or isinstance(template, str):
        source, locale = template, "en"
    else:
        source, locale = template.message_template, template.locale
    source = source or BUILT_IN.get(locale, DEFAULT_TEMPLATE)

    def render_chars(chars: int | None) -> str:
        if context.items:
            return render_bundle(context, chars, locale)
        return _render_chars(context, chars, source, locale)

    text = render_chars(limit)
    if limit_bytes is None:
        return text
    # Fewer characters until the bytes fit: a CJK character is 3 bytes, so each step asks for
    # at least the excess over 3 fewer characters (a few renders at most).
    while len(text.encode("utf-8")) > limit_bytes:
        excess = len(text.encode("utf-8")) - limit_bytes
        chars = len(text) - max(excess // 4, 1)
        if chars <= 0:
            return text.encode("utf-8")[:limit_bytes].decode("utf-8", "ignore")
        text = render_chars(chars)
    return text


def _field_value(value: FieldValue, locale: str) -> str:
    if isinstance(value, bool):
        return words(locale).yes if value else words(locale).no
    return clean_line(value)


def _values(ctx: MessageContext, locale: str) -> dict:
    """The template's variables: every piece of event text cleaned to plain text."""
    return {
        "headline": headline(ctx.event_type, locale),
        "matched": clean_line(ctx.matched_in(locale)),
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
        "occurred_at": ctx.occurred_at.strftime("%Y-%m-%d %H:%M UTC") if ctx.occurred_at else "",
        # Key fields: (name in the locale, value) pairs for a loop, and by key for a lookup
        # (``{{ field.pipeline_tag }}``; a missing one is empty).
        "fields": [(label(k, locale), _field_value(v, locale)) for k, v in ctx.fields],
        "field": _Fields({k: _field_value(v, locale) for k, v in ctx.fields}),
        "words": dict(words(locale).labels),
        "locale": locale,
        "summary_by": ctx.summary_by,
        "incident": incident_line(ctx.incident, locale),  # "" unless a later event of one
        **{k: clean_line(v) for k, v in ctx.extra.items()},
    }


class _Fields(dict):
    """Key fields by key for templates: one the platform does not have reads as empty."""

    def __missing__(self, key: str) -> str:
        return ""


def _render_chars(context: MessageContext, limit: int | None, source: str, locale: str) -> str:
    """:func:`render` by characters only."""
    tpl = compile_template(source)

    def _render(ctx: MessageContext) -> str:
        values = _values(ctx, locale)
        try:
            return tpl.render(**values).strip()
        except Exception as exc:  # a bad operator template must not lose the alert
            fallback = compile_template(BUILT_IN.get(locale, DEFAULT_TEMPLATE))
            return f"{fallback.render(**values).strip()}\n({_runtime_error(exc)})"

    text = _render(context)
    if limit is None or len(text) <= limit:
        return text
    # Shorten in order of least value: the excerpt, the key fields' long values (tags), the
    # title, then the reasons.
    over = len(text) - limit
    if context.summary:
        keep = max(len(clean_line(context.summary)) - over - 1, 0)
        shorter = replace(context, summary=excerpt(context.summary, keep) if keep > 8 else "")
        text = _render(shorter)
        context = shorter
    if len(text) > limit and context.fields:
        over = len(text) - limit
        longest = max((len(v) for _, v in context.fields if isinstance(v, str)), default=0)
        cap = max(longest - over - 1, 24)
        context = replace(
            context,
            fields=tuple(
                (k, excerpt(v, cap) if isinstance(v, str) else v) for k, v in context.fields
            ),
        )
        text = _render(context)
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


SAMPLE = MessageContext(
    event_type="pr_merged",
    source_key="github:vllm-project/vllm:pulls",
    resource_id="vllm-project/vllm",
    title="Support DeepSeek-V3",
    url="https://github.com/vllm-project/vllm/pull/1",
    fingerprint="0" * 64,
    summary="An excerpt of the body.",
    author="octocat",
    labels=("new-model",),
    rules=("deepseek",),
    reasons=('keyword "deepseek" in title',),
    tags=("models",),
    priority=500,
    occurred_at=datetime(2026, 1, 1),
    fields=(("author", "octocat"), ("labels", "new-model"), ("merged", True)),
)
"""An alert to check an operator's template against (:func:`check_template`)."""


# ---------------------------------------------------------------------- bundles
def _count_by(values: list[str], locale: str = "en") -> str:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return bundle_word("list", locale).join(f"{k} {n}" for k, n in ordered)


def bundle_summary(context: MessageContext, locale: str = "en") -> str:
    """A bundle's heading, from trusted parts and counts only (it is also an e-mail subject):
    ``12 alerts · New model · huggingface``, ``Digest · 34 alerts (github 20, pypi 14)``; its
    fixed words in ``locale`` (locales.Words.bundle)."""
    items = context.items
    sources = [item.source_key.split(":", 1)[0] for item in items]
    n = len(items)
    count = bundle_word("alert_one" if n == 1 else "alert_many", locale, n=n)
    if context.bundle in ("digest", "fold"):
        return bundle_word(context.bundle, locale, count=count, by=_count_by(sources, locale))
    headlines = {headline(item.event_type, locale) for item in items}
    common = headlines.pop() if len(headlines) == 1 else bundle_word("alerts", locale)
    return f"{count} · {common} · {bundle_word('list', locale).join(sorted(set(sources)))}"


def render_bundle(context: MessageContext, limit: int | None, locale: str = "en") -> str:
    """A bundle's text: its heading, then one line per alert with its link, highest priority
    first, cut at ``limit`` characters with "… and N more" (never a link cut in half); its
    fixed words in ``locale``."""
    items = context.items
    mixed = len({item.event_type for item in items}) > 1
    head = f"[MRT] {bundle_summary(context, locale)}"
    common = {clean_line(item.resource_id).split("/", 1)[0] for item in items}
    if len(common) == 1 and context.bundle == "group":
        head += f" · {common.pop()}"
    rules = list(dict.fromkeys(rule for item in items for rule in item.rules))
    said = words(locale)
    matched = ", ".join(rules) if rules else said.operator
    colon = bundle_word("colon", locale)
    lines = [head, f"{said.labels.get('matched', 'Matched')}{colon}{matched}"]
    if context.cluster:  # untrusted text (titles, the AI's answer): each line cleaned
        summary = " / ".join(clean_line(line) for line in context.cluster.splitlines())
        lines[1] += f"\n{bundle_word('summary', locale)}{colon}{excerpt(summary, 400)}"
    used = len(lines[0]) + 1 + len(lines[1])
    for shown, item in enumerate(items):
        title = excerpt(clean_line(item.title), 100)
        what = f"{headline(item.event_type, locale)}{colon}{title}" if mixed else title
        line = f"- {what} {clean_line(item.url)}".rstrip()
        left = len(items) - shown - 1
        more = "\n" + bundle_word("more", locale, n=left) if left else ""
        if limit is not None and used + 1 + len(line) + len(more) > limit:
            tail = bundle_word("more", locale, n=len(items) - shown)
            if limit is not None and used + 1 + len(tail) > limit:
                return "\n".join(lines)[: max(limit, 0)]
            lines.append(tail)
            return "\n".join(lines)
        lines.append(line)
        used += 1 + len(line)
    return "\n".join(lines)
