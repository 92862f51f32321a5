"""The extractive summary a message gives instead of a raw excerpt of the body (AI1's way
without a model).

An issue's body is markdown written for a browser: headings, check boxes, code blocks, a
``<details>`` block with the reporter's environment, HTML comments left by the template. A raw
excerpt of its first 280 characters is mostly that. The extractive summary is what a reader
would take from it: markdown stripped, the first whole sentences, up to the length the source's
excerpt had (``body_excerpt_chars``). Every message says it, with the optional AI on or off; the
AI's summary (mrt_engine/ai/summary.py) replaces it when the AI answers in time. The key fields
(merged, licence, size, …) are lines of their own in every message already.

Stored bodies are one line (:func:`mrt_engine.text.body_text` folds line breaks so a rule's
phrase matches across them), so the marks that begin a markdown line are also recognised after a
space: ``"### Describe the bug When I load"`` reads ``"Describe the bug When I load"``.
"""

from __future__ import annotations

import re

from mrt_engine.text import clean

EXTRACT_CHARS = 320  # characters of a summary when no stored excerpt says otherwise

_FENCE = re.compile(r"```.*?(```|\Z)|~~~.*?(~~~|\Z)", re.DOTALL)
_HTML_COMMENT = re.compile(r"<!--.*?(-->|\Z)", re.DOTALL)
# A collapsed block: what a reader sees of it is its <summary> line, not the point of the text
# (an environment dump, a log). One never closed hides the rest in a browser, and here too.
# (Every pattern here runs in linear time: an unclosed construct ends at the text's end or at
# the next bracket, never scanned again from each later start.)
_DETAILS = re.compile(r"<details\b.*?(?:</details\s*>|\Z)", re.DOTALL | re.IGNORECASE)
_TAG = re.compile(r"</?[A-Za-z][^<>]{0,200}>")
_IMAGE = re.compile(r"!\[([^\[\]]{0,300})\]\([^()\[\]\s]{0,2000}(?:\s[^()\[\]]{0,300})?\)")
_LINK = re.compile(r"\[([^\[\]]{1,300})\]\([^()\[\]\s]{0,2000}(?:\s[^()\[\]]{0,300})?\)")
_LINE_MARK = re.compile(r"^\s{0,3}(?:#{1,6}\s+|>\s?|[-*+]\s+\[[ xX]\]\s+|[-*+]\s+|\d+[.)]\s+)")
# The same marks after a line break that was folded into a space (headings and check boxes:
# a lone "-" or "1." inside a sentence is text).
_FOLDED_MARK = re.compile(r"(?<=\s)(?:#{1,6}|[-*+]\s+\[[ xX]\])\s+")
_TABLE_RULE = frozenset(" :|-")
# Code spans and emphasis, in one pass so a code span's text is left alone. "_" and "__"
# emphasise only outside a word (CommonMark): ``snake_case`` stays as it is. A span holds no
# mark of its own kind (``**a *b* c**`` keeps its outer marks): linear time.
_INLINE = re.compile(
    r"`([^`]{1,500})`"
    r"|\*\*(?=\S)([^*]{1,500}?)(?<=\S)\*\*"
    r"|\*(?=\S)([^*]{1,500}?)(?<=\S)\*"
    r"|(?<!\w)__(?=\S)([^_]{1,500}?)(?<=\S)__(?!\w)"
    r"|(?<!\w)_(?=\S)([^_]{1,500}?)(?<=\S)_(?!\w)"
)
# A heading with nothing under it (its section was a collapsed block or a code block): up to
# eight words without a sentence's end, then the next heading.
_BARE_HEADING = re.compile(r"(?:^|(?<=\s))#{1,6}\s+(?:[^\s.!?。！？#]+\s+){0,7}(?=#{1,6}\s)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？；])")
_CJK_END = ("。", "！", "？", "；")


def strip_markdown(text: str, keep: int | None = None) -> str:
    """Plain lines of a markdown body: no code blocks, comments, collapsed blocks, tags, images,
    link targets, heading/list/quote marks, table rules or emphasis marks. ``keep``: only about
    the first ``keep`` characters are wanted (the blocks are removed from all of ``text`` first,
    then the rest is cut there: the line-by-line work is most of the cost)."""
    text = _FENCE.sub(" ", _HTML_COMMENT.sub(" ", text))
    text = _DETAILS.sub(" ", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _TAG.sub(" ", text)
    if keep is not None and len(text) > keep:
        text = " ".join(text[: 2 * keep].split(" ")[:-1])[:keep]  # whole words (marks) only
    lines = []
    for line in text.splitlines():
        if _rule_line(line):
            continue
        line = _LINE_MARK.sub("", _BARE_HEADING.sub("", line)).replace("|", " ")
        line = _FOLDED_MARK.sub("", line)
        line = _INLINE.sub(_inline_text, line)
        line = " ".join(line.split())
        if line:
            lines.append(line)
    return "\n".join(lines)


def _rule_line(line: str) -> bool:
    """A thematic break (``---``, ``***``, ``___``, a setext ``===``) or a table's rule
    (``|---|:--:|``): no text. (Sets, not a regex: a regex backtracks over long runs of spaces.)"""
    marks = line.replace(" ", "").replace("\t", "")
    if len(marks) >= 3 and marks[0] in "-*_=" and marks == marks[0] * len(marks):
        return True
    return "|" in marks and "-" in marks and set(marks) <= _TABLE_RULE


def _inline_text(match: re.Match[str]) -> str:
    """The text of a code span or an emphasis, without its marks."""
    return next(text for text in match.groups() if text is not None)


def extractive_summary(text: str, limit: int = EXTRACT_CHARS) -> str:
    """The first sentences of ``text`` (markdown stripped), whole, up to ``limit`` characters
    (a first sentence longer than that is cut with an ellipsis)."""
    if limit <= 0:
        return ""
    # Only the start can become the summary; reading markdown is not linear in a long line.
    plain = " ".join(strip_markdown(clean(text[: 25 * limit]), keep=3 * limit).split("\n"))
    if not plain:
        return ""
    out = ""
    for sentence in _SENTENCE_END.split(plain):
        sentence = sentence.strip()
        if not sentence:
            continue
        # Chinese sentences follow each other without a space.
        glue = "" if not out or out.endswith(_CJK_END) else " "
        joined = out + glue + sentence
        if len(joined) > limit:
            break
        out = joined
    if not out:
        out = plain[: limit - 1].rstrip() + "…"
    return out


def message_summary(summary: str, body: str | None) -> str:
    """What a message says of an event's text: the extractive summary of its whole text
    (``body``, stored when longer than ``summary``), at most as long as the stored excerpt
    ``summary`` (the source's ``body_excerpt_chars``; an empty excerpt stays empty)."""
    if not summary:
        return ""
    if not body:  # the excerpt is the whole text
        return extractive_summary(summary, max(len(summary), EXTRACT_CHARS)) or summary
    # Nothing left (all code, or a block longer than what is read): the excerpt, as it was.
    return extractive_summary(body, len(summary)) or summary
