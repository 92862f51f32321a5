"""Untrusted text inside a chat platform's markup: made inert, and fitted to a size limit.

Group robots (DingTalk, WeCom, Feishu) render a subset of Markdown, or parse mention tags
(``<at user_id="all">``, ``<@userid>``) even in plain text. A real escape is used where the
platform documents one, and a character is replaced by its full-width form (``[`` becomes
``［``: every renderer shows it as text, and a reader still reads it) only where none exists:

* DingTalk's and WeCom's markdown: their documentation (DingTalk "message types", WeCom "group
  robot" markdown) lists the syntax they render and no escape; their renderers are not
  CommonMark, so a backslash they ignore would leave ``\\[x](http://evil)`` a live link. The
  characters that make markup are shown full-width (:func:`escape_markdown`).
* Slack's mrkdwn (slack.py): Slack documents only ``&amp;`` ``&lt;`` ``&gt;``, which it decodes,
  and says nothing else is; those three are used, and ``* _ ~ ` `` (which have no escape) are
  shown full-width (:func:`full_width`).
* Feishu's post and text messages are not Markdown: only tags are made inert
  (:func:`neutralize_tags`, full-width ``<`` ``>``: Feishu documents no escape for a tag).

An underscore between two letters or digits stays as it is (``deepseek_v3_base``): it can
neither open nor close emphasis (CommonMark §6.2's flanking rules, and Slack's), and in a
renderer that still italicised it nothing but the style of a few letters could change.

The link of a message is the one part that must stay a link: :func:`markdown_with_link` cuts
the rendered text around it, escapes the rest, and writes the link as ``[url](url)`` with every
character that could end or format it percent-encoded (RFC 3986 §2.3: an unreserved character
and its percent-encoding name the same resource).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import quote, urlsplit

T = TypeVar("T")

_FULL_WIDTH = {c: chr(ord(c) + 0xFEE0) for c in "!#*+-.<=>[\\]_`|~()"}
# Anywhere in a line: links and images ([ ] !), tags and mentions (< >), emphasis, code,
# strike-through and tables (* _ ` ~ |), and the backslash itself.
_INLINE = str.maketrans({c: _FULL_WIDTH[c] for c in "[]<>*_`~|\\"})
# Only at the start of a line: headings, quotes, lists, rules and setext underlines.
_LINE_START = re.compile(r"^([ \t]*)([#>+=-]|\d+[.)])", re.MULTILINE)
# Kept as they are in a link's destination: the URL's own delimiters (RFC 3986 §2.2) and
# existing escapes; "(", ")", "*" and the rest are encoded so they cannot end or format it.
_URL_SAFE = ":/?#@!$&'+,;=%"


# A full-width underscore between two letters or digits (of any script): the intraword case.
_INTRAWORD_UNDERSCORE = re.compile(r"(?<=[^\W_])\uff3f(?=[^\W_])")


def full_width(text: str, chars: str) -> str:
    """``text`` with each of ``chars`` in its full-width form, except an underscore inside a
    word (see the module's docstring)."""
    shown = text.translate(str.maketrans({c: _FULL_WIDTH[c] for c in chars}))
    return _INTRAWORD_UNDERSCORE.sub("_", shown) if "_" in chars else shown


def escape_markdown(text: str) -> str:
    """``text`` as literal characters in any Markdown dialect: no link, image, heading, quote,
    list, emphasis, code, table, HTML tag or mention can come out of it."""

    def _line_start(match: re.Match[str]) -> str:
        mark = match.group(2)
        return match.group(1) + "".join(_FULL_WIDTH.get(c, c) for c in mark)

    shown = _INTRAWORD_UNDERSCORE.sub("_", text.translate(_INLINE))
    return _LINE_START.sub(_line_start, shown)


def neutralize_tags(text: str) -> str:
    """``text`` with no ``<...>`` tag: plain-text messages still parse ``<at ...>`` (Feishu)
    and ``<@userid>`` (WeCom) as mentions, so an event's title could ping a whole group."""
    return text.replace("<", _FULL_WIDTH["<"]).replace(">", _FULL_WIDTH[">"])


def link_target(url: str) -> str | None:
    """``url`` safe inside ``[..](..)`` (percent-encoded where needed), or ``None`` when it is
    not an http(s) URL (a ``javascript:`` link is never made clickable)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    # quote() never encodes "_.-~"; "_" and "~" format text in some dialects.
    return quote(url, safe=_URL_SAFE).replace("_", "%5F").replace("~", "%7E")


def markdown_with_link(text: str, url: str, *, line_break: str = "\n") -> str:
    """The rendered ``text`` as Markdown: every part escaped except ``url``, which becomes a
    link wherever it appears. ``line_break`` joins lines (some dialects need a blank line)."""
    target = link_target(url) if url else None
    lines = []
    for line in text.split("\n"):
        if target is None:
            lines.append(escape_markdown(line))
            continue
        pieces = line.split(url)
        lines.append(f"[{target}]({target})".join(escape_markdown(p) for p in pieces))
    return line_break.join(lines)


def fit(make: Callable[[int], T], size: Callable[[T], int], limit: int) -> T:
    """``make(budget)`` with the largest budget (from ``limit`` down) whose result's ``size``
    is at most ``limit``: markup and JSON escaping make a message longer than the text that
    was rendered for it, by a factor that depends on the text, so the budget shrinks in
    proportion to the excess until it fits (a few renders at most)."""
    budget = limit
    result = make(budget)
    for _ in range(30):
        measured = size(result)
        if measured <= limit or budget <= 1:
            return result
        budget = max(min(budget - 1, budget * limit // measured), 1)
        result = make(budget)
    return result
