"""Model names: the model family an id or a free text is about (what an incident groups by).

``DeepSeek-V3.2-Exp``, ``deepseek-ai/DeepSeek-V3.2-Exp-Base`` and "Support deepseek v3.2" are
one family, ``DeepSeek-V3.2``; ``Qwen3-235B-A22B-FP8`` and "qwen3 235b" are ``Qwen3``, which is
not ``Qwen2.5``. A name says its org (from a ``org/name`` id), family, version, line (``VL``,
``Coder``: a different model, so part of the family), size (``235B-A22B``) and variants
(``Instruct``, ``FP8``, ``GGUF``, ``Distill`` …, the same family).

Only known families are recognised: free text is full of version-like words ("Python 3.12",
"CUDA 12.4", "vLLM 0.10") that are not models, and a wrong family would link unrelated alerts.
A family whose names always carry a version (Qwen, Llama, DeepSeek …) needs it: "fix the Qwen
tokenizer" names no family.

Cost: one compiled alternation finds family words (no nested quantifiers: linear in the text),
and each find reads at most :data:`MAX_TOKENS` short tokens after it. A text is read up to
:data:`MAX_CHARS` characters. The alternation tries every family at every character (it starts
with a lookbehind, so the regex engine cannot skip ahead), several times the cost of a few
substring tests: an ASCII text that holds none of the families' plain words (most issue bodies)
is ruled out by those first, and a family is the first name found (the rest is not read).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

MAX_CHARS = 20_000  # of a body: a model named past that is not what the text is about
MAX_TOKENS = 8  # read after a family word


@dataclass(frozen=True)
class Family:
    """A known family: how it is written and how its versions look."""

    key: str  # lower-case, the start of every family key
    display: str  # how it is shown: "DeepSeek"
    pattern: str  # regex of its name (no capture groups)
    version: str = r"\d+(?:\.\d+)?"  # regex of a version token (lower-case)
    joiner: str = "-"  # between display and version: "DeepSeek-V3.2", "Qwen3"
    needs_version: bool = True  # a bare mention ("the Qwen tokenizer") is no family
    versioned_key: bool = True  # whether the version is part of the family key
    lines: tuple[str, ...] = ()  # sub-lines that are other models: "vl", "coder"


FAMILIES: tuple[Family, ...] = (
    Family(
        "deepseek",
        "DeepSeek",
        r"deepseek|深度求索",
        version=r"[vr]\d+(?:\.\d+)?",
        lines=("coder", "vl", "vl2", "math", "prover", "ocr", "janus"),
    ),
    Family(
        "qwen",
        "Qwen",
        r"qwen|通义千问|千问",
        joiner="",
        lines=("vl", "coder", "math", "omni", "audio", "next", "embedding", "reranker", "image"),
    ),
    Family("qwq", "QwQ", r"qwq", needs_version=False, versioned_key=False),
    Family("llama", "Llama", r"llama", lines=("vision", "guard", "nemotron")),
    Family("mixtral", "Mixtral", r"mixtral", needs_version=False, versioned_key=False),
    Family(
        "mistral",
        "Mistral",
        r"mistral",
        needs_version=False,
        versioned_key=False,
        lines=("small", "medium", "large", "nemo"),
    ),
    Family("gemma", "Gemma", r"gemma", lines=("3n",)),
    Family("phi", "Phi", r"phi", lines=("mini", "vision", "moe", "reasoning")),
    Family("glm", "GLM", r"glm|智谱", lines=("v", "air", "flash")),
    Family("chatglm", "ChatGLM", r"chatglm", joiner=""),
    Family("kimi", "Kimi", r"kimi", version=r"k\d+(?:\.\d+)?", lines=("vl", "dev", "audio")),
    Family("minimax", "MiniMax", r"minimax", version=r"m\d+(?:\.\d+)?"),
    Family("internlm", "InternLM", r"internlm", joiner=""),
    Family("internvl", "InternVL", r"internvl", joiner=""),
    Family("baichuan", "Baichuan", r"baichuan|百川", joiner=""),
    Family("hunyuan", "Hunyuan", r"hunyuan|混元", needs_version=False, versioned_key=False),
    Family("ernie", "ERNIE", r"ernie|文心", lines=("vl",)),
    Family("gpt-oss", "gpt-oss", r"gpt[-_ ]oss", needs_version=False, versioned_key=False),
    Family("wan", "Wan", r"wan", version=r"2\.\d+", joiner=""),
    Family(
        "sdxl",
        "SDXL",
        r"stable[-_ ]diffusion[-_ ]xl|sd[-_ ]?xl",
        needs_version=False,
        versioned_key=False,
        lines=("turbo", "refiner", "lightning"),
    ),
    Family("flux", "FLUX", r"flux", joiner=".", lines=("dev", "schnell", "kontext")),
    Family("seed-oss", "Seed-OSS", r"seed[-_ ]oss", needs_version=False, versioned_key=False),
    Family("nemotron", "Nemotron", r"nemotron", needs_version=False, versioned_key=False),
)
_BY_KEY = {f.key: f for f in FAMILIES}

# Family words, longest alternatives first (``chatglm`` before ``glm``), not inside a longer
# word: no letter or digit before, no letter after (a digit after is a version: ``qwen3``).
# The ASCII classes are explicit so "发布DeepSeek" still finds the name after CJK text.
_FIND = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    + "|".join(
        f"(?P<f{i}>{f.pattern})"
        for i, f in sorted(enumerate(FAMILIES), key=lambda p: -len(p[1].pattern))
    )
    + r")(?![A-Za-z])",
    re.IGNORECASE,
)
_GROUP_FAMILY = {f"f{i}": f for i, f in enumerate(FAMILIES)}


def _stems(patterns: list[str]) -> tuple[str, ...] | None:
    """Lower-case words, one of which every match of one of ``patterns`` holds: the plain start
    of each alternative (up to its first special character; without the last character when a
    quantifier may drop it). ``None`` when a pattern has groups or escapes (not read here) or an
    alternative starts with no plain character."""
    stems: set[str] = set()
    for pattern in patterns:
        if any(c in pattern for c in "()\\"):
            return None
        for alternative in pattern.split("|"):
            run = re.match(r"[^\[\]{}?*+.^$|]*", alternative).group()  # type: ignore[union-attr]
            if alternative[len(run) : len(run) + 1] in ("?", "*", "{"):
                run = run[:-1]
            if not run:
                return None
            stems.add(run.lower())
    # A stem that holds a shorter one adds nothing ("chatglm" holds "glm").
    return tuple(sorted(s for s in stems if not any(o != s and o in s for o in stems)))


# On ASCII text, IGNORECASE matching is matching the lower-cased text (no other character
# folds to an ASCII letter there), so a text whose lower case holds no stem names no family.
_STEMS = _stems([f.pattern for f in FAMILIES])
_VERSIONS = {f.key: re.compile(f.version, re.IGNORECASE) for f in FAMILIES}
# One token after a family word: a separator (none before the first), then a word of letters
# and digits with at most one dotted number ("v3.2", "2.5", "235b"). Possessive-free but
# unambiguous: a character class then an optional dot group, so no backtracking blow-up.
_TOKEN = re.compile(r"[-_ .]?([A-Za-z0-9]+(?:\.[0-9]+)?)")
_TOKEN_AFTER = re.compile(r"[-_ ]([A-Za-z0-9]+(?:\.[0-9]+)?)")
MAX_TOKEN = 24  # a longer word is no version, size or variant
_SIZE = re.compile(r"(?:\d+x)?\d+(?:\.\d+)?[bmk]|a\d+(?:\.\d+)?b|\d+e", re.IGNORECASE)
_REVISION = re.compile(r"(?:0\d|1[0-2]|2\d)\d\d")  # 0528, 2507: a dated release
VARIANTS = {
    v.lower(): v
    for v in (
        "Instruct",
        "Base",
        "Chat",
        "FP8",
        "FP16",
        "BF16",
        "INT4",
        "INT8",
        "W4A16",
        "W8A8",
        "NVFP4",
        "MXFP4",
        "AWQ",
        "GPTQ",
        "GGUF",
        "MLX",
        "Distill",
        "Exp",
        "Thinking",
        "Preview",
        "Terminus",
        "Lite",
        "hf",
        "it",
        "4bit",
        "8bit",
        "Dynamic",
        "Turbo",
        "Zero",
        "Air",
        "Flash",
        "Scout",
        "Maverick",
        "pt",
    )
}


@dataclass(frozen=True)
class ModelName:
    """One model name, normalised. ``key`` is what incidents group by."""

    family: str  # the known family's key: "deepseek"
    version: str | None  # "v3.2", "3", "2.5"; lower-case
    line: str | None = None  # "vl", "coder"
    size: str | None = None  # "235B-A22B"
    variants: tuple[str, ...] = ()  # ("Instruct", "FP8")
    org: str | None = None  # "deepseek-ai" from an ``org/name`` id
    revision: str | None = None  # "0528", "2507"

    @property
    def key(self) -> str:
        """The family key: ``deepseek-v3.2``, ``qwen3``, ``qwen2.5-vl``, ``sdxl-turbo``."""
        family = _BY_KEY[self.family]
        parts = [family.key]
        if self.version and family.versioned_key:
            parts[0] += self.version if family.joiner == "" else f"-{self.version}"
        if self.line:
            parts.append(self.line)
        return "-".join(parts)

    @property
    def display(self) -> str:
        """How the family is shown: ``DeepSeek-V3.2``, ``Qwen3``, ``Qwen2.5-VL``."""
        family = _BY_KEY[self.family]
        text = family.display
        if self.version and family.versioned_key:
            text += f"{family.joiner}{_shown_version(self.version)}"
        if self.line:
            text += f"-{_shown_line(self.line)}"
        return text


def _shown_version(version: str) -> str:
    return version[0].upper() + version[1:] if version[0].isalpha() else version


_ACRONYMS = {"vl", "vl2", "ocr", "moe", "v"}


def _shown_line(line: str) -> str:
    return line.upper() if line in _ACRONYMS else line.capitalize()


def model_names(text: str | None, *, limit: int = MAX_CHARS) -> list[ModelName]:
    """Every model name in ``text`` (an id or free text), in order, each family key once."""
    found: dict[str, ModelName] = {}
    for name in _names(text, limit):
        if name.key not in found:
            found[name.key] = name
    return list(found.values())


def model_family(*texts: str | None) -> ModelName | None:
    """The first model name of the first text that names one (title, then id, then body)."""
    for text in texts:
        for name in _names(text, MAX_CHARS):
            return name
    return None


def _names(text: str | None, limit: int) -> Iterator[ModelName]:
    """The model names in ``text``, in order (a family may come more than once)."""
    if not text or not isinstance(text, str):
        return
    text = text[:limit]
    if _STEMS is not None and text.isascii():
        lowered = text.lower()
        for stem in _STEMS:
            if stem in lowered:
                break
        else:
            return
    org = None
    slash = text.find("/")
    if slash > 0 and " " not in text and text.count("/") == 1:  # an ``org/name`` id
        org, text = text[:slash], text[slash + 1 :]
    for match in _FIND.finditer(text):
        group = match.lastgroup
        if group is None:
            continue
        name = _read_tail(_GROUP_FAMILY[group], text, match.end(), org)
        if name is not None:
            yield name


def _read_tail(family: Family, text: str, at: int, org: str | None) -> ModelName | None:
    """The name that starts with ``family`` and goes on at ``at``: version, line, size,
    variants, read token by token until one that is none of them."""
    version_re = _VERSIONS[family.key]
    version = line = size = revision = None
    variants: list[str] = []
    pos = at
    for i in range(MAX_TOKENS):  # the first token may follow without a separator: "qwen3"
        match = (_TOKEN if i == 0 else _TOKEN_AFTER).match(text, pos)
        if match is None:
            break
        token = match.group(1).lower()
        if len(token) > MAX_TOKEN:
            break
        if version is None and version_re.fullmatch(token):
            version = token
        elif line is None and token in family.lines:
            line = token
        elif _SIZE.fullmatch(token):
            size = f"{size}-{token.upper()}" if size else token.upper()
        elif token in VARIANTS:
            variants.append(VARIANTS[token])
        elif revision is None and version is not None and _REVISION.fullmatch(token):
            revision = token
        else:
            break
        pos = match.end()
    if version is None and line is None and family.needs_version:
        return None  # "the Qwen tokenizer": no model named
    return ModelName(family.key, version, line, size, tuple(variants), org, revision)
