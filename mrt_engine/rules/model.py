"""The rule model (F1): what an operator writes under ``[[rules]]``."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mrt_engine.config import Duration, StrictModel
from mrt_engine.text import clean

# "summary" is the whole text the upstream gave (an issue's body, release notes, an advisory's
# details, up to 64K characters), not only the excerpt that is stored and sent.
TextField = Literal["title", "summary", "labels", "author", "resource_id", "url"]
Action = Literal["notify", "suppress", "tag"]
# What a group key is made of (mrt_engine/delivery/groups.py): "resource" is the repo or model.
GroupField = Literal[
    "source", "source_key", "resource_type", "resource", "event_type", "org", "rule"
]
DEFAULT_GROUP_BY: tuple[GroupField, ...] = ("source", "resource", "event_type")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


def _as_list(value: object) -> object:
    """Let a single string stand for a one-item list (``keywords = "deepseek"``)."""
    return [value] if isinstance(value, str) else value


class RuleBlock(StrictModel):
    """Block list: if any of these matches, the rule does not match."""

    keywords: list[str] = Field(default_factory=list)
    regex: list[str] = Field(default_factory=list)
    author: list[str] = Field(default_factory=list)
    label: list[str] = Field(default_factory=list)
    repo: list[str] = Field(default_factory=list)
    org: list[str] = Field(default_factory=list)
    event_type: list[str] = Field(default_factory=list)

    @field_validator("*", mode="before")
    @classmethod
    def _single_string_is_a_list(cls, value: object) -> object:
        return _as_list(value)


class RuleConfig(StrictModel):
    """A named rule: text patterns, field filters (allow lists), a block list and an action."""

    name: str
    description: str = ""
    enabled: bool = True
    action: Action = "notify"
    priority: int = Field(0, ge=-1000, le=1000)
    # Text: the rule needs one keyword or regex to match in ``fields`` (if any are given).
    keywords: list[str] = Field(default_factory=list)
    regex: list[str] = Field(default_factory=list)
    fields: list[TextField] = Field(default_factory=lambda: ["title", "summary"])
    # Field filters: every list that is given must match (glob patterns, case-insensitive).
    source: list[str] = Field(default_factory=list)
    source_key: list[str] = Field(default_factory=list)
    resource_type: list[str] = Field(default_factory=list)
    event_type: list[str] = Field(default_factory=list)
    repo: list[str] = Field(default_factory=list)
    org: list[str] = Field(default_factory=list)
    label: list[str] = Field(default_factory=list)
    author: list[str] = Field(default_factory=list)
    block: RuleBlock = Field(default_factory=RuleBlock)
    # Effects.
    tags: list[str] = Field(default_factory=list)
    channels: list[str] | None = None  # None: every configured channel
    # Its hits that share these fields go out as one message (see notify.<channel>.group_*);
    # [] : each hit is a message of its own. Protected hits are never grouped.
    group_by: list[GroupField] = Field(default_factory=lambda: list(DEFAULT_GROUP_BY))
    # Its groups' own times (None: the channel's, else delivery's); on channels that group.
    group_wait_seconds: Duration | None = Field(None, ge=0)
    group_interval_seconds: Duration | None = Field(None, ge=0)

    @field_validator(
        "keywords",
        "regex",
        "fields",
        "source",
        "source_key",
        "resource_type",
        "event_type",
        "repo",
        "org",
        "label",
        "author",
        "tags",
        "channels",
        "group_by",
        mode="before",
    )
    @classmethod
    def _single_string_is_a_list(cls, value: object) -> object:
        return _as_list(value)

    @field_validator("name")
    @classmethod
    def _name_is_an_identifier(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"rule names are 1-64 letters, digits, '_', '-', '.', ':' "
                f"(starting with a letter or digit), got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _group_times_need_groups(self) -> RuleConfig:
        for name in ("group_wait_seconds", "group_interval_seconds"):
            if getattr(self, name) is not None and not self.group_by:
                raise ValueError(
                    f"{name} needs a group_by: a rule with group_by = [] sends each hit alone"
                )
        return self

    @model_validator(mode="after")
    def _patterns_compile(self) -> RuleConfig:
        for field_name, patterns in (("regex", self.regex), ("block.regex", self.block.regex)):
            for i, pattern in enumerate(patterns):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(
                        f'rule "{self.name}": {field_name}[{i}] {pattern!r} is not a valid '
                        f"regular expression: {exc}"
                    ) from None
        for i, word in enumerate(self.keywords):
            if not word.strip():
                raise ValueError(f'rule "{self.name}": keywords[{i}] is blank')
            if clean(word) != word:
                raise ValueError(f'rule "{self.name}": keywords[{i}] holds control characters')
        return self


def watch_keywords_rule(keywords: list[str]) -> RuleConfig:
    """The v0 ``watch_keywords`` list as a rule: any keyword in title or summary notifies."""
    return RuleConfig(name="watch_keywords", keywords=keywords, fields=["title", "summary"])
