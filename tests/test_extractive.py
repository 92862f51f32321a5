"""The extractive summary every message gives of an event's text (issue 13, AI1 without AI)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mrt_engine.notify.extractive import extractive_summary, message_summary, strip_markdown
from mrt_engine.text import body_text

REPO = "vllm-project/vllm"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)

# vLLM's bug report form (.github/ISSUE_TEMPLATE/400-bug-report.yml renders like this).
BUG_REPORT = """### Your current environment

<details>
<summary>The output of <code>python collect_env.py</code></summary>

```text
PyTorch version: 2.9.0+cu128
Is debug build: False
CUDA used to build PyTorch: 12.8
```

</details>

### 🐛 Describe the bug

Loading **DeepSeek-V3.2-Exp** with `--tensor-parallel-size 8` fails in `__init__.py` of the
sparse attention backend. The `snake_case_name` option does not help.

```python
from vllm import LLM
```

### Before submitting a new issue...

- [x] Make sure you already searched for relevant issues.
"""


@pytest.mark.sqlite_only("text functions alone")
def test_a_folded_issue_form_reads_as_its_description_without_the_environment_dump():
    body = body_text(BUG_REPORT)  # as stored: one line
    summary = extractive_summary(body, 280)
    assert summary.startswith("🐛 Describe the bug Loading DeepSeek-V3.2-Exp with")
    assert "PyTorch" not in summary and "collect_env" not in summary
    assert "###" not in summary and "**" not in summary and "`" not in summary
    assert "__init__.py" in summary and "snake_case_name" in summary
    assert len(summary) <= 280 and "The snake_case_name option does not help." in summary


@pytest.mark.sqlite_only("text functions alone")
def test_underscores_inside_words_are_not_emphasis_but_around_words_they_are():
    assert strip_markdown("call `__init__` on my_model_name, _really_ __now__") == (
        "call __init__ on my_model_name, really now"
    )
    # A <details> never closed hides the rest in a browser: here too.
    assert strip_markdown("shown <details> hidden") == "shown"


@pytest.mark.sqlite_only("text functions alone")
def test_a_text_with_nothing_left_after_stripping_keeps_its_stored_excerpt():
    body = body_text("<details><summary>env</summary>" + "torch 2.9 " * 2000 + "</details> end")
    excerpt = body[:279] + "…"
    assert message_summary(excerpt, body) == excerpt  # the block is longer than what is read


@pytest.mark.sqlite_only("text functions alone")
@pytest.mark.parametrize(
    "hostile",
    [
        "[a](" * 3000,
        "![a](" * 3000,
        "<details>" * 2000,
        "**a " * 3000,
        "_a " * 3000,
        "| " * 3000,
        "<!--" * 3000,
        "```" * 3000,
        "[[" * 5000,
        " " * 9000 + "|-",
    ],
)
def test_hostile_markdown_gives_a_bounded_plain_summary(hostile):
    # (Every pattern is linear in the text: see extractive.py. No timing limit here.)
    body = body_text(hostile * 4)
    summary = message_summary(body[:279] + "…", body)
    assert len(summary) <= 280 and "\n" not in summary
